//! Output of timed runs is renamed aside, never deleted just before a
//! timed run.
//!
//! On this project's disks `/` is ext4 *without a journal*. In that mode
//! ext4's inode allocator skips inodes freed less than 60 s ago (300 s more
//! while their inode-table block is still dirty): `recently_deleted()` in
//! `fs/ext4/ialloc.c`. Right after a bulk `rm -rf`, creating files therefore
//! scans past thousands of recently freed inodes and is several times
//! slower: a `tar -x` that takes 0.65 s took 4.1 s right after deleting
//! 1 GB, and recovered about 70 s later (see `docs/bench.md`). A benchmark
//! that cleans up between rounds measures that instead of the importer.
//!
//! The 300 s extension matters in practice: the next run's new files dirty
//! the very inode-table blocks that hold the freed inodes, so after a bulk
//! delete file creation stays slow for up to about 6 minutes (measured:
//! `docs/bench.md`).
//!
//! So every run writes into a fresh directory, moves it into a trash
//! directory with one `rename`, and the trash is emptied only after the last
//! timed run, then `sync`. A stamp records when that delete ended and how
//! many entries it freed, so that the next run can wait for the window to
//! pass before timing anything.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, IoContext, Result};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Move `path` (if it exists) into `trash` under a unique name. O(1).
pub fn set_aside(path: &Path, trash: &Path) -> Result<()> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    fs::create_dir_all(trash).ctx("create", trash)?;
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "x".into());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dst = trash.join(format!("{base}.{}.{nanos}.{n}", std::process::id()));
    fs::rename(path, &dst).ctx("move aside", path)
}

/// Mount points at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(dir) = fs::canonicalize(dir) else {
        return Vec::new();
    };
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(runtime::mountinfo::unescape(m)))
        .filter(|m| m.starts_with(&dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Detach whatever a contender left mounted under `dir` (podman's storage
/// may make its root a mount point). Returns the ones that would not go.
pub fn unmount_under(dir: &Path) -> Vec<PathBuf> {
    let mut stuck = Vec::new();
    for m in mounts_under(dir) {
        if let Err(e) = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(mount = %m.display(), error = %e, "cannot unmount");
            stuck.push(m);
        }
    }
    stuck
}

/// What emptying the trash did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Emptied {
    /// Directory entries (inodes) deleted.
    pub entries: u64,
    /// How long it took.
    pub took: Duration,
}

/// A bulk delete stamped in the work directory.
#[derive(Debug, Clone, Copy)]
pub struct LastDelete {
    /// How long ago it ended.
    pub ago: Duration,
    /// Directory entries it freed.
    pub entries: u64,
}

/// Delete a tree, counting the entries removed. Never crosses into a
/// mount point (its caller unmounted those, or refused).
fn remove_tree(path: &Path) -> io::Result<u64> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        fs::remove_file(path)?;
        return Ok(1);
    }
    let mut n = 0;
    for e in fs::read_dir(path)? {
        n += remove_tree(&e?.path())?;
    }
    fs::remove_dir(path)?;
    Ok(n + 1)
}

/// Delete everything in `trash` (unmounting leftovers first), `sync`, and
/// stamp the time and the number of entries freed in `stamp`.
pub fn empty(trash: &Path, stamp: &Path) -> Result<Emptied> {
    let start = std::time::Instant::now();
    let entries = match fs::read_dir(trash) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Emptied::default()),
        Err(e) => return Err(Error::io("read", trash, e)),
    };
    let stuck = unmount_under(trash);
    let mut count = 0;
    for e in entries {
        let e = e.ctx("read", trash)?;
        let p = e.path();
        if stuck.iter().any(|m| m.starts_with(&p)) {
            tracing::warn!(path = %p.display(), "left in place: a mount below it would not go");
            continue;
        }
        count += remove_tree(&p).ctx("delete", &p)?;
    }
    if count > 0 {
        // Clean inode-table blocks: ext4 then skips the freed inodes for
        // 60 s rather than 360 s, as long as nothing dirties those blocks.
        nix::unistd::sync();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if let Some(parent) = stamp.parent() {
            fs::create_dir_all(parent).ctx("create", parent)?;
        }
        fs::write(stamp, format!("{now} {count}\n")).ctx("write", stamp)?;
    }
    Ok(Emptied {
        entries: count,
        took: start.elapsed(),
    })
}

/// The last bulk delete stamped in `stamp`.
pub fn last_delete(stamp: &Path) -> Option<LastDelete> {
    let text = fs::read_to_string(stamp).ok()?;
    let mut it = text.split_whitespace();
    let secs: u64 = it.next()?.parse().ok()?;
    let entries: u64 = it.next().and_then(|n| n.parse().ok()).unwrap_or(u64::MAX);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(LastDelete {
        ago: Duration::from_secs(now.saturating_sub(secs)),
        entries,
    })
}

/// Drop the page cache of every regular file under `path` (after `sync`,
/// so that the pages are clean), without following symlinks. Run output
/// evicted this way leaves the next run as much free memory as this one
/// had, instead of making it reclaim the cache (direct reclaim is charged
/// to whoever allocates, i.e. to the next contender). Returns files evicted.
pub fn evict(path: &Path) -> u64 {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        let Ok(rd) = fs::read_dir(path) else {
            return 0;
        };
        return rd.flatten().map(|e| evict(&e.path())).sum();
    }
    if !meta.is_file() || meta.len() == 0 {
        return 0;
    }
    let Ok(f) = fs::File::options()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
    else {
        return 0;
    };
    let advice = nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED;
    u64::from(nix::fcntl::posix_fadvise(f.as_raw_fd(), 0, 0, advice).is_ok())
}

/// Time `n` empty-file creations in a new directory `dir`: a cheap probe
/// of the inode allocator (slow right after bulk deletes).
pub fn probe_creates(dir: &Path, n: usize) -> Result<Duration> {
    fs::create_dir(dir).ctx("create", dir)?;
    let start = std::time::Instant::now();
    for i in 0..n {
        let p = dir.join(format!("f{i}"));
        fs::File::create(&p).ctx("create", &p)?;
    }
    Ok(start.elapsed())
}

/// Total size in bytes of what lies under `path` (not following symlinks).
pub fn du(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        if let Ok(rd) = fs::read_dir(path) {
            for e in rd.flatten() {
                total += du(&e.path());
            }
        }
    }
    total
}

/// Free bytes on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    Some(s.blocks_available() * s.fragment_size())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape() {
        assert_eq!(runtime::mountinfo::unescape(r"/a\040b"), "/a b");
        assert_eq!(runtime::mountinfo::unescape(r"/plain"), "/plain");
        assert_eq!(runtime::mountinfo::unescape(r"/x\\"), r"/x\\");
    }

    #[test]
    fn aside_then_empty() {
        let d = tempfile::tempdir().expect("tempdir");
        let out = d.path().join("out");
        fs::create_dir_all(out.join("deep/er")).expect("mkdir");
        fs::write(out.join("deep/er/f"), b"x").expect("write");
        let trash = d.path().join("trash");
        set_aside(&out, &trash).expect("aside");
        assert!(!out.exists());
        set_aside(&out, &trash).expect("absent is fine");
        let stamp = d.path().join("stamp");
        let e = empty(&trash, &stamp).expect("empty");
        assert_eq!(e.entries, 4, "out, deep, er and f");
        assert_eq!(fs::read_dir(&trash).expect("trash").count(), 0);
        let last = last_delete(&stamp).expect("stamped");
        assert_eq!(last.entries, 4);
        assert!(last.ago.as_secs() < 60);
        assert!(probe_creates(&d.path().join("probe"), 10).is_ok());
        fs::write(d.path().join("probe/data"), b"data").expect("write");
        assert_eq!(evict(&d.path().join("probe")), 1, "only non-empty files");
    }
}
