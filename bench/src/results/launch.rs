//! The launch benchmark's results: `launch.json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Skipped;
use crate::error::Result;
use crate::host::HostInfo;

/// Mean CPU milliseconds per job, by process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuBreakdown {
    /// Jobs the means are over.
    pub jobs: usize,
    /// All of it: the sum of `parts`.
    pub total_ms: f64,
    /// Where `total_ms` comes from.
    pub total_source: String,
    /// The parts, each a mean per job; they add up to `total_ms`.
    pub parts: Vec<CpuPart>,
}

/// One part of a [`CpuBreakdown`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuPart {
    /// `launcher`, `skiff-process`, `job-cgroup` or `other`.
    pub name: String,
    /// Mean CPU milliseconds per job.
    pub ms: f64,
    /// What it counts.
    pub what: String,
}

/// Schema version of `launch.json` (2: `warm` and `cpu_breakdown` on
/// contenders and throughput levels).
pub const SCHEMA: u32 = 2;

/// How the jobs of a skiff contender ran, from `JobResult.warm`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmCounts {
    /// A waiting sandbox ran it.
    pub hit: usize,
    /// A sandbox was made for it on its path (policy `require` only).
    pub made: usize,
    /// The cold path ran it.
    pub miss: usize,
    /// No `warm` in the result (warm sandboxes not asked about).
    pub unknown: usize,
}

impl WarmCounts {
    /// Count one job.
    pub fn add(&mut self, w: Option<runtime::warm::WarmUse>) {
        use runtime::warm::WarmUse;
        match w {
            Some(WarmUse::Hit) => self.hit += 1,
            Some(WarmUse::Made) => self.made += 1,
            Some(WarmUse::Miss) => self.miss += 1,
            None => self.unknown += 1,
        }
    }

    /// Add another tally.
    pub fn merge(&mut self, o: &WarmCounts) {
        self.hit += o.hit;
        self.made += o.made;
        self.miss += o.miss;
        self.unknown += o.unknown;
    }

    /// All jobs counted.
    pub fn jobs(&self) -> usize {
        self.hit + self.made + self.miss + self.unknown
    }

    /// Hits over jobs.
    pub fn hit_rate(&self) -> Option<f64> {
        let n = self.jobs();
        (n > 0).then(|| self.hit as f64 / n as f64)
    }
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
    /// skiff contenders: how the timed jobs ran (warm hit, made, miss).
    #[serde(default)]
    pub warm: Option<WarmCounts>,
    /// skiff contenders: mean CPU per job by process (see `docs/bench.md`).
    #[serde(default)]
    pub cpu_breakdown: Option<CpuBreakdown>,
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
    /// skiff contenders: how the level's jobs ran.
    #[serde(default)]
    pub warm: Option<WarmCounts>,
    /// skiff contenders: mean CPU per job by process.
    #[serde(default)]
    pub cpu_breakdown: Option<CpuBreakdown>,
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

impl JobInfo {
    /// The archive's file name, for titles.
    pub fn archive_name(&self) -> String {
        self.archive
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// The whole result, written as `launch.json` (with its plots and its
/// terminal report, by the report module).
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

impl LaunchResults {
    /// A contender's latencies by name.
    pub fn get(&self, name: &str) -> Option<&LatencyResult> {
        self.contenders.iter().find(|c| c.name == name)
    }

    /// Write `launch.json` into `dir` (created if needed); returns its path.
    pub fn write_json(&self, dir: &Path) -> Result<PathBuf> {
        super::write_json_into(self, dir, "launch.json")
    }
}
