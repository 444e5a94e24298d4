//! A small tmpfs for tests that need a full filesystem: mounted on a fresh
//! temporary directory, lazily unmounted and removed on drop (also when the
//! test panics).

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// A mounted tmpfs of a given size.
#[derive(Debug)]
pub struct SmallTmpfs {
    dir: tempfile::TempDir,
}

impl SmallTmpfs {
    /// Mount a tmpfs of `size` (e.g. `64k`); `None` (with the reason) when
    /// mounting is impossible here.
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
