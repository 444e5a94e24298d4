//! Safe access to files inside an untrusted root filesystem.
//!
//! An image is hostile input: `/etc/passwd` may be a symlink to
//! `/../../etc/shadow`, a FIFO, or huge. Every lookup here goes through
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so `..` and absolute
//! symlinks resolve inside the root, as they would inside the container.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// An opened root directory.
#[derive(Debug)]
pub struct SafeRoot {
    fd: OwnedFd,
}

/// `p` as a C string (a NUL byte inside is `InvalidInput`).
pub fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// `openat2(dirfd, path, {flags, mode, resolve})`: the one place skiff
/// makes this system call.
pub fn openat2(
    dirfd: RawFd,
    path: &CStr,
    flags: libc::c_int,
    mode: u64,
    resolve: u64,
) -> io::Result<OwnedFd> {
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.mode = mode;
    how.resolve = resolve;
    // With RESOLVE_IN_ROOT or RESOLVE_BENEATH the kernel returns EAGAIN when
    // a rename or a mount anywhere on the host raced with a `..` step, and
    // asks the caller to retry (openat2(2)). Busy hosts mount all the time.
    let mut attempts = 0;
    loop {
        // SAFETY: the pointers are valid for the duration of the call, and
        // the size is that of the struct passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel returned a new descriptor that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) });
        }
        let err = io::Error::last_os_error();
        attempts += 1;
        if err.raw_os_error() != Some(libc::EAGAIN) || attempts >= OPENAT2_RETRIES {
            return Err(err);
        }
    }
}

/// How many times [`openat2`] tries when the kernel reports a racing
/// rename or mount (EAGAIN) before it gives up.
const OPENAT2_RETRIES: u32 = 128;

impl SafeRoot {
    /// Open `dir` as a root.
    pub fn open(dir: &Path) -> io::Result<SafeRoot> {
        let c = cstr(dir)?;
        // SAFETY: `c` is a valid NUL-terminated string; the result is checked.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a freshly opened descriptor that nothing else owns.
        Ok(SafeRoot {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Open `path` (absolute or relative, resolved inside the root).
    pub fn open_in(&self, path: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
        let rel = path.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        let c = CString::new(rel).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        openat2(
            self.fd.as_raw_fd(),
            &c,
            flags | libc::O_CLOEXEC,
            0,
            libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
        )
    }

    /// Read a small regular file, or `None` when it does not exist. FIFOs,
    /// devices and directories are refused; at most `max` bytes are read.
    pub fn read_small(&self, path: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
        let fd = match self.open_in(path, libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let file = File::from(fd);
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{path} is not a regular file"),
            ));
        }
        let mut buf = Vec::new();
        file.take(max).read_to_end(&mut buf)?;
        Ok(Some(buf))
    }

    /// Create `path` and its missing parents (mode 0755, owned by the caller),
    /// resolving each step inside the root.
    pub fn mkdir_all(&self, path: &str) -> io::Result<()> {
        let comps: Vec<&str> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let mut cur = self.open_in("/", libc::O_PATH | libc::O_DIRECTORY)?;
        let mut prefix = String::new();
        for comp in comps {
            prefix.push('/');
            prefix.push_str(comp);
            match self.open_in(&prefix, libc::O_PATH | libc::O_DIRECTORY) {
                Ok(fd) => cur = fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound && comp != ".." => {
                    let c = CString::new(comp)
                        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
                    // SAFETY: `cur` is an open directory fd and `c` a single
                    // path component; mkdirat does not follow a final symlink.
                    let r = unsafe { libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), 0o755) };
                    if r < 0 {
                        let e = io::Error::last_os_error();
                        if e.raw_os_error() != Some(libc::EEXIST) {
                            return Err(e);
                        }
                    }
                    cur = self.open_in(&prefix, libc::O_PATH | libc::O_DIRECTORY)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The path, inside the root, that `path` resolves to (every symlink
    /// followed inside the root), e.g. `/data` for a `/wd -> data` symlink.
    pub fn resolve(&self, path: &str) -> io::Result<String> {
        let fd = self.open_in(path, libc::O_PATH)?;
        let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        let root = std::fs::read_link(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))?;
        let rel = target
            .strip_prefix(&root)
            .map_err(|_| io::Error::other("resolved outside the root"))?;
        Ok(format!("/{}", rel.to_string_lossy()))
    }

    /// Whether `path` exists inside the root (symlinks followed inside it).
    pub fn exists(&self, path: &str) -> bool {
        self.open_in(path, libc::O_PATH).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renames anywhere on the host make a scoped `..` step fail with EAGAIN
    /// now and then; [`openat2`] retries, so resolution still succeeds.
    #[test]
    fn test_openat2_survives_racing_renames() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("root/a/b")).expect("mkdir");
        let root = std::fs::File::open(dir.path().join("root")).expect("open root");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let renamer = {
            let (x, y) = (dir.path().join("x"), dir.path().join("y"));
            std::fs::write(&x, "").expect("write");
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::fs::rename(&x, &y).expect("rename");
                    std::fs::rename(&y, &x).expect("rename");
                }
            })
        };
        let path = c"a/../a/b/../../a/b/..";
        let resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        let failures: Vec<io::Error> = (0..50_000)
            .filter_map(|_| {
                openat2(
                    root.as_raw_fd(),
                    path,
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                    0,
                    resolve,
                )
                .err()
            })
            .collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        renamer.join().expect("renamer");
        assert!(
            failures.is_empty(),
            "{} of 50000 lookups failed, first: {}",
            failures.len(),
            failures[0]
        );
    }

    #[test]
    fn test_safe_root_symlink_stays_inside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("secret"), "host").expect("write");
        std::fs::create_dir(dir.path().join("etc")).expect("mkdir");
        let target = format!("../../../../..{}", outside.path().join("secret").display());
        std::os::unix::fs::symlink(&target, dir.path().join("etc/passwd")).expect("symlink");
        let root = SafeRoot::open(dir.path()).expect("open");
        // Resolved inside the root, the target does not exist.
        assert_eq!(root.read_small("/etc/passwd", 1024).expect("read"), None);
        std::os::unix::fs::symlink("/proc/self/root/etc/hostname", dir.path().join("etc/group"))
            .expect("symlink");
        assert_eq!(root.read_small("/etc/group", 1024).expect("read"), None);
    }

    #[test]
    fn test_safe_root_refuses_fifo() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = CString::new(dir.path().join("fifo").as_os_str().as_bytes()).expect("c");
        // SAFETY: valid C string.
        assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o644) }, 0);
        let root = SafeRoot::open(dir.path()).expect("open");
        assert!(root.read_small("/fifo", 1024).is_err());
    }

    #[test]
    fn test_safe_root_mkdir_all_through_symlink_stays_inside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("escape")).expect("symlink");
        let root = SafeRoot::open(dir.path()).expect("open");
        // A symlink dangling inside the root is refused rather than followed out.
        assert!(root.mkdir_all("/escape/a/b").is_err());
        assert!(!outside.path().join("a").exists());
        // Once its target exists inside the root, it resolves there.
        let inside = dir
            .path()
            .join(outside.path().strip_prefix("/").expect("abs"));
        std::fs::create_dir_all(&inside).expect("mkdir");
        root.mkdir_all("/escape/a/b").expect("mkdir");
        assert!(!outside.path().join("a").exists());
        assert!(inside.join("a/b").is_dir());
    }
}
