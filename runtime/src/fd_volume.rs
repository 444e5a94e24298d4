//! Volumes handed to a launcher as open descriptors, not paths.
//!
//! A path names whatever is there when it is resolved; between a caller's
//! check and the mount, a symlink swapped into it moves the mount elsewhere.
//! A caller that has resolved a host directory safely (`skiff serve` opens
//! API volumes with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` beneath
//! the directories its operator allows) clones that very directory into a
//! detached mount ([`detach`], `open_tree(OPEN_TREE_CLONE)`) and sends the
//! descriptor with the request instead. The launcher attaches it
//! (`move_mount`) to a pin in a tmpfs of its own private mount namespace,
//! and the job's bind mount takes the pin's path, which nothing but the
//! launcher can change. Pins are unmounted after the job and vanish with
//! the launcher's namespace.
//!
//! A plain `O_PATH` descriptor would not do: the launcher's mounts are a
//! copy, and the kernel binds only from mounts of the caller's own
//! namespace (EINVAL); a detached mount belongs to none.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use crate::job::Volume;

/// One volume whose host side is the `fd`-th descriptor sent with the
/// request: `{"fd": 0, "target": "/data", "read_only": true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FdVolume {
    /// Index into the descriptors attached to the request.
    pub fd: usize,
    /// Absolute path inside the job.
    pub target: String,
    /// Mount read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// Why a descriptor volume could not be pinned.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The index names no descriptor sent with the request.
    #[error(
        "fd_volumes[{index}]: descriptor {fd} was not sent with the request ({sent} attached)"
    )]
    Missing {
        /// Position in `fd_volumes`.
        index: usize,
        /// The index given.
        fd: usize,
        /// How many descriptors came.
        sent: usize,
    },
    /// The target is not an absolute path other than `/`.
    #[error("fd_volumes[{index}]: target {target:?} must be absolute and not /")]
    Target {
        /// Position in `fd_volumes`.
        index: usize,
        /// The target given.
        target: String,
    },
    /// The descriptor is neither a directory nor a regular file.
    #[error("fd_volumes[{index}]: descriptor {fd} is not a directory or a regular file")]
    Kind {
        /// Position in `fd_volumes`.
        index: usize,
        /// The index given.
        fd: usize,
    },
    /// This process is not in a private mount namespace of its own, so a
    /// pin would be seen (and could be left) on the host.
    #[error("descriptor volumes need a launcher in its own private mount namespace")]
    NotPrivate,
    /// A system call on the pin failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The pin.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

/// The pins of one job; unmounted and removed on drop.
#[derive(Debug, Default)]
pub struct Pins {
    paths: Vec<PathBuf>,
}

impl Drop for Pins {
    fn drop(&mut self) {
        for p in self.paths.drain(..).rev() {
            let _ = umount2(&p, MntFlags::MNT_DETACH);
            let _ = fs::remove_dir(&p).or_else(|_| fs::remove_file(&p));
        }
    }
}

static NEXT_PIN: AtomicU64 = AtomicU64::new(0);

/// `open_tree(2)` flag: clone the tree into a detached mount.
const OPEN_TREE_CLONE: libc::c_uint = 1;
/// `move_mount(2)` flag: the source is the descriptor itself.
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

/// A detached copy of the mount tree at `fd` (an `O_PATH` descriptor of a
/// directory or file, submounts included), for [`FdVolume`]; needs
/// CAP_SYS_ADMIN.
pub fn detach(fd: &OwnedFd) -> std::io::Result<OwnedFd> {
    let flags = OPEN_TREE_CLONE
        | libc::O_CLOEXEC as libc::c_uint
        | (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint;
    // SAFETY: a valid descriptor, a NUL-terminated empty path, plain flags.
    let r = unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(r as libc::c_int) })
}

/// Attach the detached mount `fd` at `target`.
fn attach(fd: &OwnedFd, target: &Path) -> std::io::Result<()> {
    let to = crate::safe_root::cstr(target)?;
    // SAFETY: valid descriptors and NUL-terminated paths that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Bind each of `vols`' descriptors to a pin under `dir` (a directory made
/// a private tmpfs on first use) and return the pins with the volumes that
/// name them by path.
pub fn pin(
    dir: &Path,
    vols: &[FdVolume],
    fds: &[OwnedFd],
) -> Result<(Pins, Vec<Volume>), PinError> {
    let mut pins = Pins::default();
    let mut out = Vec::with_capacity(vols.len());
    if vols.is_empty() {
        return Ok((pins, out));
    }
    if !crate::readonly_exe::in_private_namespace() {
        return Err(PinError::NotPrivate);
    }
    ensure_tmpfs(dir)?;
    for (index, v) in vols.iter().enumerate() {
        if !v.target.starts_with('/') || v.target == "/" {
            return Err(PinError::Target {
                index,
                target: v.target.clone(),
            });
        }
        let fd = fds.get(v.fd).ok_or(PinError::Missing {
            index,
            fd: v.fd,
            sent: fds.len(),
        })?;
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| PinError::Io {
            what: "stat the descriptor for",
            path: dir.to_path_buf(),
            source: e.into(),
        })?;
        let kind = st.st_mode & libc::S_IFMT;
        let path = dir.join(NEXT_PIN.fetch_add(1, Ordering::Relaxed).to_string());
        let made = match kind {
            libc::S_IFDIR => fs::create_dir(&path),
            libc::S_IFREG => fs::File::create(&path).map(drop),
            _ => return Err(PinError::Kind { index, fd: v.fd }),
        };
        made.map_err(|source| PinError::Io {
            what: "create pin",
            path: path.clone(),
            source,
        })?;
        pins.paths.push(path.clone());
        // The descriptor is the mount itself, not a path to look up again.
        attach(fd, &path).map_err(|source| PinError::Io {
            what: "attach the detached mount (open_tree OPEN_TREE_CLONE) to pin",
            path: path.clone(),
            source,
        })?;
        out.push(Volume {
            host: path,
            target: v.target.clone(),
            read_only: v.read_only,
        });
    }
    Ok((pins, out))
}

/// Mount a small tmpfs at `dir` in this namespace, once per process (a
/// tmpfs already there may be the host's, where pins must not go).
fn ensure_tmpfs(dir: &Path) -> Result<(), PinError> {
    static MOUNTED: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut mounted = MOUNTED.lock().unwrap_or_else(|e| e.into_inner());
    if mounted.as_deref() == Some(dir) {
        return Ok(());
    }
    let io = |what| {
        move |e: std::io::Error| PinError::Io {
            what,
            path: dir.to_path_buf(),
            source: e,
        }
    };
    fs::create_dir_all(dir).map_err(io("create pin directory"))?;
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700,size=64k"),
    )
    .map_err(|e| io("mount a tmpfs on pin directory")(e.into()))?;
    *mounted = Some(dir.to_path_buf());
    Ok(())
}
