//! `skiff bench queue --fleet`: container jobs (`true`) through a fleet
//! of one, two and three `skiff serve` workers on one PostgreSQL, each
//! worker with a store of its own, alternating the fleet sizes round by
//! round on the same jobs. Every worker shares this host's cores, so the
//! result is a ratio to one worker, not a scaling figure: it shows what
//! the fleet's coordination costs (or not) when the cores are the limit.
//!
//! PostgreSQL is the server given with `--db` (a new database per round,
//! dropped after), else a private cluster with PostgreSQL's stock
//! settings, as `--noop` does.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::postgres::{db_err, Server};
use super::results::ServeRound;
use super::{QueueBenchError, Result, Round, Scratch, COMMAND};
use crate::error::{Error, IoContext};
use crate::host::HostInfo;

/// What to run.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The skiff binary the workers run.
    pub skiff_exe: PathBuf,
    /// The image archive (default: the vendored busybox).
    pub image: Option<PathBuf>,
    /// PostgreSQL to use; `None`: a private cluster.
    pub db: Option<String>,
    /// Jobs per round.
    pub jobs: usize,
    /// Jobs per submit.
    pub batch: usize,
    /// Launchers per worker.
    pub launchers: usize,
    /// Rounds of each fleet size.
    pub rounds: usize,
    /// The largest fleet (sizes 1 to this).
    pub max_workers: usize,
    /// Work directory; the benchmark uses `WORKDIR/queue-fleet/`.
    pub workdir: PathBuf,
}

/// One round of one fleet size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetRound {
    /// Workers in the fleet.
    pub workers: usize,
    /// The round's figures (steady rate across every worker).
    pub serve: ServeRound,
}

/// One fleet size's medians.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetSize {
    /// Workers.
    pub workers: usize,
    /// Median steady jobs/s.
    pub steady_jobs_per_s: Option<f64>,
    /// That over one worker's median.
    pub ratio_to_one: Option<f64>,
    /// Jobs that did not complete, all rounds.
    pub failed: usize,
}

/// Everything measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetResults {
    /// What this is.
    pub benchmark: String,
    /// The host.
    pub host: HostInfo,
    /// Where PostgreSQL ran.
    pub postgres: String,
    /// Jobs per round.
    pub jobs: usize,
    /// Launchers per worker.
    pub launchers: usize,
    /// Every round, in the order run.
    pub rounds: Vec<FleetRound>,
    /// Per fleet size.
    pub sizes: Vec<FleetSize>,
}

/// Import the image into a fresh store at `root`.
fn extra_store(exe: &Path, root: &Path, archive: &Path) -> Result<()> {
    Scratch::clear(root)?;
    let out = std::process::Command::new(exe)
        .arg("--root")
        .arg(root)
        .args(["image", "import"])
        .arg(archive)
        .output()
        .ctx("run skiff image import", root)?;
    if !out.status.success() {
        return Err(QueueBenchError::Task(format!(
            "import {} into {}: {}",
            archive.display(),
            root.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Run the fleet benchmark.
pub fn run(cfg: &FleetConfig, ui: &crate::Ui) -> Result<FleetResults> {
    if cfg.jobs == 0 || cfg.launchers == 0 || cfg.rounds == 0 || cfg.max_workers == 0 {
        return Err(Error::Usage(
            "--jobs, --launchers, --rounds and --hosts must be at least 1".into(),
        )
        .into());
    }
    let (_lock, dir, archive) =
        crate::workdir::private_dir(&cfg.workdir, "queue-fleet", cfg.image.as_ref())?;
    let store = dir.join("store");
    Scratch::clear(&store)?;
    let mut scratch = vec![Scratch {
        store: store.clone(),
    }];
    ui.spin("importing the image into a store per worker");
    let image = crate::launch::prepare::bench_image(&dir, &archive)?;
    let mut roots = vec![fs::canonicalize(&image.store_root).ctx("resolve", &image.store_root)?];
    for i in 2..=cfg.max_workers {
        let root = dir.join(format!("store-{i}"));
        extra_store(&cfg.skiff_exe, &root, &archive)?;
        scratch.push(Scratch {
            store: root.clone(),
        });
        roots.push(fs::canonicalize(&root).ctx("resolve", &root)?);
    }
    ui.clear();
    let server = Server::start(cfg.db.as_deref())?;
    let postgres = server.describe();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| db_err(format!("tokio runtime: {e}")))?;
    let command = vec![COMMAND.to_string()];
    let mut rounds = Vec::new();
    for n in 1..=cfg.rounds {
        for k in 1..=cfg.max_workers {
            ui.spin(format!("round {n}: {k} worker(s)"));
            let name = format!("skiff_fleet_{}_{n}_{k}", std::process::id());
            let url = rt.block_on(server.database(&name))?;
            let round = Round {
                exe: &cfg.skiff_exe,
                root: &roots[0],
                logs: &dir,
                image_id: &image.id,
                command: &command,
                jobs: cfg.jobs,
                batch: cfg.batch,
                launchers: cfg.launchers,
            };
            let mine: Vec<&Path> = roots[..k].iter().map(PathBuf::as_path).collect();
            let r = super::worker::fleet_round(&round, &mine, &url, n);
            rt.block_on(server.drop_database(&name));
            let serve = r?;
            ui.note(format!(
                "round {n}, {k} worker(s): steady {} jobs/s, {} failed",
                serve
                    .steady_jobs_per_s
                    .map_or("-".into(), |v| format!("{v:.1}")),
                serve.failed
            ));
            rounds.push(FleetRound { workers: k, serve });
        }
    }
    ui.clear();
    let median = |k: usize| {
        let v: Vec<f64> = rounds
            .iter()
            .filter(|r| r.workers == k)
            .filter_map(|r| r.serve.steady_jobs_per_s)
            .collect();
        crate::stats::percentile(&v, 50.0)
    };
    let one = median(1);
    let sizes = (1..=cfg.max_workers)
        .map(|k| {
            let m = median(k);
            FleetSize {
                workers: k,
                steady_jobs_per_s: m,
                ratio_to_one: m.zip(one).map(|(m, o)| m / o),
                failed: rounds
                    .iter()
                    .filter(|r| r.workers == k)
                    .map(|r| r.serve.failed)
                    .sum(),
            }
        })
        .collect();
    drop(scratch);
    Ok(FleetResults {
        benchmark: "queue-fleet".into(),
        host: HostInfo::detect(&cfg.workdir),
        postgres,
        jobs: cfg.jobs,
        launchers: cfg.launchers,
        rounds,
        sizes,
    })
}

impl FleetResults {
    /// The terminal report.
    pub fn table(&self) -> String {
        let mut out = format!(
            "container jobs (`{COMMAND}`) through a fleet on one PostgreSQL; every worker \
             shares this host's cores: ratios, not scaling\npostgres: {}\n{} jobs per round, \
             {} launchers per worker\n\nworkers  steady jobs/s per round           median  \
             ratio to 1  failed\n",
            self.postgres, self.jobs, self.launchers
        );
        for s in &self.sizes {
            let per: Vec<String> = self
                .rounds
                .iter()
                .filter(|r| r.workers == s.workers)
                .map(|r| {
                    r.serve
                        .steady_jobs_per_s
                        .map_or("-".into(), |v| format!("{v:.0}"))
                })
                .collect();
            out.push_str(&format!(
                "{:<8} {:<32} {:>6}  {:>10}  {}\n",
                s.workers,
                per.join(", "),
                s.steady_jobs_per_s
                    .map_or("-".into(), |v| format!("{v:.1}")),
                s.ratio_to_one.map_or("-".into(), |v| format!("{v:.2}")),
                s.failed
            ));
        }
        out
    }

    /// Every job completed.
    pub fn ok(&self) -> bool {
        self.sizes.iter().all(|s| s.failed == 0)
    }

    /// Write `queue-fleet.json` into `dir`.
    pub fn write_json(&self, dir: &Path) -> crate::error::Result<PathBuf> {
        crate::results::write_json_into(self, dir, "queue-fleet.json")
    }
}
