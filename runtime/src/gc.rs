//! Cleaning up after launchers that died (SIGKILL, OOM, power loss).
//!
//! A job's launcher holds a POSIX lock on `ROOT/run/<job>/lock` for the
//! job's whole life; the job's own processes never hold it, even when they
//! inherit the descriptor. If nobody holds it, the launcher is gone: `gc`
//! kills what is left of the job (its cgroup, and container processes
//! killed during create before they joined it), removes the cgroup and the
//! state directory. A directory that vanishes meanwhile (its job ended by
//! itself) is not an error and not reported.
//! Mounts need no work: they lived in the dead launcher's private mount
//! namespace (and in the job's own, which dies with the job).
//! Finally, job cgroups with no state directory (a crash between the two)
//! are removed too.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use imagestore::process_lock::{self, ProcessLock};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cgroups::CgroupDriver;
use crate::error::{IoContext, Result};
use crate::state::{private_dir_owner_alive, process_start_time, read_record};

/// What a collection found and removed.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct GcReport {
    /// Orphaned jobs whose state was removed.
    pub jobs: Vec<String>,
    /// Processes killed.
    pub killed: usize,
    /// Job cgroups removed that had no state directory.
    pub stray_cgroups: Vec<String>,
    /// Image leases of dead jobs removed (`skiff gc` only).
    pub stale_leases: usize,
    /// Empty group cgroups of the store removed, in every hierarchy
    /// (`skiff gc` only).
    pub group_cgroups: usize,
    /// A launcher of the store was alive, so its group cgroups were left
    /// alone (`skiff gc` only).
    pub launchers_alive: bool,
}

/// A state directory without a lock file younger than this is being created.
const GRACE: Duration = Duration::from_secs(30);

/// Remove a dead launcher's pin directory without recursing: its entries
/// are empty mount points, and one still mounted (its volume's data) makes
/// `rmdir`/`unlink` fail instead of being emptied.
fn remove_pins(dir: &Path) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let _ = fs::remove_dir(&p).or_else(|_| fs::remove_file(&p));
    }
    let _ = fs::remove_dir(dir);
}

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
        if name.starts_with('.') {
            // A job directory being made (nothing was launched from it yet)
            // or removed (its job was cleaned up). Its name says who owns
            // it; an unparsable one goes after GRACE.
            let stale = match private_dir_owner_alive(&name) {
                Some(alive) => !alive,
                None => older_than_grace(&dir),
            };
            if stale && name.starts_with(".pins-") {
                remove_pins(&dir);
            } else if stale {
                let _ = fs::remove_dir_all(&dir);
            }
            continue;
        }
        let lock_path = dir.join("lock");
        match process_lock::holder(&lock_path) {
            Ok(Some(_)) => continue, // its launcher is alive
            Ok(None) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // No lock yet (being created) or any more (being removed by
                // its launcher): only an old directory is an orphan.
                if older_than_grace(&dir) && clean(&dir, &name, cgroups, &mut report)? {
                    report.jobs.push(name);
                }
                continue;
            }
            Err(e) => {
                tracing::debug!(job = %name, error = %e, "cannot check the job's lock");
                continue;
            }
        }
        // Take the lock: a concurrent gc then leaves this job to us.
        let Ok(file) = OpenOptions::new().write(true).open(&lock_path) else {
            continue; // removed meanwhile: the job ended by itself
        };
        let Ok(Some(lock)) = ProcessLock::try_acquire(file) else {
            continue;
        };
        if lock
            .file()
            .metadata()
            .map(|m| m.nlink() == 0)
            .unwrap_or(true)
        {
            continue; // its launcher removed it after we looked
        }
        tracing::info!(job = %name, "cleaning up an orphaned job");
        if let Ok(Some(rec)) = read_record(&dir) {
            if let (Some(pid), Some(start)) = (rec.init_pid, rec.init_start_time) {
                if process_start_time(pid) == Some(start) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    report.killed += 1;
                }
            }
        }
        if clean(&dir, &name, cgroups, &mut report)? {
            report.jobs.push(name);
        }
        drop(lock);
    }
    for name in cgroups.list_jobs()? {
        if !run_root.join(&name).exists() {
            cgroups.remove(&name)?;
            report.stray_cgroups.push(name);
        }
    }
    Ok(report)
}

fn older_than_grace(dir: &Path) -> bool {
    fs::symlink_metadata(dir)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age >= GRACE)
}

/// Kill what is left of a job whose launcher died, remove its cgroup and
/// its directory. `false` when the directory vanished meanwhile.
fn clean(
    dir: &Path,
    name: &str,
    cgroups: &dyn CgroupDriver,
    report: &mut GcReport,
) -> Result<bool> {
    // A launcher killed during create leaves container processes that have
    // not joined the job's cgroup yet, holding descriptors of the job's
    // directory (inherited before their execve).
    let strays = container_processes_holding(dir);
    for pid in &strays {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    report.killed += strays.len();
    wait_gone(&strays);
    report.killed += cgroups.pids(name).map(|p| p.len()).unwrap_or(0);
    cgroups.remove(name)?;
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).ctx("remove", dir),
    }
}

/// Processes of a container runtime (libcontainer's or runc's intermediate
/// and init, named `youki:[…]` or `runc:[…]`, or in another pid namespace
/// than ours) with a descriptor open on a file under `dir`.
fn container_processes_holding(dir: &Path) -> Vec<i32> {
    let own_ns = fs::read_link("/proc/self/ns/pid").ok();
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t.starts_with(dir)));
        if !holds {
            continue;
        }
        let comm = fs::read_to_string(p.path().join("comm")).unwrap_or_default();
        let other_ns = fs::read_link(p.path().join("ns/pid")).ok() != own_ns;
        if comm.starts_with("youki:[") || comm.starts_with("runc:[") || other_ns {
            out.push(pid);
        }
    }
    out
}

/// Wait (at most a second) for killed processes to be gone.
fn wait_gone(pids: &[i32]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < deadline
        && pids
            .iter()
            .any(|p| kill(Pid::from_raw(*p), None).is_ok() && !is_zombie(*p))
    {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .unwrap_or(true)
}
