//! The directory a launcher may write job output into, and the only way it
//! opens an output path named in a request: `openat2` beneath that directory
//! with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`, so a
//! path never leaves it, never follows a symlink and never reaches `/proc`;
//! and only regular files are written to.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// `PROC_SUPER_MAGIC` from `linux/magic.h`.
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// Errors from opening the output directory or a sink inside it.
#[derive(Debug, thiserror::Error)]
pub enum OutputDirError {
    /// The directory given on the launcher's command line cannot be opened.
    #[error("cannot open output directory {path}")]
    OpenDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The directory is on procfs, where every entry is a magic link.
    #[error("output directory {0} is on /proc; give a real directory")]
    OnProc(PathBuf),
    /// The output path is not a plain relative path.
    #[error("output path {0:?} must be relative to the launcher's output directory, without ..")]
    NotRelative(PathBuf),
    /// `openat2` refused or failed (a symlink, an escape, a missing parent…).
    #[error("cannot open output path {path:?} beneath {dir} (symlinks, .. and /proc are refused)")]
    Open {
        path: PathBuf,
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The path exists and is not a regular file (a FIFO, a device, a directory).
    #[error("output path {0:?} is not a regular file")]
    NotRegular(PathBuf),
}

/// An open handle on the launcher's output directory.
#[derive(Debug)]
pub struct OutputDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl OutputDir {
    /// Open `path` (a directory, not on procfs).
    pub fn open(path: &Path) -> Result<OutputDir, OutputDirError> {
        let open_err = |source| OutputDirError::OpenDir {
            path: path.to_path_buf(),
            source,
        };
        let fd: OwnedFd = nix::fcntl::open(
            path,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        // SAFETY: open just returned this descriptor; nothing else owns it.
        .map(|raw| unsafe { OwnedFd::from_raw_fd(raw) })
        .map_err(|e| open_err(e.into()))?;
        let fs = nix::sys::statfs::fstatfs(&fd).map_err(|e| open_err(e.into()))?;
        if fs.filesystem_type().0 as i64 == PROC_SUPER_MAGIC {
            return Err(OutputDirError::OnProc(path.to_path_buf()));
        }
        Ok(OutputDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The directory's path as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Open (creating if needed, mode 0644) the regular file `rel` beneath
    /// the directory for appending.
    pub fn open_sink(&self, rel: &Path) -> Result<File, OutputDirError> {
        if rel.is_absolute()
            || rel.as_os_str().is_empty()
            || rel
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(OutputDirError::NotRelative(rel.to_path_buf()));
        }
        let fail = |source| OutputDirError::Open {
            path: rel.to_path_buf(),
            dir: self.path.clone(),
            source,
        };
        let c = CString::new(rel.as_os_str().as_bytes())
            .map_err(|_| OutputDirError::NotRelative(rel.to_path_buf()))?;
        // O_NONBLOCK: opening a FIFO must not block the launcher; it is
        // refused just below anyway.
        let fd = crate::safe_root::openat2(
            self.fd.as_raw_fd(),
            &c,
            libc::O_WRONLY
                | libc::O_CREAT
                | libc::O_APPEND
                | libc::O_CLOEXEC
                | libc::O_NOFOLLOW
                | libc::O_NOCTTY
                | libc::O_NONBLOCK,
            0o644,
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
        )
        .map_err(fail)?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(fail)?;
        if !meta.file_type().is_file() {
            return Err(OutputDirError::NotRegular(rel.to_path_buf()));
        }
        // Back to blocking writes (a no-op for regular files, but explicit).
        let fl = nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)
            .map_err(|e| fail(e.into()))?;
        let fl = nix::fcntl::OFlag::from_bits_truncate(fl) & !nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(fl))
            .map_err(|e| fail(e.into()))?;
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn test_output_dir_opens_regular_file_beneath() {
        let d = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(d.path().join("sub")).expect("mkdir");
        let out = OutputDir::open(d.path()).expect("open dir");
        let mut f = out.open_sink(Path::new("sub/out")).expect("sink");
        f.write_all(b"x").expect("write");
        let mut f = out.open_sink(Path::new("sub/out")).expect("again");
        f.write_all(b"y").expect("append");
        assert_eq!(
            std::fs::read(d.path().join("sub/out")).expect("read"),
            b"xy"
        );
    }

    #[test]
    fn test_output_dir_refuses_symlinks_escapes_and_fifos() {
        let d = tempfile::tempdir().expect("tmp");
        let victim = d.path().join("victim");
        std::fs::write(&victim, "keep").expect("victim");
        let inner = d.path().join("out");
        std::fs::create_dir(&inner).expect("mkdir");
        std::os::unix::fs::symlink(&victim, inner.join("link")).expect("symlink");
        std::os::unix::fs::symlink("/proc/self/fd", inner.join("fds")).expect("symlink");
        nix::unistd::mkfifo(
            &inner.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .expect("fifo");
        std::fs::create_dir(inner.join("dir")).expect("dir");
        let out = OutputDir::open(&inner).expect("open dir");
        assert!(matches!(
            out.open_sink(Path::new("link")),
            Err(OutputDirError::Open { .. })
        ));
        assert!(matches!(
            out.open_sink(Path::new("fds/1")),
            Err(OutputDirError::Open { .. })
        ));
        assert!(matches!(
            out.open_sink(Path::new("../victim")),
            Err(OutputDirError::NotRelative(_))
        ));
        assert!(matches!(
            out.open_sink(Path::new("/proc/self/fd/1")),
            Err(OutputDirError::NotRelative(_))
        ));
        // A FIFO without a reader fails the non-blocking open (ENXIO); with
        // one it opens and is refused as not regular: refused either way.
        assert!(out.open_sink(Path::new("fifo")).is_err());
        assert!(out.open_sink(Path::new("dir")).is_err());
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "keep");
        assert!(matches!(
            OutputDir::open(Path::new("/proc/self/fd")),
            Err(OutputDirError::OnProc(_))
        ));
    }
}
