//! Per-job state on disk: `ROOT/run/<job>/`.
//!
//! ```text
//! ROOT/run/<job>/
//!   lock        POSIX lock held by the launcher for the job's whole life
//!               (never by the job: see imagestore::process_lock)
//!   job.json    JobRecord: who launched it, the init pid, the cgroup
//!   scratch/    tmpfs (private to the launcher's mount namespace) or disk:
//!               upper/ work/ rootfs/ etc/ bundle/ state/
//! ```
//!
//! `gc` asks who holds the lock: nobody means the launcher is dead and the
//! job is an orphan (see [`crate::gc`]).

use std::fs::{self, OpenOptions};

use imagestore::process_lock::{self, ProcessLock};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// What `gc` needs to clean up after a job whose launcher died.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobRecord {
    /// Job name.
    pub name: String,
    /// Pid of the launcher.
    pub launcher_pid: i32,
    /// The job's init pid (host view), once created.
    pub init_pid: Option<i32>,
    /// The init's start time (field 22 of /proc/PID/stat), to avoid killing a reused pid.
    pub init_start_time: Option<u64>,
    /// `linux.cgroupsPath` of the job.
    pub cgroup_path: PathBuf,
}

/// A job's state directory, locked by this process.
#[derive(Debug)]
pub struct JobDir {
    path: PathBuf,
    _lock: ProcessLock,
}

/// Valid job names: `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidOption {
            what: "name",
            value: name.to_string(),
            detail: "use 1 to 64 of [A-Za-z0-9_.-], starting with a letter or digit".into(),
        })
    }
}

/// The private names a job directory has while it is made and while it is
/// removed, `.new-PID-STARTTIME-NAME` and `.gone-PID-STARTTIME-NAME` (job
/// names start with a letter or digit): `gc` can tell whether the process
/// that owns it is alive, however early or late that process was killed.
fn private_dir_name(prefix: &str, name: &str) -> String {
    let (pid, start) = own_pid_and_start();
    format!("{prefix}{pid}-{start}-{name}")
}

/// This process's pid and start time, read from `/proc` once per process
/// (twice per job otherwise: a directory made and one removed).
fn own_pid_and_start() -> (i32, u64) {
    static OWN: std::sync::OnceLock<(i32, u64)> = std::sync::OnceLock::new();
    let pid = std::process::id() as i32;
    match OWN.get() {
        Some(&(p, start)) if p == pid => (p, start),
        // Set by a parent before a fork: read it again.
        Some(_) => (pid, process_start_time(pid).unwrap_or(0)),
        None => *OWN.get_or_init(|| (pid, process_start_time(pid).unwrap_or(0))),
    }
}

fn new_dir_name(name: &str) -> String {
    private_dir_name(".new-", name)
}

/// This launcher's directory of volume pins under the run root,
/// `.pins-PID-STARTTIME-launcher`: a mount point in the launcher's private
/// namespace only, so `gc` removes it once that launcher is dead, and never
/// before (removing it would detach the pins of jobs still running).
pub fn pins_dir_name() -> String {
    private_dir_name(".pins-", "launcher")
}

/// Whether the process making or removing a `.new-*` or `.gone-*` job
/// directory, or owning a `.pins-*` directory, is alive (`None`: the name
/// is not one of those).
pub fn private_dir_owner_alive(dir_name: &str) -> Option<bool> {
    let rest = dir_name
        .strip_prefix(".new-")
        .or_else(|| dir_name.strip_prefix(".gone-"))
        .or_else(|| dir_name.strip_prefix(".pins-"))?;
    let mut it = rest.splitn(3, '-');
    let pid: i32 = it.next()?.parse().ok()?;
    let start: u64 = it.next()?.parse().ok()?;
    it.next()?;
    Some(process_start_time(pid) == Some(start))
}

/// A random 12-hex-digit job id.
pub fn random_id() -> String {
    let mut buf = [0u8; 6];
    // SAFETY: the buffer is valid for its length.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mixed = t ^ ((std::process::id() as u128) << 40);
        buf.copy_from_slice(&mixed.to_le_bytes()[..6]);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

impl JobDir {
    /// Create and lock `run_root/<name>`. Fails if a job of that name exists.
    pub fn create(run_root: &Path, name: &str) -> Result<JobDir> {
        validate_name(name)?;
        fs::create_dir_all(run_root).ctx("create", run_root)?;
        let path = run_root.join(name);
        // The directory is made, with its lock file locked, under a private
        // name (`.new-*`: job names start with a letter or digit), then
        // renamed into place: `run/<name>` never exists without a held lock,
        // so `gc` cannot take a starting job for an orphan, however early
        // its launcher is killed.
        let tmp = run_root.join(new_dir_name(name));
        fs::create_dir(&tmp).ctx("create", &tmp)?;
        let lock_path = tmp.join("lock");
        let locked = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&lock_path)
            .ctx("create", &lock_path)
            .and_then(|f| ProcessLock::try_acquire(f).ctx("lock", &lock_path))
            .and_then(|l| {
                l.ok_or_else(|| {
                    Error::io("lock", &lock_path, std::io::ErrorKind::WouldBlock.into())
                })
            });
        let lock = match locked {
            Ok(l) => l,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_dir_all(&tmp);
            if matches!(e.raw_os_error(), Some(libc::EEXIST) | Some(libc::ENOTEMPTY)) {
                let by = match process_lock::holder(&path.join("lock")) {
                    Ok(Some(pid)) => format!("a running job (launcher pid {pid})"),
                    _ => "a job that is ending or was killed (`skiff gc` cleans up)".to_string(),
                };
                return Err(Error::NameInUse {
                    name: name.to_string(),
                    by,
                });
            }
            return Err(Error::io("rename", &path, e));
        }
        Ok(JobDir { path, _lock: lock })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The scratch directory (a mount point when on tmpfs).
    pub fn scratch(&self) -> PathBuf {
        self.path.join("scratch")
    }

    /// Write the job record (atomically).
    pub fn write_record(&self, rec: &JobRecord) -> Result<()> {
        let p = self.path.join("job.json");
        let tmp = self.path.join(".job.json.tmp");
        let data = serde_json::to_vec(rec).map_err(|e| Error::CorruptState {
            path: p.clone(),
            detail: e.to_string(),
        })?;
        fs::write(&tmp, data).ctx("write", &tmp)?;
        fs::rename(&tmp, &p).ctx("rename", &p)
    }

    /// Remove the directory; the lock goes when this value is dropped.
    ///
    /// The directory is first renamed, lock held, to a private `.gone-*`
    /// name: removing it deletes the lock file before the directory, and a
    /// removal cut short there must not leave `run/<name>` without a lock
    /// (which `gc` could take only after its grace period).
    pub fn remove_in_place(&self) -> Result<()> {
        let name = self.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let gone = self.path.with_file_name(private_dir_name(".gone-", name));
        let path = match fs::rename(&self.path, &gone) {
            Ok(()) => &gone,
            Err(_) => &self.path,
        };
        fs::remove_dir_all(path).ctx("remove", path)
    }

    /// Remove the directory (the lock goes with it).
    pub fn remove(self) -> Result<()> {
        self.remove_in_place()
    }
}

/// Read a job record.
pub fn read_record(dir: &Path) -> Result<Option<JobRecord>> {
    let p = dir.join("job.json");
    match fs::read(&p) {
        Ok(d) => serde_json::from_slice(&d)
            .map(Some)
            .map_err(|e| Error::CorruptState {
                path: p,
                detail: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", &p, e)),
    }
}

/// Start time of a process (clock ticks since boot), for pid-reuse checks.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and ')'; fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    // A zombie (or one being reaped) is dead: it holds no lock and no fd.
    if matches!(rest.split(' ').next(), Some("Z" | "X")) {
        return None;
    }
    rest.split(' ').nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_validate_name() {
        assert!(validate_name("job-1.a_b").is_ok());
        assert!(validate_name("../x").is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name(".hidden").is_err());
    }

    #[test]
    fn test_job_dir_lock_is_exclusive() {
        let dir = tempfile::tempdir().expect("tmp");
        let j = JobDir::create(dir.path(), "a").expect("create");
        let again = JobDir::create(dir.path(), "a").expect_err("second job of that name");
        assert!(again.to_string().contains("already in use"), "{again}");
        assert_eq!(
            process_lock::holder(&j.path().join("lock")).expect("holder"),
            Some(std::process::id() as i32)
        );
        j.remove().expect("remove");
        assert!(!dir.path().join("a").exists());
    }

    #[test]
    fn test_private_dir_owner_alive() {
        assert_eq!(private_dir_owner_alive(&new_dir_name("a-b.c")), Some(true));
        let gone = private_dir_name(".gone-", "a-b.c");
        assert_eq!(private_dir_owner_alive(&gone), Some(true));
        assert_eq!(private_dir_owner_alive(".new-999999999-1-x"), Some(false));
        assert_eq!(private_dir_owner_alive(".gone-999999999-1-x"), Some(false));
        assert_eq!(private_dir_owner_alive(&pins_dir_name()), Some(true));
        assert_eq!(
            private_dir_owner_alive(".pins-999999999-1-launcher"),
            Some(false)
        );
        assert_eq!(private_dir_owner_alive(".new-junk"), None);
        assert_eq!(private_dir_owner_alive("job"), None);
    }

    #[test]
    fn test_process_start_time_self() {
        assert!(process_start_time(std::process::id() as i32).is_some());
    }
}
