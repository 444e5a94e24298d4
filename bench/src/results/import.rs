//! The import benchmark's results: `import.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::image::ImageInfo;
use super::Skipped;
use crate::error::Result;
use crate::host::HostInfo;

/// Schema version of `import.json`.
pub const SCHEMA: u32 = 1;

/// One contender's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContenderResult {
    /// Contender name.
    pub name: String,
    /// What was timed, as a shell-like command.
    pub command: String,
    /// Tool versions, when external.
    pub version: Option<String>,
    /// Wall-clock seconds of each timed round.
    pub samples_s: Vec<f64>,
    /// Median seconds.
    pub median_s: f64,
    /// Fastest round.
    pub min_s: f64,
    /// Slowest round.
    pub max_s: f64,
    /// Mean seconds.
    pub mean_s: f64,
    /// Uncompressed layer MB (10^6 bytes) per second at the median.
    pub mb_per_s: Option<f64>,
    /// This contender's median over skiff's median (> 1: skiff is faster).
    pub ratio_vs_skiff: Option<f64>,
    /// CPU seconds (user + system, children included) of each timed round.
    pub cpu_samples_s: Vec<f64>,
    /// Median CPU seconds.
    pub cpu_median_s: f64,
    /// This contender's median CPU time over skiff's.
    pub cpu_ratio_vs_skiff: Option<f64>,
    /// Median seconds of each phase, for multi-step contenders.
    pub phases_median_s: BTreeMap<String, f64>,
}

/// The whole result, written as `import.json` (its terminal table is in
/// the report module).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportResults {
    /// Always `import`.
    pub benchmark: String,
    /// [`SCHEMA`].
    pub schema: u32,
    /// When the run finished (UTC, RFC 3339).
    pub date: String,
    /// Where.
    pub host: HostInfo,
    /// On what.
    pub image: ImageInfo,
    /// Timed rounds.
    pub rounds: usize,
    /// Warm-up rounds.
    pub warmup: usize,
    /// Contenders in their order within a round.
    pub order: Vec<String>,
    /// Results, in order.
    pub contenders: Vec<ContenderResult>,
    /// Contenders left out, and why.
    pub skipped: Vec<Skipped>,
    /// Milliseconds to create 1000 empty files, before each timed round:
    /// high values flag rounds slowed by the disk (see `crate::trash`).
    pub fs_probe_ms: Vec<f64>,
    /// Anything else worth knowing about the run.
    pub notes: Vec<String>,
}

impl ImportResults {
    /// A contender's results by name.
    pub fn get(&self, name: &str) -> Option<&ContenderResult> {
        self.contenders.iter().find(|c| c.name == name)
    }

    /// Write `import.json` into `dir` (created if needed); returns its path.
    pub fn write_json(&self, dir: &Path) -> Result<PathBuf> {
        super::write_json_into(self, dir, "import.json")
    }
}
