//! `skiff bench queue`: the worker (`skiff serve`) through its real API,
//! against the bare launcher pool it dispatches onto.
//!
//! The image is imported into a fresh private store, `WORKDIR/queue/store`,
//! removed at the end (also on failure). Then, alternating for `rounds`
//! rounds — serve, pool, serve, pool, … — the same `jobs` jobs (`true`)
//! run:
//!
//! - **serve** ([`worker`]): a real `skiff --root STORE serve --launchers
//!   N` child process on a job database of its own, reached over
//!   `STORE/skiff.sock` with [`scheduler::client::Client`]. Every batch of
//!   `batch` jobs is POSTed to `/v1/jobs` back to back (the jobs start
//!   running meanwhile); then the jobs are read back (`GET
//!   /v1/jobs/{id}`, and `GET /v1/jobs?state=complete` paged to the end
//!   as a cross-check) and the worker is stopped with SIGTERM. Measured:
//!   the **enqueue rate** (jobs accepted per second of submit calls), the
//!   **steady throughput** (jobs completed per second between the 10% and
//!   90% completion marks, from the jobs' `ended_at`), and submit → start
//!   and submit → complete latency (`created_at` to the attempt's
//!   `started_at` and `ended_at`).
//! - **pool** ([`pool`]): `N` `skiff launcher` processes on the same
//!   store driven directly, one thread each, with the request the worker's
//!   slots send; steady throughput measured the same way.
//!
//! The worker's overhead on throughput is `1 - serve / pool` (medians of
//! the rounds); the goals are an overhead of at most
//! [`GOAL_MAX_OVERHEAD`] and an enqueue rate of at least
//! [`GOAL_MIN_ENQUEUE`] jobs/s. An untimed pool warm-up of two jobs per
//! launcher runs first.

pub mod results;

pub mod fleet;
pub mod noop;
mod pool;
mod postgres;
mod worker;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, IoContext};
use crate::host::HostInfo;
use crate::results::launch::Goal;
use crate::Ui;

pub use self::results::{
    Enqueue, Percentiles, PoolRound, QueueResults, QueueSummary, ServeRound, SCHEMA,
};

/// Jobs per round by default.
pub const DEFAULT_JOBS: usize = 10_000;
/// Jobs per round with `--quick`.
pub const QUICK_JOBS: usize = 1_000;
/// Jobs per `POST /v1/jobs` by default.
pub const DEFAULT_BATCH: usize = 500;
/// The API's largest batch.
pub const MAX_BATCH: usize = 10_000;
/// Launcher processes by default (`skiff serve`'s default too).
pub const DEFAULT_LAUNCHERS: usize = 2;
/// Rounds of each by default.
pub const DEFAULT_ROUNDS: usize = 2;
/// Rounds of each with `--quick`.
pub const QUICK_ROUNDS: usize = 1;
/// The goal: the worker costs at most this fraction of the pool's
/// throughput.
pub const GOAL_MAX_OVERHEAD: f64 = 0.10;
/// The goal: the worker accepts at least this many jobs per second.
pub const GOAL_MIN_ENQUEUE: f64 = 2_000.0;
/// The job's command.
pub const COMMAND: &str = "true";
/// Failures kept per round, in full.
const KEPT_ERRORS: usize = 10;

/// Why the benchmark could not run (jobs that fail are results).
#[derive(Debug, thiserror::Error)]
pub enum QueueBenchError {
    /// A benchmark-wide error: files, the image, bad options.
    #[error(transparent)]
    Bench(#[from] Error),
    /// `skiff serve` could not be started.
    #[error("cannot start {exe} serve")]
    SpawnWorker {
        /// The skiff binary.
        exe: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `skiff serve` did not answer `/healthz` in time.
    #[error("skiff serve did not answer /healthz within {} s (log: {})", waited.as_secs(), log.display())]
    NotReady {
        /// How long it was given.
        waited: Duration,
        /// Its stderr.
        log: PathBuf,
    },
    /// `skiff serve` exited during a round.
    #[error("skiff serve exited ({status}) during the round (log: {})", log.display())]
    WorkerExited {
        /// Its exit status.
        status: String,
        /// Its stderr.
        log: PathBuf,
    },
    /// No job was claimed for too long.
    #[error("no job was claimed for {} s (log: {})", waited.as_secs(), log.display())]
    Stalled {
        /// How long.
        waited: Duration,
        /// The worker's stderr.
        log: PathBuf,
    },
    /// A call to the worker failed before any HTTP status.
    #[error("{call}")]
    Client {
        /// Method and path.
        call: String,
        /// Why.
        #[source]
        source: scheduler::client::ClientError,
    },
    /// The worker answered a call with an error status.
    #[error("{call}: HTTP {status}: {message}")]
    Api {
        /// Method and path.
        call: String,
        /// The status.
        status: u16,
        /// The API's message.
        message: String,
    },
    /// The worker's answer does not parse.
    #[error("{call}: unexpected response")]
    Response {
        /// Method and path.
        call: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The worker's answers do not add up.
    #[error("{0}")]
    Protocol(String),
    /// An async task failed.
    #[error("async task: {0}")]
    Task(String),
    /// The no-op queue benchmark's storage failed.
    #[error("no-op queue: {0}")]
    Noop(String),
    /// A pool launcher could not be started.
    #[error("cannot start pool launcher {index}")]
    SpawnLauncher {
        /// Which (0-based).
        index: usize,
        /// Why.
        #[source]
        source: runtime::Error,
    },
    /// A pool thread panicked.
    #[error("the thread driving pool launcher {0} panicked")]
    Thread(usize),
}

/// The result type of this benchmark.
pub type Result<T, E = QueueBenchError> = std::result::Result<T, E>;

/// What to run.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// The `skiff` binary whose `serve` and `launcher` are measured.
    pub skiff_exe: PathBuf,
    /// The image archive (default: the vendored busybox).
    pub image: Option<PathBuf>,
    /// Jobs per round.
    pub jobs: usize,
    /// Jobs per `POST /v1/jobs`.
    pub batch: usize,
    /// Launcher processes.
    pub launchers: usize,
    /// Rounds of each.
    pub rounds: usize,
    /// Work directory; the benchmark uses `WORKDIR/queue/`.
    pub workdir: PathBuf,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            skiff_exe: PathBuf::from("skiff"),
            image: None,
            jobs: DEFAULT_JOBS,
            batch: DEFAULT_BATCH,
            launchers: DEFAULT_LAUNCHERS,
            rounds: DEFAULT_ROUNDS,
            workdir: PathBuf::from(crate::workdir::DEFAULT_WORKDIR),
        }
    }
}

/// What every round runs on.
#[derive(Debug, Clone, Copy)]
struct Round<'a> {
    exe: &'a Path,
    /// The store root.
    root: &'a Path,
    /// Where the worker's and launchers' stderr go.
    logs: &'a Path,
    image_id: &'a str,
    command: &'a [String],
    jobs: usize,
    batch: usize,
    launchers: usize,
}

/// Jobs completed per second between the 10% and the 90% completion marks
/// (the ⌈n/10⌉-th and ⌈9n/10⌉-th end times, in seconds); `None` when
/// there are too few ends to tell.
pub(crate) fn steady_rate(ends: &mut [f64]) -> Option<f64> {
    ends.sort_by(f64::total_cmp);
    let n = ends.len();
    let k10 = n.div_ceil(10).max(1);
    let k90 = (9 * n).div_ceil(10);
    if k90 <= k10 {
        return None;
    }
    let dt = ends[k90 - 1] - ends[k10 - 1];
    (dt > 0.0).then(|| (k90 - k10) as f64 / dt)
}

/// The store: removed, with its mounts and group cgroups, when dropped.
#[derive(Debug)]
struct Scratch {
    store: PathBuf,
}

impl Scratch {
    /// Remove what an earlier run left at `store`.
    fn clear(store: &Path) -> Result<()> {
        if store.exists() {
            crate::trash::unmount_under(store);
            if let Ok(root) = fs::canonicalize(store) {
                compat::matrix::remove_group_cgroups(&root);
            }
            fs::remove_dir_all(store).ctx("remove the old queue store", store)?;
        }
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        crate::trash::unmount_under(&self.store);
        compat::matrix::remove_group_cgroups(&self.store);
        let _ = fs::remove_dir_all(&self.store);
    }
}

/// The median of the values present.
fn median_of(v: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = v.flatten().collect();
    crate::stats::Summary::of(&v).map(|s| s.median)
}

/// Medians over the rounds.
fn summarize(serve: &[ServeRound], pool: &[PoolRound]) -> QueueSummary {
    let serve_jobs_per_s = median_of(serve.iter().map(|r| r.steady_jobs_per_s));
    let pool_jobs_per_s = median_of(pool.iter().map(|r| r.steady_jobs_per_s));
    let ratio = match (serve_jobs_per_s, pool_jobs_per_s) {
        (Some(s), Some(p)) if p > 0.0 => Some(s / p),
        _ => None,
    };
    let pct = |f: &dyn Fn(&ServeRound) -> Option<Percentiles>| {
        Some(Percentiles {
            p50: median_of(serve.iter().map(|r| f(r).map(|p| p.p50)))?,
            p99: median_of(serve.iter().map(|r| f(r).map(|p| p.p99)))?,
        })
    };
    QueueSummary {
        serve_jobs_per_s,
        pool_jobs_per_s,
        ratio,
        overhead: ratio.map(|r| 1.0 - r),
        enqueue_jobs_per_s: median_of(serve.iter().map(|r| Some(r.enqueue.jobs_per_s))),
        submit_to_start_ms: pct(&|r| r.submit_to_start_ms),
        submit_to_complete_ms: pct(&|r| r.submit_to_complete_ms),
        failed: serve.iter().map(|r| r.failed).sum::<usize>()
            + pool.iter().map(|r| r.failed).sum::<usize>(),
    }
}

/// The worker's goals, judged.
fn goals(s: &QueueSummary, rounds: usize, batch: usize) -> Vec<Goal> {
    let max_pct = GOAL_MAX_OVERHEAD * 100.0;
    let overhead = match (s.serve_jobs_per_s, s.pool_jobs_per_s, s.overhead) {
        (Some(sv), Some(p), Some(o)) => Goal {
            name: "worker overhead".into(),
            target: format!(
                "`skiff serve` steady throughput ≥ {:.0}% of the bare launcher pool's \
                 (overhead ≤ {max_pct:.0}%)",
                100.0 - max_pct
            ),
            measured: format!(
                "serve {sv:.1} jobs/s / pool {p:.1} jobs/s = {:.3} (medians of {rounds} \
                 rounds): overhead {:.1}%",
                sv / p,
                o * 100.0
            ),
            met: Some(o <= GOAL_MAX_OVERHEAD),
            gap: if o <= GOAL_MAX_OVERHEAD {
                format!("met, {:.1} points to spare", max_pct - o * 100.0)
            } else {
                format!(
                    "{:.1} points over; needs {:.1} jobs/s more",
                    o * 100.0 - max_pct,
                    (1.0 - GOAL_MAX_OVERHEAD) * p - sv
                )
            },
        },
        _ => Goal {
            name: "worker overhead".into(),
            target: format!("overhead ≤ {max_pct:.0}%"),
            measured: "too few jobs to measure a steady throughput".into(),
            met: None,
            gap: "-".into(),
        },
    };
    let enqueue = match s.enqueue_jobs_per_s {
        Some(e) => Goal {
            name: "enqueue rate".into(),
            target: format!("`POST /v1/jobs` accepts ≥ {GOAL_MIN_ENQUEUE:.0} jobs/s"),
            measured: format!(
                "{e:.0} jobs/s (median of {rounds} rounds, batches of {batch}, submitted \
                 while the jobs run)"
            ),
            met: Some(e >= GOAL_MIN_ENQUEUE),
            gap: if e >= GOAL_MIN_ENQUEUE {
                format!("met, {:.2}× the target", e / GOAL_MIN_ENQUEUE)
            } else {
                format!("needs {:.0} jobs/s more", GOAL_MIN_ENQUEUE - e)
            },
        },
        None => Goal {
            name: "enqueue rate".into(),
            target: format!("≥ {GOAL_MIN_ENQUEUE:.0} jobs/s"),
            measured: "not measured".into(),
            met: None,
            gap: "-".into(),
        },
    };
    vec![overhead, enqueue]
}

/// Run the benchmark.
pub fn run(cfg: &QueueConfig, ui: &Ui) -> Result<QueueResults> {
    if cfg.jobs == 0 || cfg.launchers == 0 || cfg.rounds == 0 {
        return Err(
            Error::Usage("--jobs, --launchers and --rounds must be at least 1".into()).into(),
        );
    }
    if !(1..=MAX_BATCH).contains(&cfg.batch) {
        return Err(Error::Usage(format!("--batch must be 1–{MAX_BATCH}")).into());
    }
    let (_lock, dir, archive) =
        crate::workdir::private_dir(&cfg.workdir, "queue", cfg.image.as_ref())?;
    let store = dir.join("store");
    Scratch::clear(&store)?;
    let _scratch = Scratch {
        store: store.clone(),
    };
    ui.spin("importing the image into a fresh store");
    let image = crate::launch::prepare::bench_image(&dir, &archive)?;
    ui.clear();
    let root = fs::canonicalize(&image.store_root).ctx("resolve", &image.store_root)?;
    let command = vec![COMMAND.to_string()];
    let round = Round {
        exe: &cfg.skiff_exe,
        root: &root,
        logs: &dir,
        image_id: &image.id,
        command: &command,
        jobs: cfg.jobs,
        batch: cfg.batch,
        launchers: cfg.launchers,
    };
    let date = crate::host::now_rfc3339();
    let host = HostInfo::detect(&dir);

    ui.spin("warm-up: two jobs per launcher through the pool");
    let warm = pool::pool_round(
        &Round {
            jobs: 2 * cfg.launchers,
            ..round
        },
        0,
    )?;
    ui.clear();
    if warm.failed > 0 {
        ui.note(format!(
            "warm-up: {} of {} jobs failed: {}",
            warm.failed,
            2 * cfg.launchers,
            warm.errors.join("; ")
        ));
    }

    let load_before = crate::host::load_average();
    let mut serve = Vec::with_capacity(cfg.rounds);
    let mut pools = Vec::with_capacity(cfg.rounds);
    ui.steps(2 * cfg.rounds as u64, "rounds");
    for n in 1..=cfg.rounds {
        ui.message(format!("round {n}: skiff serve"));
        let s = worker::serve_round(&round, n)?;
        ui.note(format!(
            "round {n} serve: enqueue {:.0} jobs/s, steady {} jobs/s, {} failed",
            s.enqueue.jobs_per_s,
            s.steady_jobs_per_s
                .map_or("-".into(), |v| format!("{v:.1}")),
            s.failed
        ));
        serve.push(s);
        ui.inc();
        ui.message(format!("round {n}: the bare pool"));
        let p = pool::pool_round(&round, n)?;
        ui.note(format!(
            "round {n} pool: steady {} jobs/s, {} failed",
            p.steady_jobs_per_s
                .map_or("-".into(), |v| format!("{v:.1}")),
            p.failed
        ));
        pools.push(p);
        ui.inc();
    }
    ui.clear();
    let load_after = crate::host::load_average();

    let summary = summarize(&serve, &pools);
    let goals = goals(&summary, cfg.rounds, cfg.batch);
    Ok(QueueResults {
        benchmark: "queue".into(),
        schema: SCHEMA,
        date,
        host,
        load_before,
        load_after,
        image: archive,
        image_id: image.id.clone(),
        command,
        jobs: cfg.jobs,
        batch: cfg.batch,
        launchers: cfg.launchers,
        rounds: cfg.rounds,
        serve,
        pool: pools,
        summary,
        goals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_steady_rate_between_the_marks() {
        // 100 jobs, one every 10 ms: the 10th ends at 0.09 s, the 90th at 0.89 s.
        let mut ends: Vec<f64> = (0..100).rev().map(|i| i as f64 * 0.01).collect();
        let r = steady_rate(&mut ends).expect("a rate");
        assert!((r - 100.0).abs() < 1e-6, "{r}");
        assert_eq!(steady_rate(&mut []), None);
        assert_eq!(steady_rate(&mut [1.0]), None);
        assert_eq!(steady_rate(&mut [1.0; 20]), None);
    }

    fn serve_round(steady: f64, enqueue: f64) -> ServeRound {
        ServeRound {
            round: 1,
            enqueue: Enqueue {
                jobs: 10,
                batches: 1,
                submit_s: 10.0 / enqueue,
                jobs_per_s: enqueue,
                window_s: 0.0,
                batch_ms: None,
            },
            completed: 10,
            failed: 0,
            listed_complete: 10,
            errors: vec![],
            steady_jobs_per_s: Some(steady),
            wall_s: 1.0,
            wall_jobs_per_s: 10.0,
            submit_to_start_ms: Some(Percentiles { p50: 1.0, p99: 2.0 }),
            submit_to_complete_ms: None,
            run_ms: None,
            worker_exit: String::new(),
            worker_log_errors: 0,
            worker_log_kinds: vec![],
        }
    }

    fn pool_round(steady: f64) -> PoolRound {
        PoolRound {
            round: 1,
            completed: 10,
            failed: 0,
            errors: vec![],
            steady_jobs_per_s: Some(steady),
            wall_s: 1.0,
            wall_jobs_per_s: 10.0,
            latency_ms: None,
            launcher_exits: vec![],
        }
    }

    #[test]
    fn test_summary_and_goals() {
        let s = summarize(
            &[serve_round(90.0, 3000.0), serve_round(94.0, 1000.0)],
            &[pool_round(100.0), pool_round(100.0)],
        );
        assert_eq!(s.serve_jobs_per_s, Some(92.0));
        assert_eq!(s.ratio, Some(0.92));
        assert!((s.overhead.expect("overhead") - 0.08).abs() < 1e-9);
        assert_eq!(s.enqueue_jobs_per_s, Some(2000.0));
        assert_eq!(
            s.submit_to_start_ms,
            Some(Percentiles { p50: 1.0, p99: 2.0 })
        );
        assert_eq!(s.submit_to_complete_ms, None);
        let g = goals(&s, 2, 500);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].met, Some(true));
        assert_eq!(g[1].met, Some(true));
        let s = summarize(&[serve_round(80.0, 100.0)], &[pool_round(100.0)]);
        let g = goals(&s, 1, 500);
        assert_eq!(g[0].met, Some(false));
        assert_eq!(g[1].met, Some(false));
    }
}
