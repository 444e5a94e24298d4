//! The soak's results: samples of the launcher pool and the store, and
//! the verdict.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::host::HostInfo;

/// Version of the JSON document.
pub const SCHEMA: u32 = 1;

/// One launcher at one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LauncherSample {
    /// Its pid.
    pub pid: u32,
    /// `VmRSS`, in KiB (`None`: unreadable).
    pub rss_kib: Option<u64>,
    /// Entries of `/proc/PID/fd`.
    pub fds: Option<usize>,
    /// Lines of `/proc/PID/mountinfo` (its private mount namespace).
    pub mounts: Option<usize>,
}

/// The state of the pool and the store after some jobs (its one-line form
/// is in the report module).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Jobs finished so far.
    pub jobs_done: usize,
    /// Seconds since the first job.
    pub elapsed_s: f64,
    /// Jobs per second since the previous sample.
    pub jobs_per_s: f64,
    /// Each launcher.
    pub launchers: Vec<LauncherSample>,
    /// Job cgroup directories under the store's group, summed over every
    /// hierarchy.
    pub job_cgroups: usize,
    /// Entries of `ROOT/run`.
    pub run_entries: usize,
    /// Entries of `ROOT/leases`.
    pub leases: usize,
    /// Lines of this process's `/proc/self/mountinfo` (host-wide; other
    /// work on the host moves it too).
    pub host_mounts: usize,
    /// Host mounts at or beneath the store root.
    pub store_mounts: usize,
    /// Failed jobs so far.
    pub failures: usize,
}

/// First against last sample, latencies, and what leaked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Jobs run.
    pub jobs: usize,
    /// Jobs that failed (skiff error, exit code, or wrong output).
    pub failures: usize,
    /// The first failures' errors.
    pub errors: Vec<String>,
    /// Seconds from the first job to the last.
    pub wall_s: f64,
    /// Jobs per second over the whole soak.
    pub jobs_per_s: f64,
    /// Median request → reply time, ms.
    pub latency_median_ms: Option<f64>,
    /// 99th percentile of it, ms.
    pub latency_p99_ms: Option<f64>,
    /// Each launcher's RSS at the first sample, KiB.
    pub rss_first_kib: Vec<Option<u64>>,
    /// … and at the last.
    pub rss_last_kib: Vec<Option<u64>>,
    /// Each launcher's open descriptors at the first sample.
    pub fds_first: Vec<Option<usize>>,
    /// … and at the last.
    pub fds_last: Vec<Option<usize>>,
    /// Each launcher's mounts at the first sample.
    pub mounts_first: Vec<Option<usize>>,
    /// … and at the last.
    pub mounts_last: Vec<Option<usize>>,
    /// Host-wide mounts at the first sample.
    pub host_mounts_first: usize,
    /// … and at the last.
    pub host_mounts_last: usize,
    /// Job cgroups left after the last job.
    pub job_cgroups_left: usize,
    /// `ROOT/run` entries left after the last job.
    pub run_entries_left: usize,
    /// Leases left after the last job.
    pub leases_left: usize,
    /// Mounts beneath the store left after the last job.
    pub store_mounts_left: usize,
    /// The same four counts once the launchers have exited.
    pub after_exit: Leftovers,
    /// How each launcher exited (`exit status: 0` is clean).
    pub launcher_exits: Vec<String>,
    /// Every leak found, in words; empty when none.
    pub leaks: Vec<String>,
}

/// What is left of the jobs in the store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Leftovers {
    /// Job cgroup directories, summed over every hierarchy.
    pub job_cgroups: usize,
    /// `ROOT/run` entries.
    pub run_entries: usize,
    /// `ROOT/leases` entries.
    pub leases: usize,
    /// Host mounts beneath the store.
    pub store_mounts: usize,
}

/// Facts about the host that bear on the figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakHost {
    /// OS, kernel, CPUs, memory, the work directory's filesystem.
    #[serde(flatten)]
    pub info: HostInfo,
    /// `v1` or `v2`: the layout skiff's cgroup driver uses.
    pub cgroup_driver: String,
    /// Whether a cgroup2 hierarchy is mounted beside v1 ones (hybrid).
    pub hybrid: bool,
    /// Whether a cgroup mount lists `favordynmods`.
    pub favordynmods_in_mounts: bool,
    /// Load average before the first job.
    pub load_before: String,
    /// Load average after the last.
    pub load_after: String,
}

/// A whole soak (its closing summary is in the report module).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakResults {
    /// `"soak"`.
    pub benchmark: String,
    /// [`SCHEMA`].
    pub schema: u32,
    /// When it started (UTC).
    pub date: String,
    /// The host.
    pub host: SoakHost,
    /// The image archive.
    pub image: PathBuf,
    /// Jobs asked for.
    pub jobs: usize,
    /// Launchers.
    pub launchers: usize,
    /// Jobs between samples.
    pub every: usize,
    /// The jobs: what most run, and what every `OUTPUT_EVERY`-th runs.
    pub job_mix: Vec<String>,
    /// Before the first job, after each launcher's two untimed warm-up jobs
    /// (one of each kind).
    pub baseline: Sample,
    /// After every `every` jobs, and after the last.
    pub samples: Vec<Sample>,
    /// The verdict.
    pub summary: Summary,
}

impl SoakResults {
    /// No job failed and nothing leaked.
    pub fn ok(&self) -> bool {
        self.summary.failures == 0 && self.summary.leaks.is_empty()
    }

    /// Write the results as JSON to `path`.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(|source| Error::Json {
            what: "soak results".into(),
            source,
        })?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).ctx("create", dir)?;
        }
        fs::write(path, text).ctx("write", path)
    }
}
