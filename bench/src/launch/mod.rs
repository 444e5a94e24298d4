//! The launch-latency benchmark (`skiff bench launch`).
//!
//! The same job (by default the vendored busybox image running `/bin/true`,
//! with a 64 MiB memory limit, a pids limit of 64 and no network) is started
//! through every contender that is present on this host, round by round and
//! interleaved (A B C A B C …, after untimed warm-up rounds), so that drift on
//! a busy machine hits all of them alike:
//!
//! | name | what one launch is |
//! | --- | --- |
//! | `skiff` | `skiff run --json …` as a whole process (libcontainer path) |
//! | `skiff-pool` | one request to an already running `skiff launcher` (no process start for skiff) |
//! | `runc`, `crun` | `RUNTIME run` of a bundle written by skiff's own spec builder, same rootfs |
//! | `podman` | `podman run --rm --network none` from a private storage root |
//! | `docker` | `docker run --rm --network none` on the engine of this host |
//! | `floor` | `unshare -m -p -f -n -u -i --mount-proc true`: the kernel's floor |
//! | `true` | plain `/bin/true`: what starting any process costs |
//!
//! Each launch records its wall-clock time, its CPU time (the children's
//! `getrusage` delta; for the pool, the launcher's CPU clock plus the job
//! cgroup's) and, for skiff, the phases of the launch. Then, unless
//! disabled, throughput: jobs per second at each concurrency level, for the
//! contenders that can run side by side (see [`throughput`]).
//!
//! [`prepare`] readies each contender (store import, bundles, `docker load`,
//! `podman load`); [`exec`] times one launch; [`report`] prints;
//! [`crate::plot`] draws. Results are written as `launch.json` plus SVG and
//! PNG plots (see `docs/bench.md`).

pub mod exec;
pub mod prepare;
pub mod report;
pub mod throughput;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::host::HostInfo;
use crate::import::Skipped;
use crate::stats::{percentile, Summary};
use crate::ui::Ui;

use self::exec::Sample;
use self::prepare::Prepared;

/// Schema version of `launch.json`.
pub const SCHEMA: u32 = 1;
/// Timed rounds by default.
pub const DEFAULT_ROUNDS: usize = 100;
/// Untimed warm-up rounds by default.
pub const DEFAULT_WARMUP: usize = 5;
/// Timed rounds with `--quick`.
pub const QUICK_ROUNDS: usize = 15;
/// Warm-up rounds with `--quick`.
pub const QUICK_WARMUP: usize = 2;
/// Concurrency levels of the throughput runs.
pub const DEFAULT_CONCURRENCY: [usize; 4] = [1, 2, 8, 32];
/// The job's memory limit.
pub const DEFAULT_MEMORY: u64 = 64 << 20;
/// The job's pids limit.
pub const DEFAULT_PIDS: i64 = 64;

/// The contenders, in the order they run within a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Contender {
    /// `skiff run` as a whole process.
    Skiff,
    /// skiff's launcher pool: request to result.
    SkiffPool,
    /// `runc run`.
    Runc,
    /// `crun run` (with the hybrid-cgroup workaround where needed).
    Crun,
    /// `podman run --rm`.
    Podman,
    /// `docker run --rm`.
    Docker,
    /// `unshare -m -p -f -n -u -i --mount-proc true`.
    Floor,
    /// `/bin/true`.
    True,
}

impl Contender {
    /// Every contender, in running order.
    pub const ALL: [Contender; 8] = [
        Contender::Skiff,
        Contender::SkiffPool,
        Contender::Runc,
        Contender::Crun,
        Contender::Podman,
        Contender::Docker,
        Contender::Floor,
        Contender::True,
    ];

    /// Its name on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            Contender::Skiff => "skiff",
            Contender::SkiffPool => "skiff-pool",
            Contender::Runc => "runc",
            Contender::Crun => "crun",
            Contender::Podman => "podman",
            Contender::Docker => "docker",
            Contender::Floor => "floor",
            Contender::True => "true",
        }
    }

    /// Parse a name (`pool` is accepted for `skiff-pool`).
    pub fn parse(name: &str) -> Result<Contender> {
        let name = name.trim();
        let name = if name == "pool" { "skiff-pool" } else { name };
        Contender::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Contender::ALL.iter().map(|c| c.name()).collect();
                Error::UnknownContender(name.to_string(), known.join(", "))
            })
    }

    /// Whether its throughput is measured (daemon-backed tools are not:
    /// they serialise on their daemon, and take seconds per batch).
    pub fn in_throughput(self) -> bool {
        matches!(
            self,
            Contender::Skiff
                | Contender::SkiffPool
                | Contender::Runc
                | Contender::Crun
                | Contender::Floor
        )
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LaunchConfig {
    /// The `skiff` binary whose `run` and `launcher` are measured.
    pub skiff_exe: PathBuf,
    /// The image archive (default: the vendored busybox, see [`default_image`]).
    pub image: Option<PathBuf>,
    /// The job's command.
    pub command: Vec<String>,
    /// The job's memory limit, in bytes.
    pub memory_bytes: u64,
    /// The job's pids limit.
    pub pids_limit: i64,
    /// Timed rounds.
    pub rounds: usize,
    /// Untimed warm-up rounds before them.
    pub warmup: usize,
    /// Contenders to run (`None`: every one that is installed).
    pub contenders: Option<Vec<Contender>>,
    /// Measure throughput too.
    pub throughput: bool,
    /// Concurrency levels for throughput.
    pub concurrency: Vec<usize>,
    /// Jobs per concurrency level (`None`: scaled with the level, see
    /// [`throughput::jobs_for`]).
    pub jobs_per_level: Option<usize>,
    /// Quick mode: fewer jobs per level and fewer attach probes.
    pub quick: bool,
    /// Sleep between two launches (outside the timed window).
    pub pause: Duration,
    /// Work directory (bench store, bundles, podman storage).
    pub workdir: PathBuf,
    /// Free-form host facts to record with the results.
    pub host_notes: Vec<String>,
}

impl Default for LaunchConfig {
    fn default() -> Self {
        LaunchConfig {
            skiff_exe: PathBuf::from("skiff"),
            image: None,
            command: vec!["/bin/true".into()],
            memory_bytes: DEFAULT_MEMORY,
            pids_limit: DEFAULT_PIDS,
            rounds: DEFAULT_ROUNDS,
            warmup: DEFAULT_WARMUP,
            contenders: None,
            throughput: true,
            concurrency: DEFAULT_CONCURRENCY.to_vec(),
            jobs_per_level: None,
            quick: false,
            pause: Duration::ZERO,
            workdir: PathBuf::from(crate::import::DEFAULT_WORKDIR),
            host_notes: Vec::new(),
        }
    }
}

/// The vendored busybox archive: `vendor-images/busybox.tar` (or `.tar.gz`)
/// in the current directory, else in the source tree this was built from.
pub fn default_image() -> Option<PathBuf> {
    let roots = [
        PathBuf::from("."),
        Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    ];
    roots
        .iter()
        .flat_map(|r| {
            ["busybox.tar", "busybox.tar.gz"]
                .into_iter()
                .map(move |n| r.join("vendor-images").join(n))
        })
        .find(|p| p.is_file())
}

/// One contender's latencies.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyResult {
    /// Contender name.
    pub name: String,
    /// What one launch runs.
    pub command: String,
    /// Tool version.
    pub version: Option<String>,
    /// Wall-clock milliseconds of each timed launch, in order.
    pub samples_ms: Vec<f64>,
    /// Median.
    pub median_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Fastest.
    pub min_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// This median over skiff's (`skiff run`) median: above 1, skiff is faster.
    pub ratio_vs_skiff: Option<f64>,
    /// This median over the floor's median.
    pub ratio_vs_floor: Option<f64>,
    /// CPU milliseconds of each timed launch.
    pub cpu_samples_ms: Vec<f64>,
    /// Median CPU milliseconds per launch.
    pub cpu_median_ms: Option<f64>,
    /// Where the CPU time comes from.
    pub cpu_source: String,
}

/// One phase's median.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseMedian {
    /// Phase name (`lookup`, `rootfs`, … or the part outside the runner).
    pub name: String,
    /// Median milliseconds.
    pub median_ms: f64,
}

/// Where a skiff launch spends its time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseBreakdown {
    /// `skiff` or `skiff-pool`.
    pub contender: String,
    /// Medians of each phase, in launch order.
    pub phases: Vec<PhaseMedian>,
    /// Median wall-clock of the whole launch, as the benchmark saw it.
    pub wall_median_ms: f64,
}

/// One concurrency level.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Level {
    /// Jobs in flight at once.
    pub concurrency: usize,
    /// Jobs completed.
    pub jobs: usize,
    /// Jobs that failed.
    pub failures: usize,
    /// The first failure's message, when any failed.
    pub first_error: Option<String>,
    /// Wall-clock seconds for all of them.
    pub wall_s: f64,
    /// Jobs per second.
    pub jobs_per_s: f64,
    /// Mean CPU milliseconds per job.
    pub cpu_ms_per_job: Option<f64>,
}

/// One contender's throughput.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThroughputResult {
    /// Contender name.
    pub name: String,
    /// What runs concurrently.
    pub how: String,
    /// The levels, in increasing concurrency.
    pub levels: Vec<Level>,
}

/// A goal of the runtime issue, and how this run compares.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Goal {
    /// Short name.
    pub name: String,
    /// The target, in words.
    pub target: String,
    /// The measured value, in words.
    pub measured: String,
    /// Met, missed, or not measurable in this run.
    pub met: Option<bool>,
    /// How far off (or ahead), in words.
    pub gap: String,
}

/// Facts about the host that bear on launch times.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchHost {
    /// The cgroup lines of `/proc/mounts`.
    pub cgroup_mounts: Vec<String>,
    /// Whether any of them carries `favordynmods`.
    pub favordynmods_in_mounts: bool,
    /// Milliseconds of single writes of a task into a fresh cgroup's
    /// `cgroup.procs`, each after 250 ms of quiet (the attach cost).
    pub idle_attach_ms: Vec<f64>,
    /// Their median.
    pub idle_attach_median_ms: Option<f64>,
    /// Why the attach probe could not run, if it could not.
    pub idle_attach_error: Option<String>,
    /// Load averages before the first round and after the last.
    pub load_before: String,
    /// See `load_before`.
    pub load_after: String,
    /// Notes given on the command line (`--host-note`).
    pub notes: Vec<String>,
}

/// The job every contender runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobInfo {
    /// The image archive.
    pub archive: PathBuf,
    /// The image id in skiff's bench store.
    pub image_id: String,
    /// The command.
    pub command: Vec<String>,
    /// Memory limit in bytes (swap forbidden).
    pub memory_bytes: u64,
    /// Pids limit.
    pub pids_limit: i64,
    /// Always `none`.
    pub network: String,
}

/// The whole result, written as `launch.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchResults {
    /// Always `launch`.
    pub benchmark: String,
    /// [`SCHEMA`].
    pub schema: u32,
    /// When the run finished (UTC, RFC 3339).
    pub date: String,
    /// The machine.
    pub host: HostInfo,
    /// cgroup and load facts.
    pub host_facts: LaunchHost,
    /// The job.
    pub job: JobInfo,
    /// Timed rounds.
    pub rounds: usize,
    /// Warm-up rounds.
    pub warmup: usize,
    /// Latency results, in running order.
    pub contenders: Vec<LatencyResult>,
    /// Contenders left out, and why.
    pub skipped: Vec<Skipped>,
    /// skiff's phases.
    pub phases: Vec<PhaseBreakdown>,
    /// Throughput, when measured.
    pub throughput: Vec<ThroughputResult>,
    /// The runtime issue's goals against this run.
    pub goals: Vec<Goal>,
    /// Plot files written beside `launch.json` (names).
    pub plots: Vec<String>,
    /// Anything else worth knowing.
    pub notes: Vec<String>,
}

/// What [`LaunchResults::write`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// `launch.json`.
    pub json: PathBuf,
    /// The plots (SVG and PNG).
    pub plots: Vec<PathBuf>,
}

impl LaunchResults {
    /// A contender's latencies by name.
    pub fn get(&self, name: &str) -> Option<&LatencyResult> {
        self.contenders.iter().find(|c| c.name == name)
    }

    /// Draw the plots into `dir` and write `launch.json` there (naming them).
    /// A plot that cannot be drawn is noted, not fatal.
    pub fn write(&mut self, dir: &Path) -> Result<Written> {
        fs::create_dir_all(dir).ctx("create", dir)?;
        let (plots, problems) = crate::plot::launch_plots(self, dir);
        self.plots = plots
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        self.notes.extend(problems);
        let path = dir.join("launch.json");
        let data = serde_json::to_vec_pretty(self).map_err(|source| Error::Json {
            what: path.display().to_string(),
            source,
        })?;
        let tmp = dir.join(".launch.json.tmp");
        fs::write(&tmp, data).ctx("write", &tmp)?;
        fs::rename(&tmp, &path).ctx("rename into place", &path)?;
        Ok(Written { json: path, plots })
    }

    /// The terminal report.
    pub fn table(&self) -> String {
        report::table(self)
    }
}

/// Per-contender samples gathered during the rounds.
#[derive(Debug, Default)]
struct Collected {
    wall: Vec<f64>,
    cpu: Vec<f64>,
    phases: BTreeMap<usize, Vec<f64>>,
    failed: Option<String>,
}

/// Run the launch benchmark.
pub fn run(cfg: &LaunchConfig, ui: &Ui) -> Result<LaunchResults> {
    if cfg.rounds == 0 {
        return Err(Error::Usage("--rounds must be at least 1".into()));
    }
    if cfg.command.is_empty() {
        return Err(Error::Usage("the job needs a command".into()));
    }
    if cfg.throughput && cfg.concurrency.contains(&0) {
        return Err(Error::Usage("concurrency levels must be at least 1".into()));
    }
    fs::create_dir_all(&cfg.workdir).ctx("create", &cfg.workdir)?;
    let workdir = fs::canonicalize(&cfg.workdir).ctx("resolve", &cfg.workdir)?;
    let _lock = crate::import::lock_workdir(&workdir)?;
    let dir = workdir.join("launch");
    fs::create_dir_all(&dir).ctx("create", &dir)?;
    let archive = match &cfg.image {
        Some(p) => p.clone(),
        None => default_image().ok_or_else(|| {
            Error::Usage(
                "no image: vendor-images/busybox.tar is not here; give --image ARCHIVE".into(),
            )
        })?,
    };
    let archive = fs::canonicalize(&archive).ctx("find the image", &archive)?;
    let mut notes = Vec::new();

    ui.spin("probing the host (cgroup attach cost)");
    let mut host_facts = prepare::host_facts(&dir, if cfg.quick { 3 } else { 7 });
    host_facts.notes = cfg.host_notes.clone();
    ui.clear();

    ui.spin(format!(
        "importing {} into the bench store",
        archive.display()
    ));
    let image = prepare::bench_image(&dir, &archive)?;
    ui.clear();

    let wanted: Vec<Contender> = cfg
        .contenders
        .clone()
        .unwrap_or_else(|| Contender::ALL.to_vec());
    let max_slots = if cfg.throughput {
        cfg.concurrency.iter().copied().max().unwrap_or(1)
    } else {
        1
    };
    let mut ready: Vec<Prepared> = Vec::new();
    let mut skipped = Vec::new();
    for c in Contender::ALL.into_iter().filter(|c| wanted.contains(c)) {
        ui.spin(format!("preparing {}", c.name()));
        let p = prepare::contender(c, cfg, &dir, &image, max_slots);
        ui.clear();
        match p {
            Ok(p) => ready.push(p),
            Err(reason) => {
                ui.note(format!("skipping {}: {reason}", c.name()));
                skipped.push(Skipped {
                    name: c.name().into(),
                    reason,
                });
            }
        }
    }
    if ready.is_empty() {
        return Err(Error::Usage("no contender can run".into()));
    }
    if cfg.contenders.is_some() && !ready.iter().any(|p| p.which == Contender::Skiff) {
        notes.push("skiff run was not among the contenders: no ratios to skiff".into());
    }

    // Latency: interleaved rounds.
    let load_before = crate::host::load_average();
    let mut collected: Vec<Collected> = ready.iter().map(|_| Collected::default()).collect();
    let total = cfg.warmup + cfg.rounds;
    ui.steps((total * ready.len()) as u64, "launch latency");
    for round in 0..total {
        let warm = round < cfg.warmup;
        let label = if warm {
            format!("warm-up {}/{}", round + 1, cfg.warmup)
        } else {
            format!("round {}/{}", round - cfg.warmup + 1, cfg.rounds)
        };
        for (p, col) in ready.iter_mut().zip(collected.iter_mut()) {
            if col.failed.is_some() {
                ui.inc();
                continue;
            }
            ui.message(format!("{label}: {}", p.which.name()));
            if !cfg.pause.is_zero() {
                std::thread::sleep(cfg.pause);
            }
            match p.launch(0) {
                Ok(s) => {
                    if !warm {
                        record(col, &s);
                    }
                }
                Err(e) => {
                    if p.which == Contender::Skiff || p.which == Contender::SkiffPool {
                        ui.clear();
                        return Err(Error::SkiffFailed {
                            round,
                            detail: format!("{}: {e}", p.which.name()),
                        });
                    }
                    ui.note(format!(
                        "{} failed in round {}; dropping it: {e}",
                        p.which.name(),
                        round + 1
                    ));
                    col.failed = Some(format!("failed in round {}: {e}", round + 1));
                }
            }
            ui.inc();
        }
    }
    ui.clear();

    // Throughput.
    let mut tput = Vec::new();
    if cfg.throughput {
        let runnable: Vec<usize> = ready
            .iter()
            .zip(&collected)
            .enumerate()
            .filter(|(_, (p, c))| p.which.in_throughput() && c.failed.is_none())
            .map(|(i, _)| i)
            .collect();
        let jobs_total: usize = runnable.len()
            * cfg
                .concurrency
                .iter()
                .map(|c| throughput::jobs_for(*c, cfg.jobs_per_level, cfg.quick) + c)
                .sum::<usize>();
        ui.steps(jobs_total as u64, "throughput");
        for i in runnable {
            let p = &mut ready[i];
            match throughput::measure(p, &cfg.concurrency, cfg.jobs_per_level, cfg.quick, ui) {
                Ok(r) => tput.push(r),
                Err(e) => {
                    ui.note(format!("{} throughput failed: {e}", p.which.name()));
                    notes.push(format!("{} throughput failed: {e}", p.which.name()));
                }
            }
        }
        ui.clear();
    }
    let load_after = crate::host::load_average();
    host_facts.load_before = load_before;
    host_facts.load_after = load_after;

    // Tear down (launchers, podman's mounts), outside every timed window.
    let mut teardown_notes = Vec::new();
    for p in ready.iter_mut() {
        teardown_notes.extend(p.finish());
    }
    notes.extend(teardown_notes);

    // Summaries.
    let median_of = |c: Contender| -> Option<f64> {
        ready
            .iter()
            .zip(&collected)
            .find(|(p, col)| p.which == c && col.failed.is_none())
            .and_then(|(_, col)| Summary::of(&col.wall))
            .map(|s| s.median)
    };
    let skiff_median = median_of(Contender::Skiff).filter(|m| *m > 0.0);
    let floor_median = median_of(Contender::Floor).filter(|m| *m > 0.0);
    let mut contenders = Vec::new();
    let mut phases = Vec::new();
    for (p, col) in ready.iter().zip(collected) {
        if let Some(why) = col.failed {
            skipped.push(Skipped {
                name: p.which.name().into(),
                reason: why,
            });
            continue;
        }
        let Some(s) = Summary::of(&col.wall) else {
            continue;
        };
        if let Some(b) = exec::breakdown(p.which, &col.phases, s.median) {
            phases.push(b);
        }
        contenders.push(LatencyResult {
            name: p.which.name().into(),
            command: p.command.clone(),
            version: p.version.clone(),
            median_ms: s.median,
            p95_ms: percentile(&col.wall, 95.0).unwrap_or(s.max),
            p99_ms: percentile(&col.wall, 99.0).unwrap_or(s.max),
            min_ms: s.min,
            max_ms: s.max,
            mean_ms: s.mean,
            ratio_vs_skiff: skiff_median.map(|m| s.median / m),
            ratio_vs_floor: floor_median.map(|m| s.median / m),
            cpu_median_ms: Summary::of(&col.cpu).map(|c| c.median),
            cpu_samples_ms: col.cpu,
            cpu_source: p.cpu_source().into(),
            samples_ms: col.wall,
        });
    }
    notes.push(
        "wall-clock from spawning the command (or sending the pool request) to its exit (or \
         the reply); every launch runs the same job with the same limits; rounds interleave \
         the contenders"
            .into(),
    );
    if contenders
        .iter()
        .any(|c| c.name == "docker" || c.name == "podman")
    {
        notes.push(
            "docker's and podman's CPU time is their client's (and podman's children it \
             waited for): the engine's and conmon's work is not counted"
                .into(),
        );
    }
    let mut results = LaunchResults {
        benchmark: "launch".into(),
        schema: SCHEMA,
        date: crate::host::now_rfc3339(),
        host: HostInfo::detect(&dir),
        host_facts,
        job: JobInfo {
            archive,
            image_id: image.id.clone(),
            command: cfg.command.clone(),
            memory_bytes: cfg.memory_bytes,
            pids_limit: cfg.pids_limit,
            network: "none".into(),
        },
        rounds: cfg.rounds,
        warmup: cfg.warmup,
        contenders,
        skipped,
        phases,
        throughput: tput,
        goals: Vec::new(),
        plots: Vec::new(),
        notes,
    };
    results.goals = report::goals(&results);
    Ok(results)
}

fn record(col: &mut Collected, s: &Sample) {
    col.wall.push(s.wall_ms);
    if let Some(c) = s.cpu_ms {
        col.cpu.push(c);
    }
    for (i, v) in s.phases.iter().enumerate() {
        col.phases.entry(i).or_default().push(*v);
    }
}

/// Milliseconds since `t`.
pub(crate) fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}
