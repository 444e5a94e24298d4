//! The results of each benchmark: plain serializable data, written as
//! JSON and read back by tests and tools.
//!
//! The measurement modules (`import`, `image`, `launch`, `soak`) produce
//! these; the report and plot modules (`report`, `plot`) consume them.
//! Neither side imports the other, and nothing here imports either:
//!
//! ```text
//! import, image, launch, soak ──► results ◄── report, plot
//! ```
//!
//! - [`import`]: `import.json` ([`import::ImportResults`]);
//! - [`image`]: the benchmark image it was measured on;
//! - [`launch`]: `launch.json` ([`launch::LaunchResults`]);
//! - [`soak`]: the soak's samples and verdict ([`soak::SoakResults`]).

pub mod image;
pub mod import;
pub mod launch;
pub mod soak;

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// A contender that did not run, or stopped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Skipped {
    /// Contender name.
    pub name: String,
    /// Why.
    pub reason: String,
}

/// Write `value` as pretty JSON to `dir/name` (`dir` created if needed),
/// through a temporary file renamed into place; returns its path.
pub(crate) fn write_json_into(value: &impl Serialize, dir: &Path, name: &str) -> Result<PathBuf> {
    fs::create_dir_all(dir).ctx("create", dir)?;
    let path = dir.join(name);
    let data = serde_json::to_vec_pretty(value).map_err(|source| Error::Json {
        what: path.display().to_string(),
        source,
    })?;
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, data).ctx("write", &tmp)?;
    fs::rename(&tmp, &path).ctx("rename into place", &path)?;
    Ok(path)
}
