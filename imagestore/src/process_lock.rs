//! Exclusive locks that prove a *process* is alive: POSIX record locks
//! (`fcntl(F_SETLK)`) on a whole file.
//!
//! A job's launcher proves it is alive by holding a lock on its job's state
//! and on its image lease. With `flock`, the lock belongs to the open file
//! description, so every process that inherits the descriptor holds it too:
//! a job's init (a clone of the launcher, blocked before `execve`) kept a
//! killed launcher's locks alive forever, and `gc` believed the launcher
//! alive. A POSIX record lock belongs to the process that took it: clones
//! and children never hold it, and it goes when that process dies.
//!
//! The catch: a process loses its POSIX lock when it closes *any*
//! descriptor of the file. So this process never opens a file it holds a
//! lock on: [`holder`] answers from a registry of the locks held here.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Mutex;

/// (device, inode) of the files this process holds a lock on.
static HELD: Mutex<Option<HashSet<(u64, u64)>>> = Mutex::new(None);

fn with_held<T>(f: impl FnOnce(&mut HashSet<(u64, u64)>) -> T) -> T {
    let mut g = HELD.lock().unwrap_or_else(|p| p.into_inner());
    f(g.get_or_insert_with(HashSet::new))
}

fn whole_file(kind: libc::c_short) -> libc::flock {
    // SAFETY: flock is plain data; zeroed is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0;
    fl
}

/// An exclusive lock held by this process on a file, released when dropped
/// (or when the process dies; never held by its children).
#[derive(Debug)]
pub struct ProcessLock {
    file: File,
    key: (u64, u64),
}

impl ProcessLock {
    /// Take the lock on `file` without waiting: `Ok(None)` when another
    /// process holds it. `file` must be open for writing.
    pub fn try_acquire(file: File) -> io::Result<Option<ProcessLock>> {
        Self::try_lock(file, libc::F_WRLCK)
    }

    /// Take a shared lock on `file` without waiting: many processes may
    /// hold one at once; `Ok(None)` when another holds it exclusively.
    pub fn try_acquire_shared(file: File) -> io::Result<Option<ProcessLock>> {
        Self::try_lock(file, libc::F_RDLCK)
    }

    /// Take a shared lock on `file`, waiting while another process holds
    /// it exclusively.
    pub fn acquire_shared(file: File) -> io::Result<ProcessLock> {
        let meta = file.metadata()?;
        let key = (meta.dev(), meta.ino());
        let fl = whole_file(libc::F_RDLCK as libc::c_short);
        loop {
            // SAFETY: fcntl(F_SETLKW) with a valid descriptor and flock struct.
            if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLKW, &fl) } == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        with_held(|h| h.insert(key));
        Ok(ProcessLock { file, key })
    }

    fn try_lock(file: File, kind: libc::c_int) -> io::Result<Option<ProcessLock>> {
        let meta = file.metadata()?;
        let key = (meta.dev(), meta.ino());
        if with_held(|h| h.contains(&key)) {
            return Ok(None);
        }
        let fl = whole_file(kind as libc::c_short);
        // SAFETY: fcntl(F_SETLK) with a valid descriptor and flock struct.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) } != 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(None),
                _ => Err(e),
            };
        }
        with_held(|h| h.insert(key));
        Ok(Some(ProcessLock { file, key }))
    }

    /// The locked file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Drop for ProcessLock {
    fn drop(&mut self) {
        with_held(|h| h.remove(&self.key));
        // Closing the file releases the lock.
    }
}

/// Who holds the lock on `path`: `Ok(Some(pid))` (this process's own pid
/// for its own locks), `Ok(None)` when nobody does. A missing file is
/// `NotFound`. Never disturbs a lock this process holds.
pub fn holder(path: &Path) -> io::Result<Option<i32>> {
    let meta = std::fs::symlink_metadata(path)?;
    if with_held(|h| h.contains(&(meta.dev(), meta.ino()))) {
        return Ok(Some(std::process::id() as i32));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let mut fl = whole_file(libc::F_WRLCK as libc::c_short);
    // SAFETY: fcntl(F_GETLK) with a valid descriptor and flock struct.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut fl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fl.l_type != libc::F_UNLCK as libc::c_short).then_some(fl.l_pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_process_lock_is_exclusive_and_seen_by_holder() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("l");
        let f = File::create(&p).expect("create");
        let lock = ProcessLock::try_acquire(f).expect("lock").expect("free");
        assert_eq!(holder(&p).expect("holder"), Some(std::process::id() as i32));
        let again = File::options().write(true).open(&p).expect("open");
        assert!(ProcessLock::try_acquire(again).expect("try").is_none());
        // Asking did not release it.
        assert_eq!(holder(&p).expect("holder"), Some(std::process::id() as i32));
        drop(lock);
        assert_eq!(holder(&p).expect("holder"), None);
    }

    #[test]
    fn test_process_lock_is_not_held_by_a_child() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("l");
        let lock = ProcessLock::try_acquire(File::create(&p).expect("create"))
            .expect("lock")
            .expect("free");
        // A child inherits the descriptor (it is not CLOEXEC here) but not
        // the lock: once the parent drops it, the child's copy holds nothing.
        let fd = lock.file().as_raw_fd();
        // SAFETY: clear FD_CLOEXEC on our own descriptor.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn");
        drop(lock);
        let held = holder(&p).expect("holder");
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(held, None, "a child that inherited the fd holds the lock");
    }
}
