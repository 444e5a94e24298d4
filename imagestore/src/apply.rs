//! The layer applier: unpack one layer tar into an empty snapshot directory,
//! converting whiteouts to overlayfs form.
//!
//! Every name in the archive is hostile until resolved inside the root:
//! - entry names are cleaned lexically (`..` cannot climb above the root,
//!   absolute names are taken relative to it);
//! - parent directories are opened with `openat2(RESOLVE_BENEATH |
//!   RESOLVE_NO_SYMLINKS)` (or a component walk with `O_NOFOLLOW`), so a
//!   symlink, even one planted earlier in the same layer, is never followed;
//! - files are created with `O_EXCL | O_NOFOLLOW` relative to that parent fd;
//! - hardlink targets are resolved the same way, inside the same snapshot;
//! - whiteout names must be plain names in a resolved parent;
//! - device nodes are skipped and reported (a 0/0 character device, which is
//!   overlayfs's own whiteout form, is kept: it grants no device access).
//!
//! Owners, modes (with setuid/setgid, applied after chown), xattrs and
//! mtimes are kept; directory mtimes are set last.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};

/// Overlayfs's opaque-directory xattr.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Why an entry could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The tar stream could not be read (truncated or corrupt compression, bad header).
    #[error("reading tar stream after entry {after:?}")]
    Read {
        after: String,
        #[source]
        source: io::Error,
    },
    /// An entry is refused as unsafe or malformed.
    #[error("entry {entry:?}: {reason}")]
    Refused { entry: String, reason: String },
    /// A filesystem operation for an entry failed.
    #[error("entry {entry:?}: cannot {op}")]
    Io {
        entry: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

/// What applying a layer did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ApplyReport {
    /// Entries applied.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Whiteouts converted (`.wh.NAME` and opaque markers).
    pub whiteouts: u64,
    /// Entries skipped, with the reason (device nodes, unknown types).
    pub skipped: Vec<String>,
}

/// Clean an archive path lexically: drop `.` and empty components, apply
/// `..` without ever climbing above the root. The result is relative.
pub fn clean_path(raw: &[u8]) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(OsString::from_vec(c.to_vec())),
        }
    }
    out
}

fn display(comps: &[OsString]) -> String {
    let joined: Vec<&[u8]> = comps.iter().map(|c| c.as_bytes()).collect();
    String::from_utf8_lossy(&joined.join(&b'/')).into_owned()
}

/// Apply a layer tar stream to `root`, which should be an empty directory.
pub fn apply_layer<R: Read>(reader: R, root: &Path) -> Result<ApplyReport, ApplyError> {
    let root_fd = open_root(root)?;
    let mut applier = Applier {
        root: root_fd,
        cache: None,
        dirs: Vec::new(),
        report: ApplyReport::default(),
        buf: vec![0u8; 256 * 1024],
    };
    let mut archive = tar::Archive::new(reader);
    let mut last = String::from("<start>");
    let entries = archive.entries().map_err(|source| ApplyError::Read {
        after: last.clone(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| ApplyError::Read {
            after: last.clone(),
            source,
        })?;
        last = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        applier.apply_entry(entry, &last)?;
    }
    applier.finish_dirs();
    Ok(applier.report)
}

fn open_root(root: &Path) -> Result<OwnedFd, ApplyError> {
    let fd = nix::fcntl::open(
        root,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ApplyError::Io {
        entry: root.display().to_string(),
        op: "open the snapshot root",
        source: e.into(),
    })?;
    // SAFETY: `open` just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

struct DirTimes {
    comps: Vec<OsString>,
    mtime: i64,
}

struct Applier {
    root: OwnedFd,
    /// The most recently used parent directory, to save path walks.
    cache: Option<(Vec<OsString>, OwnedFd)>,
    dirs: Vec<DirTimes>,
    report: ApplyReport,
    buf: Vec<u8>,
}

impl Applier {
    fn apply_entry<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        name: &str,
    ) -> Result<(), ApplyError> {
        let comps = clean_path(&entry.path_bytes());
        let header = entry.header();
        let kind = header.entry_type();
        let refuse = |reason: String| ApplyError::Refused {
            entry: name.to_string(),
            reason,
        };
        let io_err = |op: &'static str| {
            let entry = name.to_string();
            move |e: Errno| ApplyError::Io {
                entry,
                op,
                source: e.into(),
            }
        };
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let meta = Meta {
            uid: header.uid().map_err(|e| refuse(format!("bad uid: {e}")))? as u32,
            gid: header.gid().map_err(|e| refuse(format!("bad gid: {e}")))? as u32,
            mode: header
                .mode()
                .map_err(|e| refuse(format!("bad mode: {e}")))?
                & 0o7777,
            mtime: header
                .mtime()
                .map_err(|e| refuse(format!("bad mtime: {e}")))? as i64,
        };
        self.report.entries += 1;

        let Some((base, parent_comps)) = comps.split_last() else {
            // The root itself ("./"): keep its owner and mode.
            if kind == tar::EntryType::Directory {
                let fd = self.root.as_raw_fd();
                set_owner_mode(fd, &meta).map_err(io_err("set owner and mode of the root"))?;
                self.dirs.push(DirTimes {
                    comps: Vec::new(),
                    mtime: meta.mtime,
                });
            }
            return Ok(());
        };
        let base_bytes = base.as_bytes();

        // Whiteouts.
        if base_bytes.starts_with(WHITEOUT_PREFIX) {
            let parent = self.open_parent(parent_comps, name)?;
            self.report.whiteouts += 1;
            if base_bytes == OPAQUE_MARKER {
                let f = fd_file(&parent);
                set_xattr(&f, OPAQUE_XATTR, b"y").map_err(|e| ApplyError::Io {
                    entry: name.to_string(),
                    op: "set the opaque xattr",
                    source: e,
                })?;
                std::mem::forget(f);
                self.cache = Some((parent_comps.to_vec(), parent));
                return Ok(());
            }
            if base_bytes.starts_with(b".wh..wh.") {
                self.report.skipped.push(format!("{name}: aufs metadata"));
                self.cache = Some((parent_comps.to_vec(), parent));
                return Ok(());
            }
            let target = &base_bytes[WHITEOUT_PREFIX.len()..];
            if target.is_empty() || target == b"." || target == b".." || target.contains(&b'/') {
                return Err(refuse("whiteout names no file".into()));
            }
            let target = OsStr::from_bytes(target);
            self.remove_existing(&parent, target, name)?;
            nix::sys::stat::mknodat(
                Some(parent.as_raw_fd()),
                target,
                SFlag::S_IFCHR,
                Mode::empty(),
                nix::sys::stat::makedev(0, 0),
            )
            .map_err(io_err("create whiteout device"))?;
            self.cache = Some((parent_comps.to_vec(), parent));
            return Ok(());
        }

        let parent = self.open_parent(parent_comps, name)?;
        let pfd = parent.as_raw_fd();
        match kind {
            tar::EntryType::Directory => {
                match nix::sys::stat::fstatat(
                    Some(pfd),
                    base.as_os_str(),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                ) {
                    Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {}
                    Ok(_) => {
                        self.remove_existing(&parent, base, name)?;
                        mkdir(pfd, base).map_err(io_err("create directory"))?;
                    }
                    Err(Errno::ENOENT) => mkdir(pfd, base).map_err(io_err("create directory"))?,
                    Err(e) => return Err(io_err("inspect existing entry")(e)),
                }
                let dfd = open_beneath_dir(pfd, base).map_err(io_err("open directory"))?;
                set_owner_mode(dfd.as_raw_fd(), &meta).map_err(io_err("set owner and mode"))?;
                self.apply_xattrs(&mut entry, &dfd, name)?;
                let mut full = parent_comps.to_vec();
                full.push(base.clone());
                self.dirs.push(DirTimes {
                    comps: full,
                    mtime: meta.mtime,
                });
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.remove_existing(&parent, base, name)?;
                let fd = nix::fcntl::openat(
                    Some(pfd),
                    base.as_os_str(),
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(io_err("create file"))?;
                // SAFETY: `openat` just returned this fd and nothing else owns it.
                let mut file = unsafe { File::from_raw_fd(fd) };
                loop {
                    let n = match entry.read(&mut self.buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(source) => {
                            return Err(ApplyError::Read {
                                after: name.to_string(),
                                source,
                            })
                        }
                    };
                    file.write_all(&self.buf[..n])
                        .map_err(|source| ApplyError::Io {
                            entry: name.to_string(),
                            op: "write file",
                            source,
                        })?;
                    self.report.bytes += n as u64;
                }
                let ffd = file.as_raw_fd();
                set_owner_mode(ffd, &meta).map_err(io_err("set owner and mode"))?;
                let owned = OwnedFd::from(file);
                self.apply_xattrs(&mut entry, &owned, name)?;
                let t = TimeSpec::new(meta.mtime, 0);
                nix::sys::stat::futimens(owned.as_raw_fd(), &t, &t).map_err(io_err("set mtime"))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse("symlink without a target".into()))?;
                self.remove_existing(&parent, base, name)?;
                nix::unistd::symlinkat(OsStr::from_bytes(&target), Some(pfd), base.as_os_str())
                    .map_err(io_err("create symlink"))?;
                chown_at(pfd, base.as_os_str(), &meta).map_err(io_err("set symlink owner"))?;
                let t = TimeSpec::new(meta.mtime, 0);
                nix::sys::stat::utimensat(
                    Some(pfd),
                    base.as_os_str(),
                    &t,
                    &t,
                    nix::sys::stat::UtimensatFlags::NoFollowSymlink,
                )
                .map_err(io_err("set symlink mtime"))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse("hardlink without a target".into()))?;
                let tcomps = clean_path(&target);
                let Some((tbase, tparent)) = tcomps.split_last() else {
                    return Err(refuse("hardlink to the root directory".into()));
                };
                let tdir = self.open_existing_dir(tparent).map_err(|e| {
                    refuse(format!(
                        "hardlink target {:?} is not inside this layer: {e}",
                        display(&tcomps)
                    ))
                })?;
                if tcomps.as_slice() == comps.as_slice() {
                    return Ok(());
                }
                self.remove_existing(&parent, base, name)?;
                // No AT_SYMLINK_FOLLOW: a symlink target is linked, never followed.
                nix::unistd::linkat(
                    Some(tdir.as_raw_fd()),
                    tbase.as_os_str(),
                    Some(pfd),
                    base.as_os_str(),
                    nix::fcntl::AtFlags::empty(),
                )
                .map_err(|e| {
                    refuse(format!(
                        "cannot hardlink to {:?} inside this layer: {e}",
                        display(&tcomps)
                    ))
                })?;
            }
            tar::EntryType::Fifo => {
                self.remove_existing(&parent, base, name)?;
                nix::sys::stat::mknodat(
                    Some(pfd),
                    base.as_os_str(),
                    SFlag::S_IFIFO,
                    Mode::from_bits_truncate(0o600),
                    0,
                )
                .map_err(io_err("create fifo"))?;
                chown_at(pfd, base.as_os_str(), &meta).map_err(io_err("set fifo owner"))?;
                nix::sys::stat::fchmodat(
                    Some(pfd),
                    base.as_os_str(),
                    Mode::from_bits_truncate(meta.mode),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
                .map_err(io_err("set fifo mode"))?;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                if kind == tar::EntryType::Char && major == 0 && minor == 0 {
                    // Already in overlayfs whiteout form.
                    self.remove_existing(&parent, base, name)?;
                    nix::sys::stat::mknodat(
                        Some(pfd),
                        base.as_os_str(),
                        SFlag::S_IFCHR,
                        Mode::empty(),
                        nix::sys::stat::makedev(0, 0),
                    )
                    .map_err(io_err("create whiteout device"))?;
                    self.report.whiteouts += 1;
                } else {
                    let what = if kind == tar::EntryType::Char {
                        "character"
                    } else {
                        "block"
                    };
                    self.report
                        .skipped
                        .push(format!("{name}: {what} device {major}:{minor} not created"));
                }
            }
            other => {
                self.report
                    .skipped
                    .push(format!("{name}: unsupported entry type {other:?}"));
            }
        }
        self.cache = Some((parent_comps.to_vec(), parent));
        Ok(())
    }

    /// Open the parent directory of an entry, creating missing directories,
    /// never following a symlink.
    fn open_parent(&mut self, comps: &[OsString], name: &str) -> Result<OwnedFd, ApplyError> {
        if let Some((cached, _)) = &self.cache {
            if cached.as_slice() == comps {
                let (_, fd) = self.cache.take().expect("checked above");
                return Ok(fd);
            }
        }
        let mut cur = dup(&self.root).map_err(|e| ApplyError::Io {
            entry: name.to_string(),
            op: "duplicate the root fd",
            source: e.into(),
        })?;
        for (i, c) in comps.iter().enumerate() {
            let next = match open_beneath_dir(cur.as_raw_fd(), c) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    match mkdir(cur.as_raw_fd(), c) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => {
                            return Err(ApplyError::Io {
                                entry: name.to_string(),
                                op: "create parent directory",
                                source: e.into(),
                            })
                        }
                    }
                    open_beneath_dir(cur.as_raw_fd(), c)
                        .map_err(|e| self.parent_error(name, &comps[..=i], e))?
                }
                Err(e) => return Err(self.parent_error(name, &comps[..=i], e)),
            };
            cur = next;
        }
        Ok(cur)
    }

    fn parent_error(&self, name: &str, upto: &[OsString], e: Errno) -> ApplyError {
        let reason = match e {
            Errno::ELOOP | Errno::EXDEV => format!(
                "parent {:?} is a symlink; refusing to write through it",
                display(upto)
            ),
            Errno::ENOTDIR => format!("parent {:?} is not a directory", display(upto)),
            e => format!("cannot open parent {:?}: {e}", display(upto)),
        };
        ApplyError::Refused {
            entry: name.to_string(),
            reason,
        }
    }

    /// Open an existing directory inside the root without creating anything.
    fn open_existing_dir(&self, comps: &[OsString]) -> Result<OwnedFd, Errno> {
        let mut cur = dup(&self.root)?;
        for c in comps {
            cur = open_beneath_dir(cur.as_raw_fd(), c)?;
        }
        Ok(cur)
    }

    /// Remove whatever is at `parent/base` (a directory recursively).
    fn remove_existing(
        &mut self,
        parent: &OwnedFd,
        base: &OsStr,
        name: &str,
    ) -> Result<(), ApplyError> {
        let pfd = parent.as_raw_fd();
        match nix::unistd::unlinkat(Some(pfd), base, nix::unistd::UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(Errno::EISDIR) | Err(Errno::EPERM) => {
                // A directory: remove it recursively via the pinned parent fd.
                // std's remove_dir_all never follows symlinks.
                self.cache = None;
                // Built from the raw bytes: a lossy conversion could name a sibling.
                let mut path = format!("/proc/self/fd/{pfd}/").into_bytes();
                path.extend_from_slice(base.as_bytes());
                let path = std::path::PathBuf::from(OsString::from_vec(path));
                std::fs::remove_dir_all(&path).map_err(|source| ApplyError::Io {
                    entry: name.to_string(),
                    op: "replace an existing directory",
                    source,
                })
            }
            Err(e) => Err(ApplyError::Io {
                entry: name.to_string(),
                op: "replace an existing entry",
                source: e.into(),
            }),
        }
    }

    fn apply_xattrs<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        fd: &OwnedFd,
        name: &str,
    ) -> Result<(), ApplyError> {
        let Ok(Some(exts)) = entry.pax_extensions() else {
            return Ok(());
        };
        let mut attrs = Vec::new();
        for ext in exts.flatten() {
            let Ok(key) = ext.key() else { continue };
            if let Some(attr) = key.strip_prefix("SCHILY.xattr.") {
                // Overlay's own xattrs from an archive could forge redirects
                // or opaque dirs; only the whiteout conversion sets them.
                if attr.starts_with("trusted.overlay.") {
                    self.report
                        .skipped
                        .push(format!("{name}: xattr {attr} from the archive ignored"));
                    continue;
                }
                attrs.push((attr.to_string(), ext.value_bytes().to_vec()));
            }
        }
        if attrs.is_empty() {
            return Ok(());
        }
        let f = fd_file(fd);
        let mut res = Ok(());
        for (attr, value) in attrs {
            if let Err(source) = set_xattr(&f, &attr, &value) {
                res = Err(ApplyError::Io {
                    entry: name.to_string(),
                    op: "set xattr",
                    source,
                });
                break;
            }
        }
        std::mem::forget(f);
        res
    }

    /// Set directory mtimes, deepest last-written first, after all content exists.
    fn finish_dirs(&mut self) {
        self.cache = None;
        let dirs = std::mem::take(&mut self.dirs);
        for d in dirs.iter().rev() {
            if let Ok(fd) = self.open_existing_dir(&d.comps) {
                let t = TimeSpec::new(d.mtime, 0);
                let _ = nix::sys::stat::futimens(fd.as_raw_fd(), &t, &t);
            }
        }
    }
}

struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
}

fn set_owner_mode(fd: RawFd, m: &Meta) -> nix::Result<()> {
    nix::unistd::fchown(fd, Some(Uid::from_raw(m.uid)), Some(Gid::from_raw(m.gid)))?;
    // After chown, which clears setuid/setgid.
    nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(m.mode))
}

/// Give `name` in `dirfd` the entry's owner, never following a symlink.
fn chown_at(dirfd: RawFd, name: &OsStr, m: &Meta) -> nix::Result<()> {
    nix::unistd::fchownat(
        Some(dirfd),
        name,
        Some(Uid::from_raw(m.uid)),
        Some(Gid::from_raw(m.gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
}

fn mkdir(dirfd: RawFd, name: &OsStr) -> nix::Result<()> {
    nix::sys::stat::mkdirat(Some(dirfd), name, Mode::from_bits_truncate(0o755))
}

fn dup(fd: &OwnedFd) -> nix::Result<OwnedFd> {
    fd.try_clone()
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EBADF)))
}

/// Open one directory component beneath `dirfd`, refusing symlinks and
/// magic links. `name` is a single component.
fn open_beneath_dir(dirfd: RawFd, name: &OsStr) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
    let res = match nix::fcntl::openat2(dirfd, name, how) {
        Err(Errno::ENOSYS) => nix::fcntl::openat(
            Some(dirfd),
            name,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        ),
        r => r,
    };
    let fd = match res {
        Ok(fd) => fd,
        // O_DIRECTORY makes a symlink fail as ENOTDIR; report it as the symlink it is.
        Err(Errno::ENOTDIR) if is_symlink_at(dirfd, name) => return Err(Errno::ELOOP),
        Err(e) => return Err(e),
    };
    // SAFETY: the syscall just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether `name` beneath `dirfd` is a symlink (not followed).
fn is_symlink_at(dirfd: RawFd, name: &OsStr) -> bool {
    nix::sys::stat::fstatat(Some(dirfd), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK)
}

/// Borrow an fd as a `File` for xattr calls. The caller must `forget` it.
fn fd_file(fd: &OwnedFd) -> File {
    // SAFETY: the File is always passed to mem::forget by the caller, so the
    // fd is not closed twice; `fd` outlives it.
    unsafe { File::from_raw_fd(fd.as_raw_fd()) }
}

fn set_xattr(f: &File, name: &str, value: &[u8]) -> io::Result<()> {
    use xattr::FileExt;
    f.set_xattr(name, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_clean_path_never_climbs_above_root() {
        let c = |s: &str| display(&clean_path(s.as_bytes()));
        assert_eq!(c("../../etc/passwd"), "etc/passwd");
        assert_eq!(c("/etc/passwd"), "etc/passwd");
        assert_eq!(c("./a/../../b/./c/"), "b/c");
        assert_eq!(c("a/b/../../.."), "");
    }
}
