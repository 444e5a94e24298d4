//! `skiff store seed`: load an export (`export.rs`) into a store, new or
//! not, read once as a stream. The export is hostile input like any
//! archive: its manifest must be first and well-formed, every chain ID
//! must follow from its parent and diff_id and every image's from its
//! config (whose digest is checked), every blob hashes to its name, every
//! snapshot tar to the digest and size the manifest gives it, and each is
//! unpacked by the store's applier. What the store has already (a blob, a
//! snapshot) is skipped, never written twice. Snapshots are committed one
//! by one, as an import does; image records and tags come last, once all
//! they need is there, so a seed killed midway leaves no half-visible
//! image, only what `gc` collects.

use std::collections::HashSet;
use std::io::Read;

use serde::Serialize;

use std::sync::atomic::Ordering;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::export::{ExportManifest, FORMAT, MANIFEST_ENTRY, VERSION, VERSION_TAR_DIGESTS};
use crate::images::ImageRecord;
use crate::seed_unpack::{Pool, Shared, Work};
use crate::store::Store;

/// The largest manifest, config or image manifest read into memory.
const MAX_MANIFEST: u64 = 64 << 20;

/// What a seed did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SeedReport {
    /// Image ids recorded.
    pub images: Vec<String>,
    /// Snapshots unpacked.
    pub snapshots_unpacked: usize,
    /// Snapshots the store had.
    pub snapshots_reused: usize,
    /// Blobs written.
    pub blobs_written: usize,
    /// Blobs the store had.
    pub blobs_reused: usize,
}

fn bad(entry: &str, detail: impl Into<String>) -> Error {
    Error::BadJson {
        what: format!("export entry {entry}"),
        detail: detail.into(),
    }
}

impl Store {
    /// Load the export read from `input` into this store.
    pub fn seed<R: Read>(&self, input: R) -> Result<SeedReport> {
        self.clean_temp_if_idle()?;
        let _shared = self.lock_shared()?;
        let session = self.new_session()?;
        let read_err = |what: &str| {
            let what = what.to_string();
            move |source| Error::ReadArchive { what, source }
        };
        let mut archive = tar::Archive::new(input);
        let mut entries = archive.entries().map_err(read_err("the export"))?;
        let mut first = entries
            .next()
            .ok_or_else(|| bad(MANIFEST_ENTRY, "the export is empty"))?
            .map_err(read_err("the export"))?;
        let name = String::from_utf8_lossy(&first.path_bytes()).into_owned();
        if name != MANIFEST_ENTRY || first.size() > MAX_MANIFEST {
            return Err(bad(
                &name,
                format!("the first entry must be {MANIFEST_ENTRY} (at most 64 MiB)"),
            ));
        }
        let mut json = Vec::new();
        (&mut first)
            .take(MAX_MANIFEST)
            .read_to_end(&mut json)
            .map_err(read_err(MANIFEST_ENTRY))?;
        drop(first);
        let manifest: ExportManifest =
            serde_json::from_slice(&json).map_err(|e| bad(MANIFEST_ENTRY, e.to_string()))?;
        check_manifest(&manifest)?;

        let mut report = SeedReport::default();
        let mut blobs_seen: HashSet<Digest> = HashSet::new();
        let mut snaps_seen: HashSet<Digest> = HashSet::new();
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (shared, tx) = Shared::new(self, &session);
        let mut reused_early = 0;
        std::thread::scope(|scope| -> Result<()> {
            let mut pool = Pool::start(scope, &shared, tx, workers);
            for entry in entries {
                let mut entry = entry.map_err(read_err("the export"))?;
                let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                if let Some(hex) = name.strip_prefix("blobs/") {
                    let b = Digest::from_hex(hex)
                        .ok()
                        .and_then(|d| manifest.blobs.iter().find(|b| b.digest == d))
                        .ok_or_else(|| bad(&name, "a blob the manifest does not list"))?;
                    if entry.size() != b.size || b.size > MAX_MANIFEST {
                        return Err(Error::SizeMismatch {
                            what: format!("{name} of the export (at most 64 MiB)"),
                            expected: b.size,
                            actual: entry.size(),
                        });
                    }
                    blobs_seen.insert(b.digest.clone());
                    if self.content().contains(&b.digest) {
                        report.blobs_reused += 1;
                        continue;
                    }
                    let mut data = Vec::new();
                    (&mut entry)
                        .take(b.size + 1)
                        .read_to_end(&mut data)
                        .map_err(read_err(&name))?;
                    let actual = Digest::of_bytes(&data);
                    if actual != b.digest {
                        return Err(Error::DigestMismatch {
                            what: format!("{name} of the export"),
                            expected: b.digest.to_string(),
                            actual: actual.to_string(),
                        });
                    }
                    self.content().put_bytes(&b.digest, &data)?;
                    report.blobs_written += 1;
                } else if let Some(hex) = name
                    .strip_prefix("snapshots/")
                    .and_then(|n| n.strip_suffix(".tar.zst"))
                {
                    let s = Digest::from_hex(hex)
                        .ok()
                        .and_then(|d| manifest.snapshots.iter().find(|s| s.chain_id == d))
                        .ok_or_else(|| bad(&name, "a snapshot the manifest does not list"))?;
                    if let Some(p) = &s.parent {
                        if !snaps_seen.contains(p) && self.snapshots().get(p)?.is_none() {
                            return Err(bad(&name, format!("comes before its parent {p}")));
                        }
                    }
                    snaps_seen.insert(s.chain_id.clone());
                    // What the store has is skipped unread; the rest is
                    // unpacked by the pool, which checks again under the
                    // chain's lock.
                    if self.snapshots().get(&s.chain_id)?.is_some() {
                        reused_early += 1;
                        continue;
                    }
                    let size = entry.size();
                    if s.zst_size.is_some_and(|z| z != size) {
                        return Err(Error::SizeMismatch {
                            what: format!("{name} of the export"),
                            expected: s.zst_size.unwrap_or_default(),
                            actual: size,
                        });
                    }
                    let work = Work::read(s.clone(), name, &mut entry, size, &shared)?;
                    pool.send(work)?;
                } else {
                    return Err(bad(&name, "not part of a skiff export"));
                }
            }
            pool.close();
            Ok(())
        })?;
        if let Some(e) = shared.error.lock().ok().and_then(|mut e| e.take()) {
            return Err(e);
        }
        report.snapshots_unpacked = shared.unpacked.load(Ordering::SeqCst);
        report.snapshots_reused = reused_early + shared.reused.load(Ordering::SeqCst);

        for img in &manifest.images {
            let rec = &img.record;
            for d in [&rec.config, &rec.manifest] {
                if !blobs_seen.contains(d) && !self.content().contains(d) {
                    return Err(Error::MissingBlob {
                        digest: d.to_string(),
                        what: format!("of image {}, not in the export", rec.id),
                    });
                }
            }
            check_config(self, rec)?;
            check_image_manifest(self, rec)?;
            for l in &rec.layers {
                if self.snapshots().get(&l.chain_id)?.is_none() {
                    return Err(Error::Inconsistent {
                        image: rec.id.to_string(),
                        detail: format!("snapshot {} is not in the export", l.chain_id),
                    });
                }
            }
        }
        for img in &manifest.images {
            // A registry's NAME@DIGEST cannot be checked without that
            // registry's index: the exporting store's claims are not kept.
            let mut record = img.record.clone();
            record.repo_digests.clear();
            if let Some(old) = self.images().get(&record.id)? {
                record.repo_digests = old.repo_digests;
            }
            if self.images().get(&record.id)?.as_ref() != Some(&record) {
                self.images().put(&record)?;
            }
            let tags = self.images().tags_of(&img.record.id)?;
            for r in &img.refs {
                let r = crate::images::normalize_reference(r)?;
                if !tags.contains(&r) {
                    self.images().tag(&r, &img.record.id)?;
                }
            }
            report.images.push(img.record.id.to_string());
        }
        Ok(report)
    }
}

/// The manifest's own consistency: its format, and chain IDs that follow
/// from parents and diff_ids, parents listed first.
fn check_manifest(m: &ExportManifest) -> Result<()> {
    if m.format != FORMAT || !(VERSION_TAR_DIGESTS..=VERSION).contains(&m.version) {
        return Err(bad(
            MANIFEST_ENTRY,
            format!(
                "format {} version {}; this skiff reads {FORMAT} versions \
                 {VERSION_TAR_DIGESTS} to {VERSION}",
                m.format, m.version
            ),
        ));
    }
    for (i, s) in m.snapshots.iter().enumerate() {
        // From version 2 every snapshot's compressed bytes have a digest,
        // and none before: a digest cannot be dropped to skip its check.
        if (m.version >= 2) != (s.zst_digest.is_some() && s.zst_size.is_some()) {
            return Err(bad(
                MANIFEST_ENTRY,
                format!(
                    "snapshots[{i}]: version {} {} zst_digest and zst_size",
                    m.version,
                    if m.version >= 2 { "needs" } else { "has no" }
                ),
            ));
        }
        if Digest::chain(s.parent.as_ref(), &s.diff_id) != s.chain_id {
            return Err(bad(
                MANIFEST_ENTRY,
                format!(
                    "snapshots[{i}]: chain ID {} does not follow from its parent and diff_id",
                    s.chain_id
                ),
            ));
        }
    }
    for (i, img) in m.images.iter().enumerate() {
        let mut parent: Option<&Digest> = None;
        for (k, l) in img.record.layers.iter().enumerate() {
            if Digest::chain(parent, &l.diff_id) != l.chain_id {
                return Err(bad(
                    MANIFEST_ENTRY,
                    format!("images[{i}].record.layers[{k}]: chain ID does not follow"),
                ));
            }
            parent = Some(&l.chain_id);
        }
        if img.record.id != img.record.config {
            return Err(bad(
                MANIFEST_ENTRY,
                format!("images[{i}]: id is not the config digest"),
            ));
        }
    }
    Ok(())
}

/// The image's manifest (verified by its digest when stored) names the
/// record's config and layer blobs: a record cannot borrow another image's
/// manifest, which `NAME@DIGEST` would then find.
fn check_image_manifest(store: &Store, rec: &ImageRecord) -> Result<()> {
    let data = store.content().read(&rec.manifest)?;
    let bad = |detail: String| Error::Inconsistent {
        image: rec.id.to_string(),
        detail: format!("manifest {}: {detail}", rec.manifest),
    };
    let v: serde_json::Value =
        serde_json::from_slice(&data).map_err(|e| bad(format!("not JSON: {e}")))?;
    if v.pointer("/config/digest").and_then(|d| d.as_str()) != Some(&rec.config.to_string()) {
        return Err(bad("its config is not the record's".into()));
    }
    let layers: Vec<&str> = v
        .get("layers")
        .and_then(|l| l.as_array())
        .map(|a| a.iter().filter_map(|l| l.get("digest")?.as_str()).collect())
        .unwrap_or_default();
    let recorded: Vec<String> = rec.layers.iter().map(|l| l.digest.to_string()).collect();
    if layers != recorded.iter().map(String::as_str).collect::<Vec<_>>() {
        return Err(bad("its layers are not the record's".into()));
    }
    Ok(())
}

/// The image's config (verified by its digest when stored) lists the
/// record's diff_ids, so its chain IDs are the image's.
fn check_config(store: &Store, rec: &ImageRecord) -> Result<()> {
    let config = store.content().read(&rec.config)?;
    let v: serde_json::Value = serde_json::from_slice(&config).map_err(|e| Error::BadJson {
        what: format!("config of image {}", rec.id),
        detail: e.to_string(),
    })?;
    let diff_ids: Vec<&str> = v
        .pointer("/rootfs/diff_ids")
        .and_then(|d| d.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    let recorded: Vec<String> = rec.layers.iter().map(|l| l.diff_id.to_string()).collect();
    if diff_ids != recorded.iter().map(String::as_str).collect::<Vec<_>>() {
        return Err(Error::Inconsistent {
            image: rec.id.to_string(),
            detail: "the export's layers are not the config's diff_ids".into(),
        });
    }
    Ok(())
}
