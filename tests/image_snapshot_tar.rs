//! A snapshot written back as a layer tar (`imagestore::snapshot_tar`, the
//! building block of a store export) unpacks, through the store's own
//! applier, to the same tree: types, modes, owners, mtimes, sizes and
//! contents, symlink targets, xattrs, whiteouts, opaque directories and
//! hardlinks. Checked on a tree made by hand with every kind of entry, and
//! on every snapshot of the vendored images (and of the image corpus, when
//! `SKIFF_IMAGE_CORPUS` names it).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use imagestore::apply::apply_layer;
use imagestore::snapshot_tar::write_snapshot_tar;
use support::env::{vendor, Env};
use support::privilege::{is_root, prerequisite};

/// Everything the applier keeps of one path.
#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: String,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Option<i64>,
    content: Option<Vec<u8>>,
    xattrs: BTreeMap<String, Vec<u8>>,
    /// Index of the first path (in name order) sharing this inode.
    link_group: Option<usize>,
}

fn describe(dir: &Path) -> BTreeMap<PathBuf, Node> {
    let mut paths = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in fs::read_dir(dir.join(&rel)).expect("list") {
            let e = e.expect("entry");
            let rel = rel.join(e.file_name());
            if e.file_type().expect("type").is_dir() {
                stack.push(rel.clone());
            }
            paths.push(rel);
        }
    }
    paths.sort();
    let mut first_of_inode: HashMap<u64, usize> = HashMap::new();
    let mut out = BTreeMap::new();
    for (i, rel) in paths.into_iter().enumerate() {
        let p = dir.join(&rel);
        let m = fs::symlink_metadata(&p).expect("lstat");
        let t = m.file_type();
        let (kind, content) = if t.is_dir() {
            ("dir".to_string(), None)
        } else if t.is_file() {
            ("file".to_string(), Some(fs::read(&p).expect("read")))
        } else if t.is_symlink() {
            let target = fs::read_link(&p).expect("readlink");
            (
                "symlink".to_string(),
                Some(target.as_os_str().as_bytes().to_vec()),
            )
        } else if t.is_fifo() {
            ("fifo".to_string(), None)
        } else if t.is_char_device() {
            (format!("chardev {}", m.rdev()), None)
        } else {
            ("other".to_string(), None)
        };
        let whiteout = kind == "chardev 0";
        let link_group =
            (t.is_file() && m.nlink() > 1).then(|| *first_of_inode.entry(m.ino()).or_insert(i));
        let xattrs = if t.is_symlink() {
            BTreeMap::new()
        } else {
            xattr::list(&p)
                .expect("list xattrs")
                .filter_map(|n| {
                    let v = xattr::get(&p, &n).ok().flatten()?;
                    Some((n.to_string_lossy().into_owned(), v))
                })
                .collect()
        };
        out.insert(
            rel,
            Node {
                // A whiteout's own mode and owner carry nothing.
                mode: if whiteout { 0 } else { m.mode() & 0o7777 },
                uid: if whiteout { 0 } else { m.uid() },
                gid: if whiteout { 0 } else { m.gid() },
                mtime: (!whiteout && !t.is_symlink()).then(|| m.mtime()),
                kind,
                content,
                xattrs,
                link_group,
            },
        );
    }
    out
}

/// Write `dir` as a tar, apply it to a new directory, and compare.
fn round_trip(dir: &Path, label: &str) {
    let mut tar = Vec::new();
    let stats = write_snapshot_tar(dir, &mut tar).expect("write the tar");
    assert!(stats.entries > 0, "{label}");
    let out = tempfile::tempdir().expect("tmp");
    apply_layer(&tar[..], out.path()).unwrap_or_else(|e| panic!("{label}: apply: {e}"));
    let (want, got) = (describe(dir), describe(out.path()));
    for (path, w) in &want {
        assert_eq!(got.get(path), Some(w), "{label}: {}", path.display());
    }
    assert_eq!(got.len(), want.len(), "{label}: extra paths");
    let root = |d: &Path| {
        let m = fs::metadata(d).expect("stat");
        (m.mode() & 0o7777, m.uid(), m.gid())
    };
    assert_eq!(
        root(out.path()),
        root(dir),
        "{label}: the root's mode and owner"
    );
    // The same snapshot gives the same tar.
    let mut again = Vec::new();
    write_snapshot_tar(dir, &mut again).expect("write again");
    assert!(again == tar, "{label}: a second tar differs");
}

#[test]
fn test_snapshot_tar_keeps_every_kind_of_entry() {
    if !prerequisite(is_root(), "root (chown, mknod and trusted xattrs)") {
        return;
    }
    let t = tempfile::tempdir().expect("tmp");
    let d = t.path();
    fs::create_dir_all(d.join("etc/opaque/kept")).expect("mkdir");
    fs::write(d.join("etc/opaque/kept/f"), b"inside an opaque dir").expect("write");
    xattr::set(d.join("etc/opaque"), "trusted.overlay.opaque", b"y").expect("opaque");
    fs::write(d.join("etc/conf"), b"x = 1\n").expect("write");
    xattr::set(d.join("etc/conf"), "user.note", b"kept").expect("user xattr");
    xattr::set(d.join("etc"), "user.dir", b"also").expect("dir xattr");
    fs::write(d.join("bin-ping"), b"\x7fELF...").expect("write");
    xattr::set(
        d.join("bin-ping"),
        "security.capability",
        &[1, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    )
    .expect("capability");
    fs::set_permissions(d.join("bin-ping"), fs::Permissions::from_mode(0o4755)).expect("setuid");
    std::os::unix::fs::chown(d.join("bin-ping"), Some(0), Some(0)).expect("chown");
    std::os::unix::fs::chown(d.join("etc/conf"), Some(1000), Some(100)).expect("chown");
    fs::hard_link(d.join("etc/conf"), d.join("conf-link")).expect("hardlink");
    fs::hard_link(d.join("etc/conf"), d.join("etc/opaque/kept/conf-too")).expect("hardlink");
    std::os::unix::fs::symlink("../etc/conf", d.join("etc/rel-link")).expect("symlink");
    std::os::unix::fs::symlink("/nowhere/at/all", d.join("dangling")).expect("symlink");
    nix::unistd::mkfifo(
        &d.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .expect("mkfifo");
    nix::sys::stat::mknod(
        &d.join("etc/removed"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0),
        0,
    )
    .expect("whiteout");
    let long = "l".repeat(120);
    fs::create_dir_all(d.join(&long).join(&long)).expect("long names");
    fs::write(d.join(&long).join(&long).join("file"), b"deep").expect("write");
    fs::write(d.join(OsStr::from_bytes(b"not-utf8-\xff")), b"odd name").expect("write");
    fs::set_permissions(d.join("etc"), fs::Permissions::from_mode(0o751)).expect("chmod");
    fs::set_permissions(d, fs::Permissions::from_mode(0o711)).expect("chmod root");
    round_trip(d, "hand-made tree");
}

#[test]
fn test_snapshot_tar_round_trips_every_vendored_and_corpus_snapshot() {
    if !prerequisite(is_root(), "root (chown, mknod and trusted xattrs)") {
        return;
    }
    let env = Env::new();
    let mut archives = vec![vendor("busybox.tar"), vendor("compat.tar")];
    if let Ok(dir) = std::env::var("SKIFF_IMAGE_CORPUS") {
        // Every archive and OCI layout of the corpus, one level down.
        let mut more: Vec<PathBuf> = fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .flat_map(|kind| fs::read_dir(kind.path()).into_iter().flatten().flatten())
            .map(|e| e.path())
            .collect();
        more.sort();
        archives.extend(more);
    }
    for a in &archives {
        // Some corpus entries are not images; those the store refuses
        // are not this test's business.
        let _ = env.run(&["image", "import", a.to_str().expect("utf8")]);
    }
    let store = imagestore::Store::open(env.root()).expect("open");
    let snaps = store.snapshots().list().expect("snapshots");
    assert!(snaps.len() >= 6, "the vendored images' snapshots at least");
    eprintln!("{} snapshots of {} archives", snaps.len(), archives.len());
    for s in &snaps {
        round_trip(&store.snapshots().path(s), &s.chain_id.to_string());
    }
}
