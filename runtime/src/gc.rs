//! Cleaning up after launchers that died (SIGKILL, OOM, power loss).
//!
//! A job's launcher holds the flock on `ROOT/run/<job>/lock` for the job's
//! whole life. If `gc` can take it, the launcher is gone: `gc` kills what is
//! left in the job's cgroup, removes the cgroup and the state directory.
//! Mounts need no work: they lived in the dead launcher's private mount
//! namespace (and in the job's own, which dies with the job).
//! Finally, job cgroups with no state directory (a crash between the two)
//! are removed too.

use std::fs::{self, File};
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::cgroups::CgroupDriver;
use crate::error::{IoContext, Result};
use crate::state::{process_start_time, read_record, try_lock};

/// What a collection found and removed.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct GcReport {
    /// Orphaned jobs whose state was removed.
    pub jobs: Vec<String>,
    /// Processes killed.
    pub killed: usize,
    /// Job cgroups removed that had no state directory.
    pub stray_cgroups: Vec<String>,
}

/// A state directory without a lock file younger than this is being created.
const GRACE: Duration = Duration::from_secs(30);

/// Collect orphans under `run_root`.
pub fn collect(run_root: &Path, cgroups: &dyn CgroupDriver) -> Result<GcReport> {
    let mut report = GcReport::default();
    let entries = match fs::read_dir(run_root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(e).ctx("list", run_root),
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !dir.is_dir() {
            continue;
        }
        let lock = match File::open(dir.join("lock")) {
            Ok(f) => f,
            Err(_) => {
                let young = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_none_or(|age| age < GRACE);
                if young {
                    continue;
                }
                cgroups.remove(&name)?;
                fs::remove_dir_all(&dir).ctx("remove", &dir)?;
                report.jobs.push(name);
                continue;
            }
        };
        if !try_lock(&lock) {
            continue; // its launcher is alive
        }
        tracing::info!(job = %name, "cleaning up an orphaned job");
        if let Ok(Some(rec)) = read_record(&dir) {
            if let (Some(pid), Some(start)) = (rec.init_pid, rec.init_start_time) {
                if process_start_time(pid) == Some(start) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::SIGKILL,
                    );
                    report.killed += 1;
                }
            }
        }
        report.killed += cgroups.pids(&name).map(|p| p.len()).unwrap_or(0);
        cgroups.remove(&name)?;
        fs::remove_dir_all(&dir).ctx("remove", &dir)?;
        report.jobs.push(name);
    }
    for name in cgroups.list_jobs()? {
        if !run_root.join(&name).exists() {
            cgroups.remove(&name)?;
            report.stray_cgroups.push(name);
        }
    }
    Ok(report)
}
