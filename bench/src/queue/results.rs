//! What `skiff bench queue` measured: plain serializable data, written as
//! `queue.json`, and its terminal table.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::host::HostInfo;
use crate::results::launch::Goal;

/// Version of the JSON document.
pub const SCHEMA: u32 = 1;

/// The 50th and 99th percentiles of a set of samples, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Percentiles {
    /// Of `samples`; `None` when there are none.
    pub fn of(samples: &[f64]) -> Option<Percentiles> {
        Some(Percentiles {
            p50: crate::stats::percentile(samples, 50.0)?,
            p99: crate::stats::percentile(samples, 99.0)?,
        })
    }
}

/// How fast the worker accepted the jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enqueue {
    /// Jobs accepted.
    pub jobs: usize,
    /// `POST /v1/jobs` calls (one batch each).
    pub batches: usize,
    /// Sum of the calls' durations (request sent → response read), s.
    pub submit_s: f64,
    /// Jobs accepted per second of submit calls: `jobs / submit_s`.
    pub jobs_per_s: f64,
    /// First call sent → last response read, s (the calls ran back to
    /// back; this adds parsing the responses).
    pub window_s: f64,
    /// Duration of one batch's call, ms.
    pub batch_ms: Option<Percentiles>,
}

/// One round of jobs through `skiff serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServeRound {
    /// Round, from 1.
    pub round: usize,
    /// The submit calls.
    pub enqueue: Enqueue,
    /// Jobs whose state is `complete`.
    pub completed: usize,
    /// Jobs in any other terminal state.
    pub failed: usize,
    /// `GET /v1/jobs?state=complete` paged to the end: jobs listed.
    pub listed_complete: usize,
    /// The first failures: job id, state and reason.
    pub errors: Vec<String>,
    /// Jobs completed per second between the 10% and 90% completion
    /// marks (from the jobs' `ended_at`).
    pub steady_jobs_per_s: Option<f64>,
    /// First job created → last job ended, s.
    pub wall_s: f64,
    /// `jobs / wall_s`.
    pub wall_jobs_per_s: f64,
    /// Submit (`created_at`) → first attempt's `started_at`, ms.
    pub submit_to_start_ms: Option<Percentiles>,
    /// Submit (`created_at`) → last attempt's `ended_at`, ms.
    pub submit_to_complete_ms: Option<Percentiles>,
    /// Last attempt's `started_at` → `ended_at`, ms.
    pub run_ms: Option<Percentiles>,
    /// How `skiff serve` exited after SIGTERM.
    pub worker_exit: String,
    /// `ERROR` lines in the worker's log.
    pub worker_log_errors: usize,
    /// Each distinct one, with its count.
    pub worker_log_kinds: Vec<String>,
}

/// One round of the same jobs through bare `skiff launcher` processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolRound {
    /// Round, from 1.
    pub round: usize,
    /// Jobs that exited 0.
    pub completed: usize,
    /// Jobs that did not.
    pub failed: usize,
    /// The first failures.
    pub errors: Vec<String>,
    /// Jobs completed per second between the 10% and 90% completion marks.
    pub steady_jobs_per_s: Option<f64>,
    /// First request sent → last reply read, s.
    pub wall_s: f64,
    /// `jobs / wall_s`.
    pub wall_jobs_per_s: f64,
    /// One job's request → reply, ms.
    pub latency_ms: Option<Percentiles>,
    /// How each launcher exited.
    pub launcher_exits: Vec<String>,
}

/// Medians over the rounds, and the comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueSummary {
    /// Median of the serve rounds' steady throughput, jobs/s.
    pub serve_jobs_per_s: Option<f64>,
    /// Median of the pool rounds' steady throughput, jobs/s.
    pub pool_jobs_per_s: Option<f64>,
    /// `serve_jobs_per_s / pool_jobs_per_s`.
    pub ratio: Option<f64>,
    /// The worker's overhead on throughput: `1 - ratio`.
    pub overhead: Option<f64>,
    /// Median of the serve rounds' enqueue rates, jobs/s.
    pub enqueue_jobs_per_s: Option<f64>,
    /// Medians of the serve rounds' submit → start percentiles, ms.
    pub submit_to_start_ms: Option<Percentiles>,
    /// Medians of the serve rounds' submit → complete percentiles, ms.
    pub submit_to_complete_ms: Option<Percentiles>,
    /// Jobs that did not complete, over every round of both.
    pub failed: usize,
}

/// Everything `skiff bench queue` produces.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueResults {
    /// Always `queue`.
    pub benchmark: String,
    /// [`SCHEMA`].
    pub schema: u32,
    /// When it ran (RFC 3339, UTC).
    pub date: String,
    /// The host.
    pub host: HostInfo,
    /// `/proc/loadavg` before the first round.
    pub load_before: String,
    /// `/proc/loadavg` after the last round.
    pub load_after: String,
    /// The image archive.
    pub image: PathBuf,
    /// Its id, which the jobs name.
    pub image_id: String,
    /// The job's command.
    pub command: Vec<String>,
    /// Jobs per round.
    pub jobs: usize,
    /// Jobs per `POST /v1/jobs`.
    pub batch: usize,
    /// Launcher processes (`skiff serve --launchers`, and the pool's).
    pub launchers: usize,
    /// Rounds of each (serve, pool, serve, pool, …).
    pub rounds: usize,
    /// The serve rounds.
    pub serve: Vec<ServeRound>,
    /// The pool rounds.
    pub pool: Vec<PoolRound>,
    /// Medians and the comparison.
    pub summary: QueueSummary,
    /// The goals, judged.
    pub goals: Vec<Goal>,
}

impl QueueResults {
    /// Whether every job of every round completed.
    pub fn ok(&self) -> bool {
        self.summary.failed == 0
            && self.serve.iter().all(|r| r.completed == self.jobs)
            && self.pool.iter().all(|r| r.completed == self.jobs)
    }

    /// Write `queue.json` into `dir`; returns its path.
    pub fn write_json(&self, dir: &Path) -> Result<PathBuf> {
        crate::results::write_json_into(self, dir, "queue.json")
    }

    /// The terminal report: a row per round, the medians, the goals.
    pub fn table(&self) -> String {
        let rate = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
        let pct = |v: Option<Percentiles>| {
            v.map_or("-".into(), |p| {
                format!("{} / {}", fmt_ms(p.p50), fmt_ms(p.p99))
            })
        };
        let mut out = format!(
            "skiff bench queue: {} × `{}` per round, batches of {}, {} launchers, {} rounds \
             (serve, pool alternating)\nhost: {}, {} CPUs, kernel {}; load {} → {}\n\n",
            self.jobs,
            self.command.join(" "),
            self.batch,
            self.launchers,
            self.rounds,
            self.host.os,
            self.host.cpus,
            self.host.kernel,
            self.load_before.trim(),
            self.load_after.trim()
        );
        let mut rows = vec![vec![
            "round".to_string(),
            "path".into(),
            "steady jobs/s".into(),
            "wall jobs/s".into(),
            "enqueue jobs/s".into(),
            "submit→start p50 / p99 ms".into(),
            "submit→done p50 / p99 ms".into(),
            "failed".into(),
        ]];
        for i in 0..self.rounds {
            if let Some(s) = self.serve.get(i) {
                rows.push(vec![
                    s.round.to_string(),
                    "skiff serve (HTTP)".into(),
                    rate(s.steady_jobs_per_s),
                    format!("{:.0}", s.wall_jobs_per_s),
                    format!("{:.0}", s.enqueue.jobs_per_s),
                    pct(s.submit_to_start_ms),
                    pct(s.submit_to_complete_ms),
                    s.failed.to_string(),
                ]);
            }
            if let Some(p) = self.pool.get(i) {
                rows.push(vec![
                    p.round.to_string(),
                    "bare launcher pool".into(),
                    rate(p.steady_jobs_per_s),
                    format!("{:.0}", p.wall_jobs_per_s),
                    "-".into(),
                    "-".into(),
                    format!("{} (request → reply)", pct(p.latency_ms)),
                    p.failed.to_string(),
                ]);
            }
        }
        out.push_str(&crate::report::layout(&rows));
        let s = &self.summary;
        out.push_str(&format!(
            "\nmedians: serve {} jobs/s, pool {} jobs/s, serve/pool {}, worker overhead {}; \
             enqueue {} jobs/s\n",
            rate(s.serve_jobs_per_s),
            rate(s.pool_jobs_per_s),
            s.ratio.map_or("-".into(), |r| format!("{r:.3}")),
            s.overhead
                .map_or("-".into(), |o| format!("{:.1}%", o * 100.0)),
            rate(s.enqueue_jobs_per_s),
        ));
        out.push_str("\ngoals\n");
        for g in &self.goals {
            let mark = match g.met {
                Some(true) => "met   ",
                Some(false) => "MISSED",
                None => "n/a   ",
            };
            out.push_str(&format!(
                "  {mark} {}: {}\n         measured: {}; {}\n",
                g.name, g.target, g.measured, g.gap
            ));
        }
        let failures = self
            .serve
            .iter()
            .flat_map(|r| r.errors.iter().map(move |e| (r.round, "serve", e)))
            .chain(
                self.pool
                    .iter()
                    .flat_map(|r| r.errors.iter().map(move |e| (r.round, "pool", e))),
            );
        for (round, path, e) in failures {
            out.push_str(&format!("failed ({path}, round {round}): {e}\n"));
        }
        for r in &self.serve {
            if r.worker_log_errors > 0 {
                out.push_str(&format!(
                    "note: the worker logged {} errors in round {}: {}\n",
                    r.worker_log_errors,
                    r.round,
                    r.worker_log_kinds.join("; ")
                ));
            }
        }
        out
    }
}

/// Milliseconds for a table cell.
fn fmt_ms(v: f64) -> String {
    crate::units::fmt_ms(v)
}
