//! The seed's snapshot unpackers: the seed reads its one stream on one
//! thread and hands each snapshot's compressed tar to a pool of threads
//! that decompress, unpack and commit it, so snapshots unpack in parallel
//! as an import's layers do. The reading thread hashes each compressed
//! entry as it reads it (version 2 exports), so a tampered snapshot is
//! refused before it is unpacked; a version 1 export's tar is hashed as it
//! unpacks. Snapshots wait in memory while their sizes fit
//! [`MEMORY_BUDGET`] together, the others in files of the session. A
//! panicking unpacker is an error, not a hang.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

use crate::apply::apply_layer;
use crate::digest::{Digest, HashingReader};
use crate::error::{Error, IoContext, Result};
use crate::export::ExportedSnapshot;
use crate::session::Session;
use crate::snapshot::SnapshotInfo;
use crate::store::Store;

/// Compressed snapshot bytes held in memory at once, at most; a snapshot
/// that does not fit what is left waits in a file.
const MEMORY_BUDGET: u64 = 256 << 20;

/// One snapshot to unpack: its manifest entry, its export entry's name, and
/// its compressed bytes.
pub(crate) struct Work {
    pub snapshot: ExportedSnapshot,
    pub name: String,
    body: Body,
    /// The compressed bytes hashed to the manifest's digest already.
    verified: bool,
}

enum Body {
    Memory(Held),
    File(PathBuf),
}

/// Compressed bytes held in memory, counted against [`MEMORY_BUDGET`]
/// until dropped, whichever way the seed goes.
struct Held {
    data: Vec<u8>,
    budget: Arc<AtomicU64>,
}

impl Held {
    fn new(data: Vec<u8>, budget: &Arc<AtomicU64>) -> Held {
        budget.fetch_add(data.len() as u64, Ordering::SeqCst);
        Held {
            data,
            budget: budget.clone(),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget
            .fetch_sub(self.data.len() as u64, Ordering::SeqCst);
    }
}

impl Work {
    /// Read an export entry's bytes (`size` of them) off the stream,
    /// hashing them, and check them against the manifest's compressed
    /// digest when it has one.
    pub(crate) fn read<R: Read>(
        snapshot: ExportedSnapshot,
        name: String,
        entry: &mut R,
        size: u64,
        shared: &Shared<'_>,
    ) -> Result<Work> {
        let read_err = |source| Error::ReadArchive {
            what: name.clone(),
            source,
        };
        let mut hasher = Sha256::new();
        let held = shared.in_memory.load(Ordering::SeqCst);
        let body = if held.saturating_add(size) <= MEMORY_BUDGET {
            let mut data = Vec::with_capacity(size as usize);
            entry.take(size).read_to_end(&mut data).map_err(read_err)?;
            hasher.update(&data);
            Body::Memory(Held::new(data, &shared.in_memory))
        } else {
            let path = shared.session.temp_path("seed-tar");
            let mut f = File::create(&path).ctx("create", &path)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = entry.read(&mut buf).map_err(read_err)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                f.write_all(&buf[..n]).ctx("write", &path)?;
            }
            Body::File(path)
        };
        let verified = match &snapshot.zst_digest {
            None => false,
            Some(expected) => {
                let actual = Digest::from_hex(&hex::encode(hasher.finalize()))?;
                if &actual != expected {
                    return Err(Error::DigestMismatch {
                        what: format!("{name} of the export (its compressed bytes)"),
                        expected: expected.to_string(),
                        actual: actual.to_string(),
                    });
                }
                true
            }
        };
        Ok(Work {
            snapshot,
            name,
            body,
            verified,
        })
    }
}

/// Unpackers running for one seed.
pub(crate) struct Pool<'a> {
    tx: Option<SyncSender<Work>>,
    error: &'a Mutex<Option<Error>>,
}

/// What the unpackers share.
pub(crate) struct Shared<'a> {
    pub store: &'a Store,
    pub session: &'a Session,
    pub unpacked: AtomicUsize,
    pub reused: AtomicUsize,
    /// Compressed bytes of the snapshots held in memory.
    in_memory: Arc<AtomicU64>,
    pub error: Mutex<Option<Error>>,
    rx: Mutex<Receiver<Work>>,
}

impl<'a> Shared<'a> {
    /// The unpackers' shared state, and the queue's sending end.
    pub(crate) fn new(store: &'a Store, session: &'a Session) -> (Self, SyncSender<Work>) {
        let (tx, rx) = sync_channel::<Work>(1);
        (
            Shared {
                store,
                session,
                unpacked: AtomicUsize::new(0),
                reused: AtomicUsize::new(0),
                in_memory: Arc::new(AtomicU64::new(0)),
                error: Mutex::new(None),
                rx: Mutex::new(rx),
            },
            tx,
        )
    }
}

impl<'a> Pool<'a> {
    /// Start `n` unpackers in `scope`, fed through `tx`.
    pub(crate) fn start<'scope, 'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        shared: &'a Shared<'env>,
        tx: SyncSender<Work>,
        n: usize,
    ) -> Pool<'a>
    where
        'a: 'scope,
    {
        for _ in 0..n.max(1) {
            scope.spawn(move || loop {
                let work = match shared.rx.lock() {
                    Ok(r) => r.recv(),
                    Err(_) => return,
                };
                let Ok(work) = work else { return };
                if shared.error.lock().map(|e| e.is_some()).unwrap_or(true) {
                    continue;
                }
                let r =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unpack(shared, work)))
                        .unwrap_or_else(|_| {
                            Err(Error::Inconsistent {
                                image: "-".into(),
                                detail: "a snapshot unpacker panicked".into(),
                            })
                        });
                if let Err(e) = r {
                    if let Ok(mut slot) = shared.error.lock() {
                        slot.get_or_insert(e);
                    }
                }
            });
        }
        Pool {
            tx: Some(tx),
            error: &shared.error,
        }
    }

    /// Queue a snapshot; an error when an unpacker has failed already.
    pub(crate) fn send(&self, work: Work) -> Result<()> {
        self.failed()?;
        if let Some(tx) = &self.tx {
            // Unpackers only stop once the sender is dropped.
            let _ = tx.send(work);
        }
        Ok(())
    }

    /// Whether an unpacker has failed (its error, taken).
    pub(crate) fn failed(&self) -> Result<()> {
        match self.error.lock().ok().and_then(|mut e| e.take()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Let the unpackers finish what is queued.
    pub(crate) fn close(&mut self) {
        self.tx = None;
    }
}

/// Unpack one snapshot unless the store has it, and commit it once its
/// tar's size (and, unless its compressed bytes were checked already, its
/// digest) are the manifest's.
fn unpack(shared: &Shared<'_>, work: Work) -> Result<()> {
    let Work {
        snapshot: s,
        name,
        body,
        verified,
    } = work;
    let store = shared.store;
    let _lock = store.snapshots().lock_chain(&s.chain_id)?;
    if store.snapshots().get(&s.chain_id)?.is_some() {
        shared.reused.fetch_add(1, Ordering::SeqCst);
        return Ok(());
    }
    let read_err = |source| Error::ReadArchive {
        what: format!("{name} of the export"),
        source,
    };
    let input: Box<dyn Read> = match &body {
        Body::Memory(held) => Box::new(io::Cursor::new(&held.data)),
        Body::File(p) => Box::new(File::open(p).ctx("open", p)?),
    };
    let tmp = shared.session.temp_path("seed");
    fs::create_dir(&tmp).ctx("create", &tmp)?;
    let decoder = zstd::Decoder::new(input).map_err(read_err)?;
    let mut tar = Counted::new(decoder.take(s.tar_size.saturating_add(1)), !verified);
    apply_layer(&mut tar, &tmp).map_err(|source| Error::Apply {
        layer: format!("{} ({name} of the export)", s.diff_id),
        source,
    })?;
    let (digest, size) = tar.finish().map_err(read_err)?;
    if let Body::File(p) = &body {
        let _ = fs::remove_file(p);
    }
    if size != s.tar_size {
        return Err(Error::SizeMismatch {
            what: format!("{name} of the export"),
            expected: s.tar_size,
            actual: size,
        });
    }
    if let Some(digest) = digest.filter(|d| d != &s.tar_digest) {
        return Err(Error::DigestMismatch {
            what: format!("{name} of the export (its tar)"),
            expected: s.tar_digest.to_string(),
            actual: digest.to_string(),
        });
    }
    store.snapshots().commit(
        &tmp,
        SnapshotInfo {
            chain_id: s.chain_id.clone(),
            parent: s.parent.clone(),
            diff_id: s.diff_id.clone(),
            dir: String::new(),
            blob: s.blob.clone(),
            blob_media_type: s.blob_media_type.clone(),
            blob_size: s.blob_size,
            unpacked_size: s.unpacked_size,
            blob_kept: false,
        },
    )?;
    shared.unpacked.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// A snapshot's tar as it is unpacked: counted, and hashed when asked.
enum Counted<R> {
    Hashed(HashingReader<R>),
    Plain(R, u64),
}

impl<R: Read> Counted<R> {
    fn new(inner: R, hash: bool) -> Self {
        if hash {
            Counted::Hashed(HashingReader::new(inner))
        } else {
            Counted::Plain(inner, 0)
        }
    }

    /// Read what the applier left, then the digest (when hashed) and size.
    fn finish(mut self) -> io::Result<(Option<Digest>, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(match self {
            Counted::Hashed(h) => {
                let (d, n, _) = h.finish();
                (Some(d), n)
            }
            Counted::Plain(_, n) => (None, n),
        })
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Counted::Hashed(h) => h.read(buf),
            Counted::Plain(r, n) => {
                let k = r.read(buf)?;
                *n += k as u64;
                Ok(k)
            }
        }
    }
}
