//! The store: its directory layout and the operations that span modules.
//!
//! ```text
//! ROOT/
//!   lock                     flock: shared by importers and lease takers, exclusive for gc
//!   blobs/sha256/<hex>       content store
//!   snapshots/<id>/          one unpacked layer each (short random ids)
//!   meta/snapshots/<chain>.json
//!   meta/images/<config hex>.json
//!   meta/tags/<escaped ref>.json
//!   leases/<name>.lease      held by running jobs (a POSIX lock: see process_lock);
//!                            <name> is the job name, bytes outside [A-Za-z0-9_-] as %XX
//!   locks/<chain hex>        per-snapshot locks for concurrent imports
//!   tmp/<session>{,.lock}    per-import scratch, removed on exit or by the next command
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use crate::content::ContentStore;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use std::io::Write;

use crate::fsutil::{mkdirs, FileLock};
use crate::images::{ImageId, ImageIndex, ImageRecord};
use crate::process_lock::{self, ProcessLock};
use crate::session::{self, Session};
use crate::snapshot::{MountDescription, Snapshotter};

/// The default store root.
pub const DEFAULT_ROOT: &str = "/var/lib/skiff";

/// An opened image store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    content: ContentStore,
    snapshots: Snapshotter,
    images: ImageIndex,
}

impl Store {
    /// Open (creating if needed) the store at `root`, and remove what dead
    /// imports left in `tmp/`.
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        let root = root.as_ref();
        mkdirs(root)?;
        let root = fs::canonicalize(root).ctx("resolve", root)?;
        for sub in [
            "blobs/sha256",
            "snapshots",
            "meta/snapshots",
            "meta/trees",
            "meta/images",
            "meta/tags",
            "leases",
            "locks",
            "tmp",
        ] {
            let p = root.join(sub);
            if !p.is_dir() {
                mkdirs(&p)?;
            }
        }
        let store = Store {
            content: ContentStore::new(root.join("blobs/sha256")),
            snapshots: Snapshotter::new(
                root.join("snapshots"),
                root.join("meta/snapshots"),
                root.join("locks"),
            ),
            images: ImageIndex::new(root.join("meta/images"), root.join("meta/tags")),
            root,
        };
        let cleaned = session::clean_stale(&store.root.join("tmp"))?;
        if cleaned > 0 {
            tracing::info!(
                cleaned,
                "removed stale temporary data of interrupted imports"
            );
        }
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The content store.
    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// The snapshotter.
    pub fn snapshots(&self) -> &Snapshotter {
        &self.snapshots
    }

    /// Image records and tags.
    pub fn images(&self) -> &ImageIndex {
        &self.images
    }

    /// Resolve an image reference (tag, id or id prefix).
    pub fn resolve(&self, reference: &str) -> Result<ImageRecord> {
        self.images.resolve(reference)
    }

    /// The record of an image by its id (no reference is parsed).
    /// [`Error::ImageNotFound`] when no such image is stored (it was
    /// removed since its id was resolved).
    pub fn image(&self, id: &ImageId) -> Result<ImageRecord> {
        self.images
            .get(id.digest())?
            .ok_or_else(|| Error::ImageNotFound(id.to_string()))
    }

    /// The image's configuration (from its verified config blob).
    pub fn image_config(&self, rec: &ImageRecord) -> Result<oci_spec::image::ImageConfiguration> {
        let data = self.content.read(&rec.config)?;
        // Names the field of a damaged config, as at import.
        crate::plan::parse_json(&data, &format!("image config {}", rec.config))
    }

    /// The mount description of an image's root filesystem.
    pub fn mount_description(&self, rec: &ImageRecord) -> Result<MountDescription> {
        self.snapshots.mount_description(&rec.chain())
    }

    /// Take a lease on an image's snapshots for a running job: `gc` keeps
    /// them until the lease is dropped or its holder dies. One lease per
    /// name: a name whose lease a live process holds is refused
    /// ([`Error::LeaseInUse`]); a stale one (its holder died) is replaced.
    ///
    /// An image removed (`image rm` then `image gc`) after the caller read
    /// its record is [`Error::ImageNotFound`]: its snapshots are checked
    /// under the store lock that `gc` takes exclusively, so once the lease
    /// is taken they stay.
    pub fn lease(&self, name: &str, rec: &ImageRecord) -> Result<Lease> {
        let _shared = self.lock_shared()?;
        for c in rec.chain() {
            if self.snapshots.get(&c)?.is_none() {
                return Err(Error::ImageNotFound(format!(
                    "{} (removed while the job was starting: its snapshot {c} is gone)",
                    rec.id
                )));
            }
        }
        let path = self
            .leases_dir()
            .join(format!("{}.lease", lease_file_stem(name)));
        let body = serde_json::to_vec(&LeaseBody {
            image: rec.id.clone(),
            chain: rec.chain(),
        })
        .map_err(|e| Error::CorruptMetadata {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        for _ in 0..2 {
            let file = match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // gc removes stale leases only under the exclusive store
                    // lock; we hold it shared, so decide here.
                    match process_lock::holder(&path) {
                        Ok(Some(pid)) => {
                            return Err(Error::LeaseInUse {
                                name: name.to_string(),
                                pid,
                            })
                        }
                        Ok(None) => {
                            let _ = fs::remove_file(&path);
                            continue;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e).ctx("check lease", &path),
                    }
                }
                Err(e) => return Err(e).ctx("create lease", &path),
            };
            let lock = match ProcessLock::try_acquire(file).ctx("lock lease", &path)? {
                Some(l) => l,
                None => continue,
            };
            let mut file: &fs::File = lock.file();
            let written = file.write_all(&body).and_then(|()| file.sync_data());
            if let Err(e) = written {
                // No empty or partial lease is left behind.
                drop(lock);
                let _ = fs::remove_file(&path);
                return Err(e).ctx("write lease", &path);
            }
            return Ok(Lease { path, _lock: lock });
        }
        Err(Error::LeaseInUse {
            name: name.to_string(),
            pid: 0,
        })
    }

    /// Remove the leases whose holder died (`skiff gc`); returns how many.
    /// Takes the store's exclusive lock, so no lease is being taken meanwhile.
    pub fn remove_stale_leases(&self) -> Result<usize> {
        let _lock = self.lock_exclusive()?;
        let mut removed = 0;
        for (name, path) in crate::fsutil::list_dir(&self.leases_dir())? {
            if name.ends_with(".lease") && matches!(process_lock::holder(&path), Ok(None)) {
                match fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).ctx("remove stale lease", &path),
                }
            }
        }
        Ok(removed)
    }

    pub(crate) fn lock_shared(&self) -> Result<FileLock> {
        FileLock::acquire(&self.root.join("lock"), false)
    }

    pub(crate) fn lock_exclusive(&self) -> Result<FileLock> {
        FileLock::acquire(&self.root.join("lock"), true)
    }

    pub(crate) fn new_session(&self) -> Result<Session> {
        Session::create(&self.root.join("tmp"))
    }

    pub(crate) fn leases_dir(&self) -> PathBuf {
        self.root.join("leases")
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct LeaseBody {
    pub(crate) image: Digest,
    pub(crate) chain: Vec<Digest>,
}

/// A held lease. Dropping it releases the snapshots to `gc`.
#[derive(Debug)]
pub struct Lease {
    path: PathBuf,
    _lock: ProcessLock,
}

/// The lease file name of a job name: bytes outside `[A-Za-z0-9_-]` are
/// written `%XX`, so two names never share a lease (`a.b` is `a%2Eb`).
pub fn lease_file_stem(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
