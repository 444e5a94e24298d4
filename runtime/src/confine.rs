//! The job's init, just before `execve`: drop every descriptor the launcher
//! left open, tie the job's life to its launcher, and enter the working
//! directory safely.
//!
//! This closes the class of runc's CVE-2024-21626. libcontainer `chdir`s to
//! `process.cwd` while descriptors of the launcher (directories of the host,
//! such as the scratch tree) are still open in the init, so a working
//! directory of `/proc/self/fd/N` lands outside the job's root. skiff's
//! executor therefore, in this order:
//!
//! 1. closes every descriptor above stderr ([`close_inherited_fds`]);
//! 2. asks for SIGKILL when the launcher dies, and checks it is still there
//!    ([`die_with_launcher`]);
//! 3. resolves the working directory again, as the job's user, with
//!    `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` from `/`, and
//!    `fchdir`s to it ([`enter_workdir`]);
//! 4. checks that the resulting cwd is inside the root by walking `..` up
//!    to the root, comparing mount ids and inode numbers
//!    ([`cwd_is_inside_root`]): `getcwd` cannot tell, it reports `/` for a
//!    directory of another mount namespace.
//!
//! All of it runs in the init after `pivot_root`, so `/` is the job's root.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::safe_root::SafeRoot;

/// Close every descriptor above 2 (stdin, stdout, stderr stay).
pub fn close_inherited_fds() -> io::Result<()> {
    // SAFETY: close_range(2) on a range of descriptors; nothing in this
    // process uses them past this point (the init is about to exec).
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if r == 0 {
        return Ok(());
    }
    // Kernels before 5.9: close them one by one.
    for fd in 3..fd_limit() {
        // SAFETY: closing an fd number; EBADF for unused ones is harmless.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// Mark every descriptor above 2 close-on-exec (in the launcher, so that
/// no exec'd child, such as a runtime binary, inherits one by accident).
pub fn mark_inherited_fds_cloexec() {
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets a flag.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r != 0 {
        for fd in 3..fd_limit() {
            // SAFETY: F_SETFD on an fd number; EBADF for unused ones is harmless.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}

fn fd_limit() -> RawFd {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
    if n <= 0 {
        1024
    } else {
        n.min(1 << 20) as RawFd
    }
}

/// Have the kernel SIGKILL this process when its parent (the launcher)
/// dies, then make sure the launcher did not die before that was set: the
/// job's stdout is a pipe whose only reader is the launcher, so a pipe with
/// no reader left means the launcher is gone.
pub fn die_with_launcher() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut pfd = libc::pollfd {
        fd: 1,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    if n == 1 && pfd.revents & libc::POLLERR != 0 && is_pipe(1) {
        return Err(io::Error::other(
            "the launcher exited before the job started",
        ));
    }
    Ok(())
}

fn is_pipe(fd: RawFd) -> bool {
    // SAFETY: fstat into a zeroed stat buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the buffer is valid for writes.
    unsafe { libc::fstat(fd, &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFIFO }
}

/// Why the working directory was refused.
#[derive(Debug)]
pub enum WorkdirError {
    /// It could not be resolved inside the root (missing, a magic link, …).
    Resolve(io::Error),
    /// The resolved directory could not be entered.
    Enter(io::Error),
    /// The cwd is outside the job's root, or could not be proven inside.
    Outside,
}

impl std::fmt::Display for WorkdirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkdirError::Resolve(e) => write!(f, "cannot resolve it inside the container: {e}"),
            WorkdirError::Enter(e) => write!(f, "cannot enter it: {e}"),
            WorkdirError::Outside => write!(f, "it is outside the container's root"),
        }
    }
}

/// Resolve `cwd` inside the root `/`, enter it and check the result.
pub fn enter_workdir(cwd: &str) -> Result<(), WorkdirError> {
    let root = SafeRoot::open(std::path::Path::new("/")).map_err(WorkdirError::Resolve)?;
    let dir = root
        .open_in(cwd, libc::O_PATH | libc::O_DIRECTORY)
        .map_err(WorkdirError::Resolve)?;
    // SAFETY: fchdir on a descriptor we own.
    if unsafe { libc::fchdir(dir.as_raw_fd()) } != 0 {
        return Err(WorkdirError::Enter(io::Error::last_os_error()));
    }
    match cwd_is_inside_root() {
        Ok(true) => Ok(()),
        _ => Err(WorkdirError::Outside),
    }
}

/// Identity of a directory: its mount and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DirId {
    mnt_id: u64,
    dev: (u32, u32),
    ino: u64,
}

fn dir_id(fd: RawFd) -> io::Result<DirId> {
    // SAFETY: statx is plain data; zeroed is valid.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let empty = c"";
    // SAFETY: valid fd, NUL-terminated empty path with AT_EMPTY_PATH, and a
    // writable statx buffer.
    let r = unsafe {
        libc::statx(
            fd,
            empty.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_INO | libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if stx.stx_mask & libc::STATX_MNT_ID == 0 {
        return Err(io::Error::other("the kernel reports no mount ids"));
    }
    Ok(DirId {
        mnt_id: stx.stx_mnt_id,
        dev: (stx.stx_dev_major, stx.stx_dev_minor),
        ino: stx.stx_ino,
    })
}

fn open_path(dirfd: RawFd, name: &std::ffi::CStr) -> io::Result<OwnedFd> {
    // SAFETY: valid dirfd and NUL-terminated name; the result is checked.
    let fd = unsafe {
        libc::openat(
            dirfd,
            name.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether the current directory is `/` or below it: walk `..` from the
/// cwd until the root (same mount, same inode) is met. Reaching a directory
/// that is its own parent first means the cwd hangs off another tree, such
/// as the launcher's mounts.
pub fn cwd_is_inside_root() -> io::Result<bool> {
    let root_fd = open_path(
        libc::AT_FDCWD,
        &CString::new("/").map_err(io::Error::other)?,
    )?;
    let root = dir_id(root_fd.as_raw_fd())?;
    let mut cur = open_path(libc::AT_FDCWD, c".")?;
    let mut id = dir_id(cur.as_raw_fd())?;
    for _ in 0..4096 {
        if id == root {
            return Ok(true);
        }
        let parent = open_path(cur.as_raw_fd(), c"..")?;
        let pid = dir_id(parent.as_raw_fd())?;
        if pid == id {
            return Ok(false);
        }
        cur = parent;
        id = pid;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cwd_is_inside_root_from_a_subdirectory() {
        // In a test process the root is the host's `/`: any cwd is inside.
        assert!(cwd_is_inside_root().expect("walk"));
    }

    #[test]
    fn test_dir_id_differs_between_directories() {
        let a = open_path(libc::AT_FDCWD, c"/").expect("open /");
        let b = open_path(libc::AT_FDCWD, c"/proc").expect("open /proc");
        let ia = dir_id(a.as_raw_fd()).expect("id /");
        let ib = dir_id(b.as_raw_fd()).expect("id /proc");
        assert_ne!(ia, ib);
        assert_ne!(ia.mnt_id, ib.mnt_id, "/proc is its own mount");
    }
}
