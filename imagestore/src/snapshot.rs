//! The snapshotter: one directory per unpacked layer, keyed by chain ID.
//!
//! Each snapshot holds only its own layer's files (whiteouts already in
//! overlayfs form). Parent chains live in metadata (`meta/snapshots/<chain>.json`),
//! not in directory nesting, and the directories have short random names
//! (`snapshots/<10 chars>`) so that a `lowerdir=` option for 60+ layers still
//! fits in one page. The store never mounts: it hands out a [`MountDescription`].

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{list_dir, random_name, remove_tree, write_atomic, FileLock};

/// Metadata of one committed snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The chain ID this snapshot realises.
    pub chain_id: Digest,
    /// The chain ID of the snapshot below it, if any.
    pub parent: Option<Digest>,
    /// The layer's uncompressed digest.
    pub diff_id: Digest,
    /// Directory name under `snapshots/`.
    pub dir: String,
    /// The blob this snapshot was unpacked from.
    pub blob: Digest,
    /// That blob's media type.
    pub blob_media_type: String,
    /// That blob's size in bytes.
    pub blob_size: u64,
    /// Uncompressed layer size in bytes.
    pub unpacked_size: u64,
    /// Whether the blob is kept in the content store. A plain (uncompressed)
    /// layer's is not: the snapshot holds the same bytes, unpacked, and
    /// `meta/trees/<chain>.tree` records what they unpacked to, which
    /// `verify` checks the directory against.
    #[serde(default = "kept", skip_serializing_if = "is_kept")]
    pub blob_kept: bool,
}

fn kept() -> bool {
    true
}

fn is_kept(k: &bool) -> bool {
    *k
}

/// What the runtime needs to mount an image's root filesystem: the lower
/// directories of an overlay, top (last layer) first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountDescription {
    /// Lower directories, top first.
    pub lowerdirs: Vec<PathBuf>,
}

/// Snapshots on disk.
#[derive(Debug, Clone)]
pub struct Snapshotter {
    dirs: PathBuf,
    meta: PathBuf,
    locks: PathBuf,
}

impl Snapshotter {
    pub(crate) fn new(dirs: PathBuf, meta: PathBuf, locks: PathBuf) -> Self {
        Snapshotter { dirs, meta, locks }
    }

    fn meta_path(&self, chain: &Digest) -> PathBuf {
        self.meta.join(format!("{}.json", chain.hex()))
    }

    /// Where the tree of a snapshot whose blob is not kept is recorded:
    /// `meta/trees/<chain>.tree`, beside `meta/snapshots/`.
    pub(crate) fn tree_path(&self, chain: &Digest) -> PathBuf {
        let trees = self.meta.parent().unwrap_or(&self.meta).join("trees");
        trees.join(format!("{}.tree", chain.hex()))
    }

    /// The committed snapshot for a chain, if any.
    pub fn get(&self, chain: &Digest) -> Result<Option<SnapshotInfo>> {
        let path = self.meta_path(chain);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).ctx("read", &path),
        };
        let info: SnapshotInfo =
            serde_json::from_slice(&data).map_err(|e| Error::CorruptMetadata {
                path: path.clone(),
                detail: e.to_string(),
            })?;
        Ok(Some(info))
    }

    /// Serialise work on one chain across processes.
    pub(crate) fn lock_chain(&self, chain: &Digest) -> Result<FileLock> {
        FileLock::acquire(&self.locks.join(chain.hex()), true)
    }

    /// Path of a committed snapshot directory.
    pub fn path(&self, info: &SnapshotInfo) -> PathBuf {
        self.dirs.join(&info.dir)
    }

    /// Move an unpacked directory into place and record it. The caller holds
    /// the chain lock. The directory is renamed before the metadata is
    /// written, so a crash leaves at worst an unreferenced directory, which
    /// `gc` removes; never metadata pointing at nothing.
    pub(crate) fn commit(&self, unpacked: &Path, mut info: SnapshotInfo) -> Result<SnapshotInfo> {
        if !info.blob_kept {
            // Before the metadata, so that a recorded blob-less snapshot
            // always has its tree.
            let tree = crate::snapshot_tree::of_dir(unpacked).ctx("walk", unpacked)?;
            write_atomic(
                &self.tree_path(&info.chain_id),
                &crate::snapshot_tree::encode(&tree),
            )?;
        }
        loop {
            let dir = random_name(10);
            let dst = self.dirs.join(&dir);
            match fs::rename(unpacked, &dst) {
                Ok(()) => {
                    info.dir = dir;
                    break;
                }
                // rename(2) onto an existing non-empty dir fails with ENOTEMPTY/EEXIST.
                Err(e) if dst.exists() => {
                    tracing::debug!("snapshot name clash on {dir}: {e}");
                    continue;
                }
                Err(e) => return Err(e).ctx("commit snapshot", &dst),
            }
        }
        let json = serde_json::to_vec_pretty(&info).map_err(|e| Error::CorruptMetadata {
            path: self.meta_path(&info.chain_id),
            detail: e.to_string(),
        })?;
        if let Err(e) = write_atomic(&self.meta_path(&info.chain_id), &json) {
            // Not recorded: do not leave the directory behind for gc.
            let _ = remove_tree(&self.dirs.join(&info.dir));
            return Err(e);
        }
        Ok(info)
    }

    /// The overlay lower directories for a chain of snapshots (bottom first in
    /// `chain`, top first in the result).
    pub fn mount_description(&self, chain: &[Digest]) -> Result<MountDescription> {
        let mut lowerdirs = Vec::with_capacity(chain.len());
        for c in chain.iter().rev() {
            let info = self.get(c)?.ok_or_else(|| Error::CorruptMetadata {
                path: self.meta_path(c),
                detail: format!("snapshot {c} is missing; re-import the image"),
            })?;
            lowerdirs.push(self.path(&info));
        }
        Ok(MountDescription { lowerdirs })
    }

    /// All committed snapshots.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>> {
        let mut out = Vec::new();
        for (name, _) in list_dir(&self.meta)? {
            let Some(hex) = name.strip_suffix(".json") else {
                continue;
            };
            let Ok(chain) = Digest::from_hex(hex) else {
                continue;
            };
            if let Some(info) = self.get(&chain)? {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Remove a snapshot: metadata first, then its directory.
    pub(crate) fn remove(&self, info: &SnapshotInfo) -> Result<()> {
        let meta = self.meta_path(&info.chain_id);
        match fs::remove_file(&meta) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).ctx("remove", &meta),
        }
        remove_tree(&self.path(info))?;
        let _ = fs::remove_file(self.tree_path(&info.chain_id));
        let _ = fs::remove_file(self.locks.join(info.chain_id.hex()));
        Ok(())
    }

    /// Recorded trees (`meta/trees/`) of no snapshot (left by a crash
    /// between the tree's write and the metadata's).
    pub(crate) fn orphan_trees(&self) -> Result<Vec<PathBuf>> {
        let trees = self.meta.parent().unwrap_or(&self.meta).join("trees");
        let mut out = Vec::new();
        for (name, path) in list_dir(&trees)? {
            let Some(hex) = name.strip_suffix(".tree") else {
                continue;
            };
            let known = Digest::from_hex(hex)
                .map(|d| self.meta_path(&d).exists())
                .unwrap_or(false);
            if !known {
                out.push(path);
            }
        }
        Ok(out)
    }

    /// Directories under `snapshots/` that no metadata references (left by a
    /// crash between rename and metadata write).
    pub(crate) fn orphan_dirs(&self) -> Result<Vec<PathBuf>> {
        let known: std::collections::HashSet<String> =
            self.list()?.into_iter().map(|i| i.dir).collect();
        Ok(list_dir(&self.dirs)?
            .into_iter()
            .filter(|(name, _)| !known.contains(name))
            .map(|(_, p)| p)
            .collect())
    }
}
