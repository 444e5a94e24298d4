//! What the launch benchmark runs: the contenders, the job and its
//! limits, rounds and concurrency levels, and their defaults.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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
    /// skiff's launcher pool with warm sandboxes (`skiff launcher --warm N`).
    SkiffWarm,
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
    pub const ALL: [Contender; 9] = [
        Contender::Skiff,
        Contender::SkiffPool,
        Contender::SkiffWarm,
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
            Contender::SkiffWarm => "skiff-warm",
            Contender::Runc => "runc",
            Contender::Crun => "crun",
            Contender::Podman => "podman",
            Contender::Docker => "docker",
            Contender::Floor => "floor",
            Contender::True => "true",
        }
    }

    /// Parse a name (`pool` is accepted for `skiff-pool`, `warm` for
    /// `skiff-warm`).
    pub fn parse(name: &str) -> Result<Contender> {
        let name = name.trim();
        let name = match name {
            "pool" => "skiff-pool",
            "warm" => "skiff-warm",
            other => other,
        };
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
                | Contender::SkiffWarm
                | Contender::Runc
                | Contender::Crun
                | Contender::Floor
        )
    }
}

impl Contender {
    /// skiff itself (`skiff run`, the pool, the warm pool): a failure stops
    /// the benchmark, and its CPU time is broken down by process.
    pub fn is_skiff(self) -> bool {
        matches!(
            self,
            Contender::Skiff | Contender::SkiffPool | Contender::SkiffWarm
        )
    }

    /// Served by `skiff launcher` processes.
    pub fn is_pool(self) -> bool {
        matches!(self, Contender::SkiffPool | Contender::SkiffWarm)
    }
}

/// Sandboxes each `skiff-warm` launcher keeps waiting (`--warm` and
/// `--warm-per-key`: the benchmark's job has one key).
pub const WARM_STOCK: usize = 2;

/// What to run.
#[derive(Debug, Clone)]
pub struct LaunchConfig {
    /// The `skiff` binary whose `run` and `launcher` are measured.
    pub skiff_exe: PathBuf,
    /// The image archive (default: the vendored busybox, see [`crate::workdir::default_image`]).
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
    /// `throughput::jobs_for`).
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
            workdir: PathBuf::from(crate::workdir::DEFAULT_WORKDIR),
            host_notes: Vec::new(),
        }
    }
}
