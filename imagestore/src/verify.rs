//! `image verify`: check the whole store against itself, and optionally
//! remove what is broken so that the next import redoes it.
//!
//! What is checked, under the store's exclusive lock (no import, `rm` or
//! `gc` runs meanwhile):
//! - **blobs**: every `blobs/sha256/<hex>` is re-hashed and must hash to its
//!   name;
//! - **snapshots**: every `meta/snapshots/<chain>.json` must parse, be filed
//!   under its own chain ID, satisfy `chain_id = chain(parent, diff_id)`,
//!   and name an existing directory and blob. The blob is then read once:
//!   its decompressed stream must hash to the recorded `diff_id`, and every
//!   member of its tar must be present in the snapshot directory with the
//!   type (and, for files, the size) that applying it gives. File contents
//!   are not re-hashed: the blob, re-hashed above, is the source of truth;
//! - **images**: every record must parse, be filed under its id, and name
//!   existing, intact manifest, config and layer blobs and snapshots whose
//!   chain IDs follow from the config's `diff_ids`;
//! - **tags**: every tag must parse and name an existing image;
//! - **leftovers**: `.tmp-*` files of interrupted atomic writes, dead import
//!   sessions in `tmp/`, and snapshot directories no metadata names.
//!
//! `repair` removes each broken blob, snapshot, image record and tag, and
//! everything that depends on it (an image whose layer blob was corrupt goes
//! with its tags), plus the leftovers. Healthy data is never touched.

mod layer;

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::digest::{Digest, HashingReader};
use crate::error::Result;
use crate::fsutil::{list_dir, remove_tree};
use crate::images::ImageRecord;
use crate::plan::{chain_ids, classify_config, ConfigKind};
use crate::session;
use crate::snapshot::SnapshotInfo;
use crate::store::Store;

/// The kind of thing a [`Problem`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// A blob in `blobs/sha256/`.
    Blob,
    /// A snapshot (its metadata or its directory).
    Snapshot,
    /// An image record.
    Image,
    /// A tag.
    Tag,
    /// A leftover of an interrupted operation.
    Leftover,
}

/// One thing found wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// What it is about.
    pub subject: Subject,
    /// The blob digest, chain ID, image id or tag concerned.
    pub name: String,
    /// The file or directory concerned.
    pub path: PathBuf,
    /// What is wrong.
    pub detail: String,
    /// Whether `--repair` removed it.
    pub repaired: bool,
}

/// What `verify` found (and, with repair, removed).
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Blobs re-hashed.
    pub blobs_checked: usize,
    /// Snapshots checked.
    pub snapshots_checked: usize,
    /// Image records checked.
    pub images_checked: usize,
    /// Tags checked.
    pub tags_checked: usize,
    /// Damage: broken blobs, snapshots, records or tags.
    pub problems: Vec<Problem>,
    /// Leftovers of interrupted operations (not damage; `gc` removes them too).
    pub leftovers: Vec<Problem>,
}

impl VerifyReport {
    /// Whether the store is damaged (leftovers do not count).
    pub fn damaged(&self) -> bool {
        !self.problems.is_empty()
    }
}

/// Everything to remove, gathered before anything is removed.
#[derive(Default)]
struct Doomed {
    blobs: HashSet<Digest>,
    snapshots: HashSet<Digest>,
    images: HashSet<Digest>,
}

impl Store {
    /// Check the store; with `repair`, remove what is broken and the leftovers.
    pub fn verify(&self, repair: bool) -> Result<VerifyReport> {
        let _lock = self.lock_exclusive()?;
        let mut report = VerifyReport::default();
        let mut doomed = Doomed::default();
        let root = self.root().to_path_buf();

        self.find_leftovers(&mut report)?;

        // Blobs: names and content.
        let mut bad_blobs: HashSet<Digest> = HashSet::new();
        let mut blob_set: HashSet<Digest> = HashSet::new();
        let blob_dir = root.join("blobs/sha256");
        for (name, path) in list_dir(&blob_dir)? {
            if name.starts_with(".tmp-") {
                continue;
            }
            let Ok(d) = Digest::from_hex(&name) else {
                continue;
            };
            report.blobs_checked += 1;
            blob_set.insert(d.clone());
            if let Some(detail) = check_blob(&path, &d) {
                report
                    .problems
                    .push(problem(Subject::Blob, &d, &path, detail));
                bad_blobs.insert(d.clone());
                doomed.blobs.insert(d);
            }
        }
        let blob_ok = |d: &Digest| blob_set.contains(d) && !bad_blobs.contains(d);

        // Snapshots.
        let meta_dir = root.join("meta/snapshots");
        let mut snaps: HashMap<Digest, SnapshotInfo> = HashMap::new();
        let mut known_dirs: HashSet<String> = HashSet::new();
        for (name, path) in list_dir(&meta_dir)? {
            let Some(hex) = name.strip_suffix(".json") else {
                continue;
            };
            let Ok(chain) = Digest::from_hex(hex) else {
                continue;
            };
            report.snapshots_checked += 1;
            let info = match read_json::<SnapshotInfo>(&path) {
                Ok(i) => i,
                Err(detail) => {
                    report.problems.push(problem(
                        Subject::Snapshot,
                        &chain,
                        &path,
                        format!("metadata unreadable: {detail}"),
                    ));
                    doomed.snapshots.insert(chain);
                    continue;
                }
            };
            known_dirs.insert(info.dir.clone());
            let dir = self.snapshots().path(&info);
            let detail = if info.chain_id != chain {
                Some(format!(
                    "metadata filed under {chain} describes {}",
                    info.chain_id
                ))
            } else if Digest::chain(info.parent.as_ref(), &info.diff_id) != chain {
                Some(format!(
                    "chain ID does not follow from parent {:?} and diff_id {}",
                    info.parent, info.diff_id
                ))
            } else if info.dir.is_empty() || info.dir.contains('/') || info.dir.starts_with('.') {
                Some(format!("directory name {:?} is not a plain name", info.dir))
            } else if !dir.is_dir() || dir.is_symlink() {
                Some(format!("directory {} is missing", dir.display()))
            } else if !info.blob_kept {
                // A plain layer: no blob, the tree recorded at import.
                check_tree(&self.snapshots().tree_path(&chain), &dir)
            } else if !blob_set.contains(&info.blob) {
                Some(format!("its blob {} is missing", info.blob))
            } else if bad_blobs.contains(&info.blob) {
                Some(format!("its blob {} is corrupt", info.blob))
            } else {
                layer::check(&self.content().path(&info.blob), &info, &dir)
                    .err()
                    .map(|e| e.to_string())
            };
            if let Some(detail) = detail {
                report.problems.push(Problem {
                    subject: Subject::Snapshot,
                    name: chain.to_string(),
                    path: dir,
                    detail,
                    repaired: false,
                });
                doomed.snapshots.insert(chain.clone());
            }
            snaps.insert(chain, info);
        }
        for (name, path) in list_dir(&root.join("snapshots"))? {
            if !known_dirs.contains(&name) {
                report.leftovers.push(Problem {
                    subject: Subject::Leftover,
                    name,
                    path,
                    detail: "snapshot directory that no metadata names".into(),
                    repaired: false,
                });
            }
        }

        // Image records.
        let mut images: HashSet<Digest> = HashSet::new();
        for (name, path) in list_dir(&root.join("meta/images"))? {
            let Some(hex) = name.strip_suffix(".json") else {
                continue;
            };
            let Ok(id) = Digest::from_hex(hex) else {
                continue;
            };
            report.images_checked += 1;
            images.insert(id.clone());
            let detail = match read_json::<ImageRecord>(&path) {
                Err(detail) => Some(format!("record unreadable: {detail}")),
                Ok(rec) => check_image(&rec, &id, &blob_ok, &snaps, &doomed.snapshots, self),
            };
            if let Some(detail) = detail {
                report
                    .problems
                    .push(problem(Subject::Image, &id, &path, detail));
                doomed.images.insert(id);
            }
        }

        // Tags.
        let mut bad_tags: Vec<PathBuf> = Vec::new();
        for (name, path) in list_dir(&root.join("meta/tags"))? {
            if !name.ends_with(".json") || name.starts_with('.') {
                continue;
            }
            report.tags_checked += 1;
            let detail = match read_json::<TagBody>(&path) {
                Err(detail) => Some((name.clone(), format!("tag unreadable: {detail}"))),
                Ok(t) if !images.contains(&t.id) => Some((
                    t.reference.clone(),
                    format!("names image {}, which is not in the store", t.id),
                )),
                Ok(t) if doomed.images.contains(&t.id) => Some((
                    t.reference.clone(),
                    format!("names image {}, which is broken", t.id),
                )),
                Ok(_) => None,
            };
            if let Some((tag, detail)) = detail {
                report.problems.push(Problem {
                    subject: Subject::Tag,
                    name: tag,
                    path: path.clone(),
                    detail,
                    repaired: false,
                });
                bad_tags.push(path);
            }
        }

        if repair {
            self.repair(&mut report, &doomed, &snaps, &bad_tags)?;
        }
        Ok(report)
    }

    /// Stale `.tmp-*` files and dead import sessions. Under the exclusive
    /// lock no writer is running, so every `.tmp-*` file is stale.
    fn find_leftovers(&self, report: &mut VerifyReport) -> Result<()> {
        let temp = stale_temp_files(self.root())?
            .into_iter()
            .map(|p| (p, "temporary file of an interrupted write"));
        let sessions = session::stale(&self.root().join("tmp"))?
            .into_iter()
            .map(|p| (p, "import session whose process is gone"));
        let trees = self
            .snapshots()
            .orphan_trees()?
            .into_iter()
            .map(|p| (p, "recorded tree of no snapshot (an interrupted import)"));
        for (path, detail) in temp.chain(sessions).chain(trees) {
            report.leftovers.push(Problem {
                subject: Subject::Leftover,
                name: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                detail: detail.into(),
                path,
                repaired: false,
            });
        }
        Ok(())
    }

    /// Remove what `verify` found broken, dependants first, then leftovers.
    fn repair(
        &self,
        report: &mut VerifyReport,
        doomed: &Doomed,
        snaps: &HashMap<Digest, SnapshotInfo>,
        bad_tags: &[PathBuf],
    ) -> Result<()> {
        // Images first (with their tags), so nothing visible names what goes next.
        let tags = self.images().tags().unwrap_or_default();
        for id in &doomed.images {
            for (reference, target) in &tags {
                if target == id {
                    self.images().untag(reference)?;
                }
            }
            self.images().remove(id)?;
        }
        for path in bad_tags {
            remove_file(path)?;
        }
        for chain in &doomed.snapshots {
            match snaps.get(chain) {
                Some(info) => self.snapshots().remove(info)?,
                // Unreadable metadata: its directory becomes an orphan, removed below.
                None => remove_file(
                    &self
                        .root()
                        .join(format!("meta/snapshots/{}.json", chain.hex())),
                )?,
            }
        }
        for d in &doomed.blobs {
            self.content().remove(d)?;
        }
        for p in report.problems.iter_mut() {
            p.repaired = true;
        }
        // Leftovers, including snapshot dirs orphaned by the removals above.
        for p in report.leftovers.iter_mut() {
            remove_any(&p.path)?;
            p.repaired = true;
        }
        session::clean_stale(&self.root().join("tmp"))?;
        for dir in self.snapshots().orphan_dirs()? {
            remove_tree(&dir)?;
        }
        Ok(())
    }
}

#[derive(serde::Deserialize)]
struct TagBody {
    reference: String,
    id: Digest,
}

/// `.tmp-*` files left by interrupted atomic writes in the store's
/// metadata and blob directories. Only stale under the exclusive lock.
pub(crate) fn stale_temp_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for sub in [
        "blobs/sha256",
        "meta/snapshots",
        "meta/trees",
        "meta/images",
        "meta/tags",
        "leases",
    ] {
        for (name, path) in list_dir(&root.join(sub))? {
            if name.starts_with(".tmp-") {
                out.push(path);
            }
        }
    }
    Ok(out)
}

fn problem(subject: Subject, name: &Digest, path: &Path, detail: String) -> Problem {
    Problem {
        subject,
        name: name.to_string(),
        path: path.to_path_buf(),
        detail,
        repaired: false,
    }
}

/// Re-hash a blob; `Some(reason)` when it is not intact.
fn check_blob(path: &Path, d: &Digest) -> Option<String> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => return Some(format!("cannot stat: {e}")),
    };
    if !meta.is_file() {
        return Some("not a regular file".into());
    }
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return Some(format!("cannot open: {e}")),
    };
    let mut h = HashingReader::new(BufReader::with_capacity(1 << 20, file));
    if let Err(e) = io::copy(&mut h, &mut io::sink()) {
        return Some(format!("cannot read: {e}"));
    }
    let (actual, size, _) = h.finish();
    (&actual != d).then(|| format!("content ({size} bytes) hashes to {actual}"))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::result::Result<T, String> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|f| f.take(crate::source::MAX_JSON + 1).read_to_end(&mut data))
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&data).map_err(|e| e.to_string())
}

/// Check one image record; `Some(reason)` when it is broken.
fn check_image(
    rec: &ImageRecord,
    id: &Digest,
    blob_ok: &dyn Fn(&Digest) -> bool,
    snaps: &HashMap<Digest, SnapshotInfo>,
    bad_snaps: &HashSet<Digest>,
    store: &Store,
) -> Option<String> {
    if &rec.id != id || rec.config != rec.id {
        return Some(format!(
            "record filed under {id} describes image {} with config {}",
            rec.id, rec.config
        ));
    }
    for (what, d) in [("manifest", &rec.manifest), ("config", &rec.config)] {
        if !blob_ok(d) {
            return Some(format!("its {what} blob {d} is missing or corrupt"));
        }
    }
    for l in &rec.layers {
        let kept = snaps.get(&l.chain_id).is_none_or(|i| i.blob_kept);
        if kept && !blob_ok(&l.digest) {
            return Some(format!("its layer blob {} is missing or corrupt", l.digest));
        }
        if !snaps.contains_key(&l.chain_id) || bad_snaps.contains(&l.chain_id) {
            return Some(format!(
                "its snapshot {} (layer {}) is missing or broken",
                l.chain_id, l.diff_id
            ));
        }
    }
    let config = match store.content().read(&rec.config) {
        Ok(c) => c,
        Err(e) => return Some(format!("config {}: {e}", rec.config)),
    };
    let diff_ids = match classify_config(&config, &format!("image config {}", rec.config)) {
        Ok(ConfigKind::Image(_, d)) => d,
        // Another kind of config over tar layers (Helm's): import took the
        // diff_ids from the layers, so the record's own are the reference.
        Ok(ConfigKind::NotImage(_)) => rec.layers.iter().map(|l| l.diff_id.clone()).collect(),
        Err(e) => return Some(e.to_string()),
    };
    let recorded: Vec<&Digest> = rec.layers.iter().map(|l| &l.diff_id).collect();
    if diff_ids.iter().collect::<Vec<_>>() != recorded {
        return Some("its layers' diff_ids differ from its config's".into());
    }
    if chain_ids(&diff_ids) != rec.chain() {
        return Some("its layers' chain IDs do not follow from the diff_ids".into());
    }
    None
}

fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(crate::error::Error::io("remove", path, e)),
    }
}

fn remove_any(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => remove_tree(path),
        Ok(_) => remove_file(path),
        Err(_) => Ok(()),
    }
}

/// Check the snapshot `dir` against the tree recorded in `tree`: what is
/// wrong, if anything.
fn check_tree(tree: &Path, dir: &Path) -> Option<String> {
    let data = match fs::read(tree) {
        Ok(d) => d,
        Err(e) => return Some(format!("its recorded tree {}: {e}", tree.display())),
    };
    match crate::snapshot_tree::decode(&data) {
        Err(e) => Some(format!("its recorded tree {}: {e}", tree.display())),
        Ok(t) => layer::compare(&t, dir).err().map(|e| e.to_string()),
    }
}
