//! `skiff store export`: one file that seeds a new host's store with no
//! registry (`seed.rs` reads it). An uncompressed tar of, in this order:
//!
//! 1. `skiff-export.json` ([`ExportManifest`]): the image records with their
//!    tags, every snapshot (bottom first) with the sha256 and size of its
//!    compressed entry and of its tar, and the blobs;
//! 2. `blobs/<hex>`: each image's config and manifest;
//! 3. `snapshots/<chain hex>.tar.zst`: each snapshot as a layer tar
//!    (`snapshot_tar.rs`), zstd-compressed.
//!
//! Snapshots travel instead of layer blobs: a plain layer's blob is not
//! kept, and a snapshot unpacks without a decompressor of the image's own
//! choosing. What that relies on: a snapshot tar does not hash to its
//! layer's diff_id (tar serialisation is not canonical), so a seed checks
//! each against the digest this manifest records for it, and the manifest's
//! chain IDs against the configs (which do verify by their digests).
//!
//! Version 2 records the sha256 of each compressed entry: a seed checks
//! those bytes as it reads them (a third of the tar's, and off the
//! unpackers' threads) instead of hashing the tar as it unpacks; the
//! decompressed tar follows from them. A version 1 export (tar digests
//! only) is still read.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, IoContext, Result};
use crate::images::ImageRecord;
use crate::snapshot::SnapshotInfo;
use crate::snapshot_tar::write_snapshot_tar;
use crate::store::Store;

/// The manifest's entry name; always the first entry.
pub const MANIFEST_ENTRY: &str = "skiff-export.json";
/// This format's name and version.
pub const FORMAT: &str = "skiff-export";
/// The version written.
pub const VERSION: u32 = 2;
/// The oldest version read: it has no compressed digests.
pub const VERSION_TAR_DIGESTS: u32 = 1;
/// zstd level of the snapshot tars: fast to write, fast to read.
const ZSTD_LEVEL: i32 = 3;

/// What an export holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportManifest {
    /// [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// The images, with their tags.
    pub images: Vec<ExportedImage>,
    /// Every snapshot the images use, each after its parent.
    pub snapshots: Vec<ExportedSnapshot>,
    /// The configs and manifests.
    pub blobs: Vec<ExportedBlob>,
}

/// One image.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedImage {
    /// Its record, as the exporting store kept it.
    pub record: ImageRecord,
    /// Its tags (canonical references).
    pub refs: Vec<String>,
}

/// One snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedSnapshot {
    /// Chain ID.
    pub chain_id: Digest,
    /// Parent chain ID.
    pub parent: Option<Digest>,
    /// The layer's diff_id.
    pub diff_id: Digest,
    /// The layer's blob, its media type and size, as recorded.
    pub blob: Digest,
    /// That blob's media type.
    pub blob_media_type: String,
    /// That blob's size.
    pub blob_size: u64,
    /// The layer's uncompressed size.
    pub unpacked_size: u64,
    /// sha256 of the snapshot's tar (uncompressed).
    pub tar_digest: Digest,
    /// Its size in bytes.
    pub tar_size: u64,
    /// sha256 of the compressed entry (version 2 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zst_digest: Option<Digest>,
    /// The compressed entry's size (version 2 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zst_size: Option<u64>,
}

/// One blob.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedBlob {
    /// Digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    /// Images exported.
    pub images: usize,
    /// Snapshots exported.
    pub snapshots: usize,
    /// Bytes written.
    pub bytes: u64,
    /// sha256 of everything written: check it before seeding.
    pub digest: Digest,
}

impl Store {
    /// Write the images `references` name (every image when empty), their
    /// snapshots and blobs, to `out`.
    pub fn export<W: Write>(&self, references: &[String], out: W) -> Result<ExportReport> {
        let _shared = self.lock_shared()?;
        let session = self.new_session()?;
        let mut records: Vec<ImageRecord> = Vec::new();
        if references.is_empty() {
            records = self.images().list()?;
        } else {
            for r in references {
                let rec = self.resolve(r)?;
                if !records.iter().any(|x| x.id == rec.id) {
                    records.push(rec);
                }
            }
        }
        let mut manifest = ExportManifest {
            format: FORMAT.into(),
            version: VERSION,
            images: Vec::new(),
            snapshots: Vec::new(),
            blobs: Vec::new(),
        };
        let mut snaps: Vec<(SnapshotInfo, File)> = Vec::new();
        for rec in &records {
            for d in [&rec.config, &rec.manifest] {
                if !manifest.blobs.iter().any(|b| &b.digest == d) {
                    let path = self.content().path(d);
                    let size = std::fs::metadata(&path).ctx("read", &path)?.len();
                    manifest.blobs.push(ExportedBlob {
                        digest: d.clone(),
                        size,
                    });
                }
            }
            for l in &rec.layers {
                if manifest.snapshots.iter().any(|s| s.chain_id == l.chain_id) {
                    continue;
                }
                let info =
                    self.snapshots()
                        .get(&l.chain_id)?
                        .ok_or_else(|| Error::Inconsistent {
                            image: rec.id.to_string(),
                            detail: format!(
                                "snapshot {} is missing; re-import the image",
                                l.chain_id
                            ),
                        })?;
                let path = session.temp_path("export");
                let file = File::options()
                    .create_new(true)
                    .read(true)
                    .write(true)
                    .open(&path)
                    .ctx("create", &path)?;
                let mut hashing = HashingWriter::new(
                    zstd::Encoder::new(HashingWriter::new(BufWriter::new(&file)), ZSTD_LEVEL)
                        .ctx("compress into", &path)?,
                );
                let dir = self.snapshots().path(&info);
                write_snapshot_tar(&dir, &mut hashing).ctx("export snapshot", &dir)?;
                let (tar_digest, tar_size, inner) = hashing.finish();
                let (zst_digest, zst_size, mut out) = inner.finish().ctx("write", &path)?.finish();
                out.flush().ctx("write", &path)?;
                drop(out);
                manifest.snapshots.push(ExportedSnapshot {
                    chain_id: info.chain_id.clone(),
                    parent: info.parent.clone(),
                    diff_id: info.diff_id.clone(),
                    blob: info.blob.clone(),
                    blob_media_type: info.blob_media_type.clone(),
                    blob_size: info.blob_size,
                    unpacked_size: info.unpacked_size,
                    tar_digest,
                    tar_size,
                    zst_digest: Some(zst_digest),
                    zst_size: Some(zst_size),
                });
                snaps.push((info, file));
            }
            manifest.images.push(ExportedImage {
                refs: self.images().tags_of(&rec.id)?,
                record: rec.clone(),
            });
        }

        let mut counted = HashingWriter::new(out);
        let mut tar = tar::Builder::new(&mut counted);
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::BadJson {
            what: "export manifest".into(),
            detail: e.to_string(),
        })?;
        let write_err = |source| Error::Io {
            op: "write the export",
            path: "-".into(),
            source,
        };
        append(&mut tar, MANIFEST_ENTRY, json.len() as u64, &json[..]).map_err(write_err)?;
        for b in &manifest.blobs {
            let path = self.content().path(&b.digest);
            let f = File::open(&path).ctx("read", &path)?;
            append(&mut tar, &format!("blobs/{}", b.digest.hex()), b.size, f).map_err(write_err)?;
        }
        for (info, mut file) in snaps {
            let len = file
                .seek(io::SeekFrom::End(0))
                .ctx("read", "export temp file")?;
            file.rewind().ctx("read", "export temp file")?;
            let name = format!("snapshots/{}.tar.zst", info.chain_id.hex());
            append(&mut tar, &name, len, file.take(len)).map_err(write_err)?;
        }
        tar.into_inner()
            .and_then(|w| w.flush())
            .map_err(write_err)?;
        let (digest, bytes, _) = counted.finish();
        Ok(ExportReport {
            images: manifest.images.len(),
            snapshots: manifest.snapshots.len(),
            bytes,
            digest,
        })
    }
}

fn append<W: Write, R: Read>(
    tar: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    data: R,
) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    tar.append_data(&mut h, name, data)
}
