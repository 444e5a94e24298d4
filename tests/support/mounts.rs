//! Mounts a test makes (a small tmpfs, an overlay), unmounted on drop, also
//! when the test panics.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::privilege::skip_or_fail;

/// Unmounts on drop, even when the test fails.
pub struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Mount a read-only overlay of `lowerdirs` (top first) at `target`.
pub fn mount_overlay(lowerdirs: &[PathBuf], target: &Path) -> nix::Result<MountGuard> {
    std::fs::create_dir_all(target).expect("mkdir");
    let lower: Vec<String> = lowerdirs.iter().map(|p| p.display().to_string()).collect();
    let data = if lower.len() == 1 {
        // overlayfs needs two lowers without an upper; repeat is not allowed,
        // so add an empty one.
        let empty = target.with_extension("empty");
        std::fs::create_dir_all(&empty).expect("mkdir");
        format!("lowerdir={}:{}", lower[0], empty.display())
    } else {
        format!("lowerdir={}", lower.join(":"))
    };
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(data.as_str()),
    )?;
    Ok(MountGuard(target.to_path_buf()))
}

/// Mount a tmpfs of `size` at `target`; `None` after [`skip_or_fail`] when
/// that is impossible here.
pub fn mount_tmpfs(target: &Path, size: &str) -> Option<MountGuard> {
    std::fs::create_dir_all(target).expect("mkdir");
    let data = format!("size={size},mode=0755");
    match nix::mount::mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some(data.as_str()),
    ) {
        Ok(()) => Some(MountGuard(target.to_path_buf())),
        Err(e) => {
            skip_or_fail(&format!("needs mounting a tmpfs: {e}"));
            None
        }
    }
}

/// A small tmpfs for tests that need a full filesystem: mounted on a fresh
/// temporary directory, lazily unmounted and removed on drop.
#[derive(Debug)]
pub struct SmallTmpfs {
    dir: tempfile::TempDir,
}

impl SmallTmpfs {
    /// Mount a tmpfs of `size` (e.g. `64k`); the reason when mounting is
    /// impossible here.
    pub fn mount(size: &str) -> Result<SmallTmpfs, String> {
        let dir = tempfile::Builder::new()
            .prefix("skiff-small-tmpfs-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(SmallTmpfs { dir })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
