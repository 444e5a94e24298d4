//! Import sessions: a private temp directory per import, locked with `flock`
//! so that a crashed (even SIGKILLed) import's leftovers can be told from a
//! live one and removed by the next command.
//!
//! Protocol: create and lock `tmp/<name>.lock`, check it is still the file at
//! that path, then create `tmp/<name>/`. A cleaner removes `tmp/<name>/` only
//! when it can take the lock itself, or when no lock file exists at all.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::fsutil::{list_dir, random_name, remove_tree};

/// A live import session directory. Removed when dropped.
#[derive(Debug)]
pub struct Session {
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: File,
}

impl Session {
    /// Create a session under `tmp_root`.
    pub(crate) fn create(tmp_root: &Path) -> Result<Session> {
        loop {
            let name = format!("{}-{}", std::process::id(), random_name(8));
            let lock_path = tmp_root.join(format!("{name}.lock"));
            let file = match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock_path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).ctx("create", &lock_path),
            };
            file.lock().ctx("lock", &lock_path)?;
            // A cleaner may have unlinked the file between create and lock.
            let ours = file.metadata().ctx("stat", &lock_path)?;
            match fs::metadata(&lock_path) {
                Ok(m) if m.ino() == ours.ino() && m.dev() == ours.dev() => {}
                _ => continue,
            }
            let dir = tmp_root.join(&name);
            fs::create_dir(&dir).ctx("create", &dir)?;
            return Ok(Session {
                dir,
                lock_path,
                _lock: file,
            });
        }
    }

    /// A fresh unique path inside the session.
    pub(crate) fn temp_path(&self, prefix: &str) -> PathBuf {
        self.dir.join(format!("{prefix}-{}", random_name(10)))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = remove_tree(&self.dir);
        let _ = fs::remove_file(&self.lock_path);
    }
}

/// The leftovers of dead sessions (lock files whose flock is free, and
/// session directories without a lock file), without removing anything.
pub(crate) fn stale(tmp_root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let entries = list_dir(tmp_root)?;
    let names: std::collections::HashSet<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    for (name, path) in &entries {
        if let Some(base) = name.strip_suffix(".lock") {
            let Ok(file) = OpenOptions::new().write(true).open(path) else {
                continue;
            };
            if file.try_lock().is_ok() {
                if names.contains(base) {
                    out.push(tmp_root.join(base));
                }
                out.push(path.clone());
            }
        } else if !names.contains(format!("{name}.lock").as_str()) {
            out.push(path.clone());
        }
    }
    Ok(out)
}

/// Remove the leftovers of dead sessions. Returns how many were removed.
pub(crate) fn clean_stale(tmp_root: &Path) -> Result<usize> {
    let mut removed = 0;
    let entries = list_dir(tmp_root)?;
    let names: std::collections::HashSet<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    for (name, path) in &entries {
        if let Some(base) = name.strip_suffix(".lock") {
            let Ok(file) = OpenOptions::new().write(true).open(path) else {
                continue;
            };
            if file.try_lock().is_ok() {
                remove_tree(&tmp_root.join(base))?;
                let _ = fs::remove_file(path);
                removed += 1;
            }
        } else if !names.contains(format!("{name}.lock").as_str()) {
            // A session dir is only created after its lock file; without one it is stale.
            remove_tree(path)?;
            removed += 1;
        }
    }
    Ok(removed)
}
