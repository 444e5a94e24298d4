//! overlayfs features and the store's filesystem, probed with real mounts
//! inside a forked child's private mount namespace (nothing reaches the
//! host's mount table; the scratch directories are removed afterwards).

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::child::{self, errno_text, in_child};
use super::Probe;

/// What overlayfs supports here.
#[derive(Debug, Clone, Serialize)]
pub struct Overlay {
    /// `overlay` is listed in `/proc/filesystems` (before the probe: a module
    /// not yet loaded is loaded by the first mount).
    pub listed: bool,
    /// A plain overlay mount (lower, upper, work on a tmpfs) works.
    pub mount: Probe,
    /// `volatile` (no syncs on the upper layer; skiff uses it when accepted).
    pub volatile: Probe,
    /// `redirect_dir=on`.
    pub redirect_dir: Probe,
    /// `metacopy=on`.
    pub metacopy: Probe,
    /// `index=on`.
    pub index: Probe,
    /// `userxattr` (overlay xattrs in `user.`; for user namespaces).
    pub userxattr: Probe,
}

/// The overlay options probed, beside the plain mount.
pub const OVERLAY_OPTIONS: &[&str] = &[
    "volatile",
    "redirect_dir=on",
    "metacopy=on",
    "index=on",
    "userxattr",
];

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

/// A fresh private directory `base/.skiff-check-<pid>-<tag>`, mode 0700.
pub(crate) fn scratch_dir(base: &Path, tag: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let p = base.join(format!(".skiff-check-{}-{tag}", std::process::id()));
    if p.exists() {
        fs::remove_dir_all(&p)?;
    }
    fs::DirBuilder::new().mode(0o700).create(&p)?;
    Ok(p)
}

/// Probe overlay on a tmpfs mounted (in the child) over a directory in `tmp`.
pub fn overlay(tmp: &Path) -> Overlay {
    let listed = fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"));
    let fail_all = |why: String| Overlay {
        listed,
        mount: Probe::failed(why.clone()),
        volatile: Probe::failed(why.clone()),
        redirect_dir: Probe::failed(why.clone()),
        metacopy: Probe::failed(why.clone()),
        index: Probe::failed(why.clone()),
        userxattr: Probe::failed(why),
    };
    let base = match scratch_dir(tmp, "overlay") {
        Ok(p) => p,
        Err(e) => {
            return fail_all(format!(
                "create a scratch directory in {}: {e}",
                tmp.display()
            ))
        }
    };
    // Everything the child needs, built here: it must not allocate.
    struct Test {
        dirs: [CString; 4],
        target: CString,
        opts: CString,
    }
    let mut tests = Vec::new();
    for (i, extra) in std::iter::once("")
        .chain(OVERLAY_OPTIONS.iter().copied())
        .enumerate()
    {
        let d = base.join(i.to_string());
        let (l, u, w, m) = (d.join("l"), d.join("u"), d.join("w"), d.join("m"));
        let mut opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            l.display(),
            u.display(),
            w.display()
        );
        if !extra.is_empty() {
            opts.push(',');
            opts.push_str(extra);
        }
        tests.push(Test {
            dirs: [cstr(&d), cstr(&l), cstr(&u), cstr(&w)],
            target: cstr(&m),
            opts: CString::new(opts).unwrap_or_default(),
        });
    }
    let base_c = cstr(&base);
    let r = in_child(|o: &mut [i32; 7]| {
        o[6] = child::private_mount_ns();
        if o[6] != 0 {
            return;
        }
        o[6] = child::mount(c"tmpfs", &base_c, c"tmpfs", 0, c"mode=0700");
        if o[6] != 0 {
            return;
        }
        for (i, t) in tests.iter().enumerate() {
            for d in t.dirs.iter().chain(std::iter::once(&t.target)) {
                // SAFETY: a valid path.
                unsafe { libc::mkdir(d.as_ptr(), 0o700) };
            }
            o[i] = child::mount(c"overlay", &t.target, c"overlay", 0, &t.opts);
            if o[i] == 0 {
                // SAFETY: a valid path.
                unsafe { libc::umount2(t.target.as_ptr(), libc::MNT_DETACH) };
            }
        }
    });
    let _ = fs::remove_dir_all(&base);
    let res = match r {
        Ok(res) => res,
        Err(e) => return fail_all(e.to_string()),
    };
    if res[6] != 0 {
        return fail_all(format!(
            "private mount namespace or tmpfs: {}",
            errno_text(res[6])
        ));
    }
    let p = |e: i32| {
        if e == 0 {
            Probe::ok()
        } else {
            Probe::failed(errno_text(e))
        }
    };
    Overlay {
        listed,
        mount: p(res[0]),
        volatile: p(res[1]),
        redirect_dir: p(res[2]),
        metacopy: p(res[3]),
        index: p(res[4]),
        userxattr: p(res[5]),
    }
}

/// The store's filesystem.
#[derive(Debug, Clone, Serialize)]
pub struct Store {
    /// The store root.
    pub root: PathBuf,
    /// Whether it exists yet (if not, the nearest existing parent is probed).
    pub exists: bool,
    /// The directory actually probed.
    pub probed: PathBuf,
    /// The filesystem's name from its statfs magic (or the magic in hex).
    pub fs_type: String,
    /// Whether the whiteout form skiff writes works there: a 0/0 character
    /// device and `trusted.overlay.opaque=y`, honoured by an overlay mount.
    pub whiteouts: Probe,
}

/// Name a statfs magic number.
pub fn fs_name(magic: i64) -> String {
    match magic as u32 {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x794C_7630 => "overlay".into(),
        0x2FC1_2FC1 => "zfs".into(),
        0x6969 => "nfs".into(),
        0xF2F5_2010 => "f2fs".into(),
        0x5346_544E => "ntfs".into(),
        0x6573_5546 => "fuse".into(),
        0x0102_1997 => "9p".into(),
        0x8584_58F6 => "ramfs".into(),
        m => format!("{m:#x}"),
    }
}

fn statfs_type(p: &Path) -> std::io::Result<i64> {
    let c = cstr(p);
    // SAFETY: a zeroed struct is a valid out-parameter.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid path and struct.
    if unsafe { libc::statfs(c.as_ptr(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(s.f_type)
}

/// The nearest existing ancestor of `p` (itself if it exists).
pub fn existing_ancestor(p: &Path) -> PathBuf {
    let mut q = p.to_path_buf();
    while !q.exists() {
        if !q.pop() {
            return PathBuf::from("/");
        }
    }
    q
}

/// Probe the store root's filesystem and whiteouts there.
pub fn store(root: &Path) -> Store {
    let probed = existing_ancestor(root);
    let fs_type = statfs_type(&probed)
        .map(fs_name)
        .unwrap_or_else(|e| format!("unknown ({e})"));
    Store {
        root: root.to_path_buf(),
        exists: root.exists(),
        fs_type,
        whiteouts: whiteouts(&probed),
        probed,
    }
}

/// Two lower layers as skiff's applier writes them: the top one deletes
/// `gone` with a 0/0 character device and makes `opq` opaque with the
/// xattr; the overlay must hide `gone` and `opq/old` and show `opq/new`.
fn whiteouts(dir: &Path) -> Probe {
    let base = match scratch_dir(dir, "whiteout") {
        Ok(p) => p,
        Err(e) => return Probe::failed(format!("create a scratch directory: {e}")),
    };
    let r = whiteouts_in(&base);
    let _ = fs::remove_dir_all(&base);
    r
}

fn whiteouts_in(base: &Path) -> Probe {
    let (low, top, m) = (base.join("low"), base.join("top"), base.join("m"));
    let setup = || -> Result<(), String> {
        let mk =
            |p: &Path| fs::create_dir_all(p).map_err(|e| format!("mkdir {}: {e}", p.display()));
        mk(&low.join("opq"))?;
        mk(&top.join("opq"))?;
        mk(&m)?;
        let w = |p: PathBuf| fs::write(&p, "x").map_err(|e| format!("write {}: {e}", p.display()));
        w(low.join("gone"))?;
        w(low.join("opq/old"))?;
        w(top.join("opq/new"))?;
        nix::sys::stat::mknod(
            &top.join("gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            nix::sys::stat::makedev(0, 0),
        )
        .map_err(|e| format!("mknod 0/0 character device: {e}"))?;
        let c = cstr(&top.join("opq"));
        // SAFETY: valid strings and buffer.
        let rc = unsafe {
            libc::setxattr(
                c.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                b"y".as_ptr().cast(),
                1,
                0,
            )
        };
        if rc != 0 {
            return Err(format!(
                "set trusted.overlay.opaque: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    };
    if let Err(e) = setup() {
        return Probe::failed(e);
    }
    let target = cstr(&m);
    let opts =
        CString::new(format!("lowerdir={}:{}", top.display(), low.display())).unwrap_or_default();
    let paths = [
        cstr(&m.join("gone")),
        cstr(&m.join("opq/old")),
        cstr(&m.join("opq/new")),
    ];
    let r = in_child(|o: &mut [i32; 5]| {
        o[0] = child::private_mount_ns();
        if o[0] != 0 {
            return;
        }
        o[1] = child::mount(c"overlay", &target, c"overlay", libc::MS_RDONLY, &opts);
        if o[1] != 0 {
            return;
        }
        for (i, p) in paths.iter().enumerate() {
            // SAFETY: a valid path.
            o[2 + i] = child::rc_errno(unsafe { libc::access(p.as_ptr(), libc::F_OK) }.into());
        }
    });
    match r {
        Err(e) => Probe::failed(e.to_string()),
        Ok([e, _, _, _, _]) if e != 0 => {
            Probe::failed(format!("private mount namespace: {}", errno_text(e)))
        }
        Ok([_, e, _, _, _]) if e != 0 => {
            Probe::failed(format!("overlay mount of two layers: {}", errno_text(e)))
        }
        Ok([_, _, gone, old, new]) => {
            let mut bad = Vec::new();
            if gone != libc::ENOENT {
                bad.push("the whiteout device does not hide the file");
            }
            if old != libc::ENOENT {
                bad.push("the opaque directory shows the lower layer's file");
            }
            if new != 0 {
                bad.push("the opaque directory hides its own file");
            }
            if bad.is_empty() {
                Probe::ok()
            } else {
                Probe::failed(bad.join("; "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_fs_name_known_and_unknown() {
        assert_eq!(fs_name(0xEF53), "ext4");
        assert_eq!(fs_name(0x0102_1994), "tmpfs");
        assert_eq!(fs_name(0x1234), "0x1234");
    }

    #[test]
    fn test_existing_ancestor() {
        assert_eq!(
            existing_ancestor(Path::new("/proc/nope/deeper")),
            PathBuf::from("/proc")
        );
    }
}
