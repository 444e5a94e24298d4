//! `skiff bench queue --noop`: the queue alone, with **no-op jobs**: no
//! container runs; each claimed job is marked complete at once. Never the
//! default, and labelled as such in every output. It measures what the
//! storage engines can do, so that the queue is never what limits
//! container throughput: SQLite (one host) and PostgreSQL (a fleet),
//! alternating round by round on the same jobs.
//!
//! Per round and engine, on a fresh database:
//! - **enqueue:** `jobs` jobs submitted in batches of `batch`;
//! - **dequeue:** `workers` workers × `slots` slots drain them, each slot
//!   turning (record the last job complete, claim the next) until the
//!   queue is empty: jobs per second;
//! - **submit → start:** a paced stream (batches of 10 every 10 ms,
//!   about 1,000 jobs/s) while the slots poll every millisecond when idle:
//!   claim time minus submit time, ms.
//!
//! PostgreSQL is the server given with `--db` (a new database on it per
//! round, dropped after; the given database is not written), else a
//! private cluster started in a temporary directory with PostgreSQL's
//! stock settings (`fsync=on`; said in the results).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use scheduler::claim::Admission;
use scheduler::db::postgres::PgStore;
use scheduler::db::Storage;
use scheduler::finish::Ended;
use scheduler::queue::{now_ms, Outcome, Queue};
use scheduler::request::JobRequest;
use scheduler::state::JobState;

use super::postgres::Server;
use super::{Percentiles, QueueBenchError, Result};
use crate::error::Error;
use crate::host::HostInfo;
use crate::results::launch::Goal;

/// The label every output carries.
pub const LABEL: &str = "NO-OP JOBS: the queue alone, no container work";
/// The goal: PostgreSQL dequeues at least this many no-op jobs per second.
pub const GOAL_MIN_DEQUEUE: f64 = 5_000.0;
/// Jobs in the paced stream that measures submit → start.
const PACED_JOBS: usize = 2_000;

/// What to run.
#[derive(Debug, Clone)]
pub struct NoopConfig {
    /// PostgreSQL to use (`postgres://…`); `None`: a private cluster.
    pub db: Option<String>,
    /// Jobs per round and engine.
    pub jobs: usize,
    /// Jobs per submit.
    pub batch: usize,
    /// Rounds of each engine.
    pub rounds: usize,
    /// Workers (PostgreSQL: one store each, its own id).
    pub workers: usize,
    /// Slots per worker.
    pub slots: usize,
    /// Where SQLite's databases go.
    pub workdir: std::path::PathBuf,
}

/// One engine's round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoopRound {
    /// `sqlite` or `postgres`.
    pub engine: String,
    /// Round, from 1.
    pub round: usize,
    /// Jobs submitted per second.
    pub enqueue_jobs_per_s: f64,
    /// Jobs claimed and recorded complete per second, draining a backlog.
    pub dequeue_jobs_per_s: f64,
    /// Submit → claim of the paced stream, ms.
    pub submit_to_start_ms: Option<Percentiles>,
}

/// Everything measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoopResults {
    /// What kind of run this is: [`LABEL`].
    pub kind: String,
    /// The host.
    pub host: HostInfo,
    /// Where PostgreSQL ran.
    pub postgres: String,
    /// Jobs per round and engine.
    pub jobs: usize,
    /// Workers × slots.
    pub workers: usize,
    /// Slots per worker.
    pub slots: usize,
    /// Every round.
    pub rounds: Vec<NoopRound>,
    /// The goal on PostgreSQL's dequeue rate.
    pub goal: Goal,
}

fn fits() -> Admission {
    Admission {
        memory_bytes: u64::MAX >> 1,
        cpus: 1e9,
        ..Default::default()
    }
}

fn done(c: &scheduler::queue::Claim) -> Ended {
    Ended {
        id: c.id.clone(),
        n: c.attempt,
        retry: c.retry,
        outcome: Outcome {
            state: Some(JobState::Complete),
            exit_code: Some(0),
            ..Default::default()
        },
    }
}

fn db_err(e: impl std::fmt::Display) -> QueueBenchError {
    QueueBenchError::Noop(e.to_string())
}

async fn submit(s: &dyn Storage, n: usize) -> Result<()> {
    let job = JobRequest {
        image: "noop".into(),
        ..Default::default()
    };
    let valid = job.validate().map_err(db_err)?;
    s.submit(vec![valid; n]).await.map_err(db_err)?;
    Ok(())
}

/// Run slots on `stores` (round robin) until `total` jobs are complete;
/// the submit → claim latencies seen, ms.
async fn drain(stores: &[Arc<dyn Storage>], slots: usize, total: usize) -> Result<Vec<f64>> {
    let completed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..slots {
        let s = stores[i % stores.len()].clone();
        let completed = completed.clone();
        tasks.push(tokio::spawn(async move {
            let mut last: Vec<Ended> = Vec::new();
            let mut lat = Vec::new();
            loop {
                let t = s.turn(&last, Some(&fits())).await.map_err(db_err)?;
                completed.fetch_add(last.len(), Ordering::Relaxed);
                last.clear();
                match t.claim.map_err(db_err)? {
                    Some(c) => {
                        lat.push((now_ms() - c.ready_at_ms) as f64);
                        last.push(done(&c));
                    }
                    None if completed.load(Ordering::Relaxed) >= total => break,
                    None => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            }
            Ok::<_, QueueBenchError>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(
            t.await
                .map_err(|e| QueueBenchError::Task(e.to_string()))??,
        );
    }
    Ok(all)
}

/// One engine's round on `stores` (fresh databases).
async fn round(
    engine: &str,
    n: usize,
    cfg: &NoopConfig,
    stores: Vec<Arc<dyn Storage>>,
) -> Result<NoopRound> {
    let t = Instant::now();
    for chunk in (0..cfg.jobs).collect::<Vec<_>>().chunks(cfg.batch) {
        submit(&*stores[0], chunk.len()).await?;
    }
    let enqueue = cfg.jobs as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    drain(&stores, cfg.workers * cfg.slots, cfg.jobs).await?;
    let dequeue = cfg.jobs as f64 / t.elapsed().as_secs_f64();
    // The paced stream, beside slots polling.
    let feeder = stores[0].clone();
    let pace = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        for _ in 0..PACED_JOBS / 10 {
            tick.tick().await;
            submit(&*feeder, 10).await?;
        }
        Ok::<_, QueueBenchError>(())
    });
    let lat = drain(&stores, cfg.workers * cfg.slots, PACED_JOBS).await?;
    pace.await
        .map_err(|e| QueueBenchError::Task(e.to_string()))??;
    Ok(NoopRound {
        engine: engine.into(),
        round: n,
        enqueue_jobs_per_s: enqueue,
        dequeue_jobs_per_s: dequeue,
        submit_to_start_ms: Percentiles::of(&lat),
    })
}

/// Run the no-op queue benchmark.
pub fn run(cfg: &NoopConfig, ui: &crate::Ui) -> Result<NoopResults> {
    if cfg.jobs == 0 || cfg.rounds == 0 || cfg.workers == 0 || cfg.slots == 0 || cfg.batch == 0 {
        return Err(Error::Usage(
            "--jobs, --rounds, --workers, --slots and --batch must be at least 1".into(),
        )
        .into());
    }
    let dir = cfg.workdir.join("queue-noop");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| db_err(format!("{}: {e}", dir.display())))?;
    let server = Server::start(cfg.db.as_deref())?;
    let postgres = server.describe();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| db_err(format!("tokio runtime: {e}")))?;
    let mut rounds = Vec::new();
    for n in 1..=cfg.rounds {
        ui.spin(format!("round {n}: sqlite"));
        let path = dir.join(format!("r{n}.db"));
        let sqlite = rt.block_on(async {
            let q = Queue::open(&path).await.map_err(db_err)?;
            let stores: Vec<Arc<dyn Storage>> = vec![Arc::new(q)];
            round("sqlite", n, cfg, stores).await
        })?;
        ui.note(format!(
            "round {n} sqlite: dequeue {:.0} jobs/s",
            sqlite.dequeue_jobs_per_s
        ));
        rounds.push(sqlite);
        let _ = std::fs::remove_file(&path);
        ui.spin(format!("round {n}: postgres"));
        let name = format!("skiff_noop_{}_{n}", std::process::id());
        let pg = rt.block_on(async {
            let url = server.database(&name).await?;
            let mut stores: Vec<Arc<dyn Storage>> = Vec::new();
            for w in 0..cfg.workers {
                let s = PgStore::open(&url, &format!("bench-{w}"))
                    .await
                    .map_err(db_err)?;
                stores.push(Arc::new(s));
            }
            let r = round("postgres", n, cfg, stores).await;
            server.drop_database(&name).await;
            r
        })?;
        ui.note(format!(
            "round {n} postgres: dequeue {:.0} jobs/s",
            pg.dequeue_jobs_per_s
        ));
        rounds.push(pg);
    }
    ui.clear();
    let _ = std::fs::remove_dir_all(&dir);
    let pg: Vec<f64> = rounds
        .iter()
        .filter(|r| r.engine == "postgres")
        .map(|r| r.dequeue_jobs_per_s)
        .collect();
    let median = crate::stats::percentile(&pg, 50.0).unwrap_or(0.0);
    let goal = Goal {
        name: "no-op dequeue on PostgreSQL".into(),
        target: format!("≥ {GOAL_MIN_DEQUEUE:.0} no-op jobs/s on this host's cores"),
        measured: format!("{median:.0} jobs/s (median of {} rounds)", pg.len()),
        met: Some(median >= GOAL_MIN_DEQUEUE),
        gap: format!("{:.2}× the target", median / GOAL_MIN_DEQUEUE),
    };
    Ok(NoopResults {
        kind: LABEL.into(),
        host: HostInfo::detect(&cfg.workdir),
        postgres,
        jobs: cfg.jobs,
        workers: cfg.workers,
        slots: cfg.slots,
        rounds,
        goal,
    })
}

impl NoopResults {
    /// The terminal report, labelled.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{LABEL}\npostgres: {}\n{} jobs per round, {} workers × {} slots\n\n",
            self.postgres, self.jobs, self.workers, self.slots
        );
        out.push_str(
            "round  engine     enqueue jobs/s  dequeue jobs/s  submit→start p50 / p99 ms\n",
        );
        for r in &self.rounds {
            let lat = r
                .submit_to_start_ms
                .map_or("-".into(), |p| format!("{:.1} / {:.1}", p.p50, p.p99));
            out.push_str(&format!(
                "{:<6} {:<10} {:>14.0}  {:>14.0}  {lat}\n",
                r.round, r.engine, r.enqueue_jobs_per_s, r.dequeue_jobs_per_s
            ));
        }
        let g = &self.goal;
        let met = match g.met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "-",
        };
        out.push_str(&format!(
            "\ngoal {met}: {} {}\n  measured: {}, {}\n",
            g.name, g.target, g.measured, g.gap
        ));
        out
    }

    /// Write `queue-noop.json` into `dir`.
    pub fn write_json(&self, dir: &std::path::Path) -> crate::error::Result<std::path::PathBuf> {
        crate::results::write_json_into(self, dir, "queue-noop.json")
    }
}
