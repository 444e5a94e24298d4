//! The content store: blobs addressed by sha256 under `blobs/sha256/<hex>`.
//!
//! Writers put data into a session's ingest area first; a blob is renamed
//! into place only after its digest was checked, so a visible blob is always
//! whole and correct.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{list_dir, write_atomic};

/// Blobs on disk.
#[derive(Debug, Clone)]
pub struct ContentStore {
    dir: PathBuf,
}

impl ContentStore {
    pub(crate) fn new(dir: PathBuf) -> Self {
        ContentStore { dir }
    }

    /// Where the blob lives (whether or not it exists).
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.dir.join(d.hex())
    }

    /// Whether the blob is present.
    pub fn contains(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    /// Read a whole (small) blob and check its digest.
    pub fn read(&self, d: &Digest) -> Result<Vec<u8>> {
        let path = self.path(d);
        let mut data = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .ctx("read blob", &path)?;
        let actual = Digest::of_bytes(&data);
        if &actual != d {
            return Err(Error::DigestMismatch {
                what: format!("{d} in the store"),
                expected: d.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(data)
    }

    /// Store bytes whose digest is already known to be `d`.
    pub(crate) fn put_bytes(&self, d: &Digest, data: &[u8]) -> Result<()> {
        if self.contains(d) {
            return Ok(());
        }
        write_atomic(&self.path(d), data)
    }

    /// Move a verified ingest file into place. If the blob already exists the
    /// ingest file is dropped (another import won the race).
    pub(crate) fn commit_file(&self, ingest: &Path, d: &Digest) -> Result<()> {
        let dst = self.path(d);
        if dst.exists() {
            let _ = fs::remove_file(ingest);
            return Ok(());
        }
        fs::rename(ingest, &dst).ctx("commit blob", &dst)
    }

    /// All blobs present.
    pub fn list(&self) -> Result<Vec<Digest>> {
        Ok(list_dir(&self.dir)?
            .into_iter()
            .filter_map(|(name, _)| Digest::from_hex(&name).ok())
            .collect())
    }

    /// Remove a blob.
    pub(crate) fn remove(&self, d: &Digest) -> Result<u64> {
        let path = self.path(d);
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(&path) {
            Ok(()) => Ok(size),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e).ctx("remove blob", &path),
        }
    }
}
