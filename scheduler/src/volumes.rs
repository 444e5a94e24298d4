//! Host volumes for API jobs: off unless the worker's operator allows
//! directories with `skiff serve --allow-volume DIR`.
//!
//! A volume's host path comes from a request, so it is hostile: it is
//! opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` from the
//! allowed directory it names, at submit (for a 400 that names the item)
//! and again at each launch. The launch hands the launcher the open
//! descriptor, not the path (see `runtime::fd_volume`), so a symlink
//! swapped in after the check moves nothing.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use runtime::job::Volume;
use runtime::safe_root::cstr;

/// The directories beneath which API jobs may mount host paths.
#[derive(Debug, Clone, Default)]
pub struct AllowedVolumes {
    roots: Vec<PathBuf>,
}

impl AllowedVolumes {
    /// Resolve each directory (symlinks in the operator's own
    /// configuration are followed once, here).
    pub fn new(dirs: &[PathBuf]) -> Result<Self, String> {
        let mut roots = Vec::new();
        for d in dirs {
            let c = std::fs::canonicalize(d)
                .map_err(|e| format!("--allow-volume {}: {e}", d.display()))?;
            if !c.is_dir() {
                return Err(format!("--allow-volume {}: not a directory", d.display()));
            }
            roots.push(c);
        }
        Ok(AllowedVolumes { roots })
    }

    /// The allowed directories.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Open `v`'s host path beneath the allowed directory that holds it,
    /// following no symlink; the error says why not, without the field.
    pub fn open(&self, v: &Volume) -> Result<OwnedFd, String> {
        if self.roots.is_empty() {
            return Err("host volumes are off for API jobs; the worker allows \
                        directories with `skiff serve --allow-volume DIR`"
                .into());
        }
        let host = &v.host;
        if host
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return Err(format!("{}: `.` and `..` are not allowed", host.display()));
        }
        let Some((root, rel)) = self
            .roots
            .iter()
            .find_map(|r| host.strip_prefix(r).ok().map(|rel| (r, rel)))
        else {
            return Err(format!(
                "{} is not beneath a directory the worker allows ({})",
                host.display(),
                self.list()
            ));
        };
        open_beneath(root, rel).map_err(|e| {
            let why = match e.raw_os_error() {
                Some(libc::ELOOP) => "a symlink on the way (symlinks are not followed)".into(),
                Some(libc::EXDEV) => "it leaves the allowed directory".into(),
                Some(libc::ENOENT) => "it does not exist".into(),
                _ => e.to_string(),
            };
            format!("{}: {why}", host.display())
        })
    }

    fn list(&self) -> String {
        if self.roots.is_empty() {
            return "none".into();
        }
        self.roots
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `O_PATH` descriptor of `rel` beneath `root`: a directory or a regular file.
fn open_beneath(root: &Path, rel: &Path) -> std::io::Result<OwnedFd> {
    let flags = libc::O_PATH | libc::O_CLOEXEC;
    let dir = runtime::safe_root::openat2(
        libc::AT_FDCWD,
        &cstr(root)?,
        flags | libc::O_DIRECTORY,
        0,
        0,
    )?;
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    let fd = runtime::safe_root::openat2(dir.as_raw_fd(), &cstr(rel)?, flags, 0, resolve)?;
    let st = nix::sys::stat::fstat(fd.as_raw_fd())?;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR | libc::S_IFREG => Ok(fd),
        _ => Err(std::io::Error::other("not a directory or a regular file")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(host: &Path) -> Volume {
        Volume {
            host: host.to_path_buf(),
            target: "/data".into(),
            read_only: false,
        }
    }

    #[test]
    fn test_off_when_nothing_is_allowed() {
        let e = AllowedVolumes::default()
            .open(&vol(Path::new("/tmp")))
            .expect_err("off");
        assert!(e.contains("--allow-volume"), "{e}");
    }

    #[test]
    fn test_opens_beneath_and_refuses_outside_dotdot_and_symlinks() {
        let t = tempfile::tempdir().expect("tempdir");
        let allowed = t.path().join("allowed");
        std::fs::create_dir_all(allowed.join("data/sub")).expect("mkdir");
        std::fs::write(allowed.join("data/file"), b"x").expect("write");
        std::os::unix::fs::symlink("/etc", allowed.join("data/link")).expect("symlink");
        std::os::unix::fs::symlink("sub", allowed.join("data/inner")).expect("symlink");
        let a = AllowedVolumes::new(std::slice::from_ref(&allowed)).expect("allow");
        let root = a.roots()[0].clone();
        a.open(&vol(&root)).expect("the allowed directory itself");
        a.open(&vol(&root.join("data/sub")))
            .expect("a directory beneath");
        a.open(&vol(&root.join("data/file")))
            .expect("a file beneath");
        let refused = |p: PathBuf, want: &str| {
            let e = a.open(&vol(&p)).expect_err(&p.display().to_string());
            assert!(e.contains(want), "{}: {e}", p.display());
        };
        refused(t.path().to_path_buf(), "not beneath");
        refused(root.join("data/../../x"), "`..`");
        refused(root.join("data/link"), "symlink");
        refused(root.join("data/link/passwd"), "symlink");
        refused(root.join("data/inner"), "symlink");
        refused(root.join("data/missing"), "does not exist");
    }
}
