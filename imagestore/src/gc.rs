//! Garbage collection: remove blobs and snapshots that no image references
//! and no live lease holds. Runs under the store's exclusive lock, so no
//! import is between "snapshot committed" and "image recorded" meanwhile.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::path::Path;

use serde::Serialize;

use crate::digest::Digest;
use crate::error::{IoContext, Result};
use crate::fsutil::{list_dir, remove_tree};
use crate::process_lock;
use crate::session;
use crate::store::{LeaseBody, Store};
use crate::verify::stale_temp_files;

/// What `gc` removed.
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    /// Blobs removed.
    pub blobs_removed: usize,
    /// Snapshots removed.
    pub snapshots_removed: usize,
    /// Orphaned snapshot directories removed (left by a crash).
    pub orphan_dirs_removed: usize,
    /// Stale leases (holder died) removed.
    pub stale_leases_removed: usize,
    /// Snapshots kept only because a running job holds them.
    pub snapshots_leased: usize,
    /// Bytes of blobs freed.
    pub bytes_freed: u64,
    /// Temporary files of interrupted writes (`.tmp-*`) removed.
    pub temp_files_removed: usize,
    /// Dead import sessions removed from `tmp/`.
    pub sessions_removed: usize,
}

impl Store {
    /// Collect garbage.
    pub fn gc(&self) -> Result<GcReport> {
        let _lock = self.lock_exclusive()?;
        // No writer runs under the exclusive lock: every temp file is stale.
        let mut report = GcReport {
            sessions_removed: session::clean_stale(&self.root().join("tmp"))?,
            temp_files_removed: remove_temp_files(self.root())?,
            ..GcReport::default()
        };
        let mut live_chains: HashSet<Digest> = HashSet::new();
        let mut live_blobs: HashSet<Digest> = HashSet::new();
        for rec in self.images().list()? {
            live_blobs.insert(rec.manifest.clone());
            live_blobs.insert(rec.config.clone());
            for l in &rec.layers {
                live_blobs.insert(l.digest.clone());
                live_chains.insert(l.chain_id.clone());
            }
        }
        // Leases whose holder is alive keep their snapshots.
        let mut leased: HashSet<Digest> = HashSet::new();
        for (name, path) in list_dir(&self.leases_dir())? {
            if !name.ends_with(".lease") {
                continue;
            }
            // A POSIX lock: held by the job's launcher only (see process_lock).
            match process_lock::holder(&path) {
                Ok(None) => {
                    let _ = fs::remove_file(&path);
                    report.stale_leases_removed += 1;
                    continue;
                }
                Ok(Some(_)) => {}
                Err(_) => continue,
            }
            if let Ok(body) =
                serde_json::from_slice::<LeaseBody>(&fs::read(&path).unwrap_or_default())
            {
                leased.extend(body.chain);
            }
        }
        for info in self.snapshots().list()? {
            if live_chains.contains(&info.chain_id) {
                live_blobs.insert(info.blob.clone());
                continue;
            }
            if leased.contains(&info.chain_id) {
                report.snapshots_leased += 1;
                live_blobs.insert(info.blob.clone());
                continue;
            }
            self.snapshots().remove(&info)?;
            report.snapshots_removed += 1;
        }
        for dir in self.snapshots().orphan_dirs()? {
            remove_tree(&dir)?;
            report.orphan_dirs_removed += 1;
        }
        for tree in self.snapshots().orphan_trees()? {
            fs::remove_file(&tree).ctx("remove", &tree)?;
        }
        for blob in self.content().list()? {
            if !live_blobs.contains(&blob) {
                report.bytes_freed += self.content().remove(&blob)?;
                report.blobs_removed += 1;
            }
        }
        Ok(report)
    }
}

/// Remove the `.tmp-*` files of interrupted atomic writes. The caller holds
/// the store's exclusive lock, so none of them belongs to a live writer.
fn remove_temp_files(root: &Path) -> Result<usize> {
    let mut n = 0;
    for path in stale_temp_files(root)? {
        match fs::remove_file(&path) {
            Ok(()) => n += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(crate::error::Error::io("remove", path, e)),
        }
    }
    Ok(n)
}

impl Store {
    /// At the start of an import: when no other command holds the store lock
    /// at all, remove stale temporary files (`.tmp-*`) and dead sessions, so
    /// killed imports do not leak them until the next `gc`. Never waits.
    pub(crate) fn clean_temp_if_idle(&self) -> Result<()> {
        let path = self.root().join("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| crate::error::Error::io("open lock file", &path, e))?;
        if file.try_lock().is_err() {
            return Ok(());
        }
        let removed = remove_temp_files(self.root())?;
        if removed > 0 {
            tracing::info!(removed, "removed temporary files of interrupted writes");
        }
        Ok(())
    }
}
