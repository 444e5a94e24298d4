//! Small filesystem helpers shared by the store modules: atomic writes,
//! locks, and random names.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::Rng;

use crate::error::{IoContext, Result};

/// Write `data` to `path` atomically: a sibling temp file, then rename.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".tmp-{}", random_name(12)));
    let mut f = File::create(&tmp).ctx("create", &tmp)?;
    let res = f
        .write_all(data)
        .and_then(|()| f.sync_data())
        .ctx("write", &tmp)
        .and_then(|()| fs::rename(&tmp, path).ctx("rename into place", path));
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// A random lowercase alphanumeric name, used for snapshot dirs and temp files.
pub(crate) fn random_name(len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

/// An advisory `flock` on a file, released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    /// Block until the lock is held.
    pub(crate) fn acquire(path: &Path, exclusive: bool) -> Result<FileLock> {
        let file = open_lock_file(path)?;
        if exclusive {
            file.lock().ctx("lock", path)?;
        } else {
            file.lock_shared().ctx("lock", path)?;
        }
        Ok(FileLock { _file: file })
    }
}

fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .ctx("open lock file", path)
}

/// Create a directory and its parents.
pub(crate) fn mkdirs(path: &Path) -> Result<()> {
    fs::create_dir_all(path).ctx("create directory", path)
}

/// Remove a directory tree if present. `remove_dir_all` does not follow symlinks.
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).ctx("remove", path),
    }
}

/// List the names in a directory; a missing directory is empty.
pub(crate) fn list_dir(path: &Path) -> Result<Vec<(String, PathBuf)>> {
    let rd = match fs::read_dir(path) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx("list", path),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.ctx("list", path)?;
        if let Some(name) = ent.file_name().to_str() {
            out.push((name.to_string(), ent.path()));
        }
    }
    out.sort();
    Ok(out)
}
