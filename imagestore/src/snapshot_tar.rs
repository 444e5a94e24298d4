//! A snapshot written back as a layer tar, for a store export: the
//! applier (`apply.rs`) unpacks it to the same tree. Overlayfs forms turn
//! back into the layer forms the applier takes: a 0/0 character device
//! becomes `.wh.NAME`, an opaque directory gets `.wh..wh..opq`. Owners,
//! modes, mtimes, xattrs (as PAX `SCHILY.xattr.*`, except overlayfs's own)
//! and hardlinks (as links to the first path of the inode) are kept.
//! Entries come in name order, so the same snapshot gives the same tar.
//!
//! The result is not the layer the snapshot was unpacked from (tar
//! serialisation is not canonical): it does not hash to the layer's
//! diff_id, and an export records its own digest of it.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::apply::OPAQUE_XATTR;

/// What a snapshot's tar holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotTarStats {
    /// Entries written (whiteouts and opaque markers included).
    pub entries: u64,
    /// Bytes of file content.
    pub content_bytes: u64,
}

/// Write the snapshot directory `dir` to `out` as a layer tar.
pub fn write_snapshot_tar<W: Write>(dir: &Path, out: W) -> io::Result<SnapshotTarStats> {
    let mut w = Writer {
        tar: tar::Builder::new(out),
        root: dir.to_path_buf(),
        inodes: HashMap::new(),
        stats: SnapshotTarStats::default(),
    };
    let m = fs::symlink_metadata(dir)?;
    w.dir_entry(Path::new("."), dir, &m)?;
    w.walk(Path::new(""))?;
    w.tar.into_inner()?.flush()?;
    Ok(w.stats)
}

struct Writer<W: Write> {
    tar: tar::Builder<W>,
    root: PathBuf,
    /// (device, inode) of files with several links → the first path.
    inodes: HashMap<(u64, u64), PathBuf>,
    stats: SnapshotTarStats,
}

impl<W: Write> Writer<W> {
    fn walk(&mut self, rel: &Path) -> io::Result<()> {
        let full = self.root.join(rel);
        let mut names: Vec<_> = fs::read_dir(&full)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            let rel = rel.join(&name);
            let path = self.root.join(&rel);
            let m = fs::symlink_metadata(&path)?;
            let t = m.file_type();
            if t.is_dir() {
                self.dir_entry(&rel, &path, &m)?;
                self.walk(&rel)?;
            } else if t.is_char_device() && m.rdev() == 0 {
                let mut wh = name.as_bytes().to_vec();
                wh.splice(0..0, b".wh.".iter().copied());
                let wh = rel.with_file_name(std::ffi::OsStr::from_bytes(&wh));
                self.marker(&wh)?;
            } else if t.is_file() {
                self.file_entry(&rel, &path, &m)?;
            } else if t.is_symlink() {
                let mut h = header(tar::EntryType::Symlink, &m, 0);
                self.xattrs(&path)?;
                let target = fs::read_link(&path)?;
                self.tar.append_link(&mut h, &rel, &target)?;
                self.stats.entries += 1;
            } else if t.is_fifo() {
                let mut h = header(tar::EntryType::Fifo, &m, 0);
                self.xattrs(&path)?;
                self.tar.append_data(&mut h, &rel, io::empty())?;
                self.stats.entries += 1;
            }
            // Other device nodes: the applier skips them, so no snapshot
            // holds one.
        }
        Ok(())
    }

    fn dir_entry(&mut self, rel: &Path, path: &Path, m: &fs::Metadata) -> io::Result<()> {
        let mut h = header(tar::EntryType::Directory, m, 0);
        self.xattrs(path)?;
        self.tar.append_data(&mut h, rel, io::empty())?;
        self.stats.entries += 1;
        if xattr::get(path, OPAQUE_XATTR)?.as_deref() == Some(b"y") {
            self.marker(&rel.join(".wh..wh..opq"))?;
        }
        Ok(())
    }

    fn file_entry(&mut self, rel: &Path, path: &Path, m: &fs::Metadata) -> io::Result<()> {
        if m.nlink() > 1 {
            let key = (m.dev(), m.ino());
            if let Some(first) = self.inodes.get(&key) {
                let mut h = header(tar::EntryType::Link, m, 0);
                self.tar.append_link(&mut h, rel, first)?;
                self.stats.entries += 1;
                return Ok(());
            }
            self.inodes.insert(key, rel.to_path_buf());
        }
        let mut h = header(tar::EntryType::Regular, m, m.len());
        self.xattrs(path)?;
        let f = File::open(path)?;
        self.tar.append_data(&mut h, rel, f)?;
        self.stats.entries += 1;
        self.stats.content_bytes += m.len();
        Ok(())
    }

    /// An empty, root-owned marker entry (a whiteout or opaque marker).
    fn marker(&mut self, rel: &Path) -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(0);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        self.tar.append_data(&mut h, rel, io::empty())?;
        self.stats.entries += 1;
        Ok(())
    }

    /// The xattrs of `path` (not overlayfs's own) as a PAX header for the
    /// entry that follows.
    fn xattrs(&mut self, path: &Path) -> io::Result<()> {
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        for name in xattr::list(path)? {
            let name = name.to_string_lossy().into_owned();
            if name.starts_with("trusted.overlay.") {
                continue;
            }
            if let Some(v) = xattr::get(path, &name)? {
                pax.push((format!("SCHILY.xattr.{name}"), v));
            }
        }
        if !pax.is_empty() {
            self.tar
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        }
        Ok(())
    }
}

fn header(kind: tar::EntryType, m: &fs::Metadata, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(m.mode() & 0o7777);
    h.set_uid(u64::from(m.uid()));
    h.set_gid(u64::from(m.gid()));
    h.set_mtime(m.mtime().max(0) as u64);
    h
}
