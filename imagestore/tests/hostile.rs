//! Hostile archives, built by the tests and imported through the public API.
//!
//! Each case proves the archive is refused or neutralised, that nothing was
//! written (or removed) outside the store, that the error names the bad
//! entry or blob, that no scratch data is left in `ROOT/tmp`, and that the
//! store still imports and lists images afterwards. The `test_apply_layer_*`
//! cases drive the layer applier directly for the metadata it must keep.
//!
//! These tests need root (chown, mknod, `trusted.*` xattrs, overlay mounts).
//! Without it they are skipped with a message, unless
//! `SKIFF_REQUIRE_PRIVILEGED=1`, which turns a missing prerequisite into a
//! failure.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{
    gzip, sha256_hex, write_oci_layout, write_oci_layout_with, DockerSave, Meta, TarBuilder,
};
use imagestore::apply::{apply_layer, OPAQUE_XATTR};
use imagestore::{ImageRecord, ImportOptions, ImportReport, Input, Store};

// ---------------------------------------------------------------------------
// Prerequisites and the per-test environment.

fn require_privileged() -> bool {
    std::env::var("SKIFF_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1")
}

/// Say a test was skipped, on the real stderr so it shows even when the
/// harness captures output; or fail when CI demands the prerequisite.
fn skip(why: &str) -> bool {
    if require_privileged() {
        panic!("prerequisite missing: {why} (SKIFF_REQUIRE_PRIVILEGED=1)");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
    false
}

/// Root is needed for chown, mknod and trusted xattrs.
fn privileged() -> bool {
    nix::unistd::geteuid().is_root() || skip("this test must run as root")
}

/// Where test stores live: `SKIFF_TEST_TMP`, else `/var/tmp` (a disk, with
/// xattrs), else the system temp dir.
fn test_tmp_base() -> PathBuf {
    if let Ok(p) = std::env::var("SKIFF_TEST_TMP") {
        return PathBuf::from(p);
    }
    let var_tmp = PathBuf::from("/var/tmp");
    if var_tmp.is_dir() {
        var_tmp
    } else {
        std::env::temp_dir()
    }
}

const SENTINEL: &str = "sentinel";
const SENTINEL_BODY: &[u8] = b"host data: must survive every import\n";

/// A test's store, a directory `outside/` beside it holding one sentinel
/// file, and a `ghost` path under `/tmp` that must never come to exist.
struct Env {
    tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
    ghost: PathBuf,
    store: Store,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("skiff-hostile-")
            .tempdir_in(test_tmp_base())
            .expect("create test dir");
        let root = tmp.path().join("store");
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).expect("create outside/");
        fs::write(outside.join(SENTINEL), SENTINEL_BODY).expect("write sentinel");
        let tag = tmp
            .path()
            .file_name()
            .expect("temp dir has a name")
            .to_string_lossy()
            .into_owned();
        let ghost = PathBuf::from(format!("/tmp/{tag}-ghost"));
        assert!(
            !ghost.exists(),
            "{} exists before the test",
            ghost.display()
        );
        let store = Store::open(&root).expect("open store");
        Env {
            tmp,
            root,
            outside,
            ghost,
            store,
        }
    }

    /// Write an input archive (beside the store, not in it).
    fn input(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let dir = self.tmp.path().join("inputs");
        fs::create_dir_all(&dir).expect("create inputs/");
        let p = dir.join(name);
        fs::write(&p, bytes).expect("write input");
        p
    }

    /// A fresh directory for an OCI layout input.
    fn layout_dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join("inputs").join(name)
    }

    fn import(&self, path: &Path) -> imagestore::Result<ImportReport> {
        self.store
            .import(&Input::Path(path.to_path_buf()), &ImportOptions::default())
    }

    fn import_ok(&self, path: &Path) -> ImportReport {
        match self.import(path) {
            Ok(r) => r,
            Err(e) => panic!("import of {} failed: {}", path.display(), chain(&e)),
        }
    }

    /// Import, expecting a refusal; return the error with all its causes.
    fn import_err(&self, path: &Path) -> String {
        match self.import(path) {
            Ok(r) => panic!(
                "import of {} succeeded but must fail: {r:?}",
                path.display()
            ),
            Err(e) => {
                let text = chain(&e);
                println!("refused {}: {text}", path.display());
                text
            }
        }
    }

    /// The only image in the store.
    fn only_image(&self) -> ImageRecord {
        let mut list = self.store.images().list().expect("list images");
        assert_eq!(list.len(), 1, "expected one image: {list:?}");
        list.remove(0)
    }

    /// Snapshot directories of an image, bottom first.
    fn snapshots(&self, rec: &ImageRecord) -> Vec<PathBuf> {
        let md = self
            .store
            .mount_description(rec)
            .expect("mount description");
        for d in &md.lowerdirs {
            assert!(
                d.starts_with(self.store.root().join("snapshots")),
                "lowerdir {} is outside the store",
                d.display()
            );
        }
        md.lowerdirs.into_iter().rev().collect()
    }

    /// `outside/` holds exactly the untouched sentinel, and the ghost path
    /// does not exist.
    fn assert_outside_untouched(&self) {
        let names: Vec<String> = fs::read_dir(&self.outside)
            .expect("list outside/")
            .map(|e| {
                e.expect("list outside/")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, vec![SENTINEL.to_string()], "outside/ was written to");
        let p = self.outside.join(SENTINEL);
        let meta = fs::symlink_metadata(&p).expect("sentinel still exists");
        assert!(meta.file_type().is_file(), "sentinel is no longer a file");
        assert_eq!(meta.nlink(), 1, "sentinel was hardlinked from somewhere");
        assert_eq!(fs::read(&p).expect("read sentinel"), SENTINEL_BODY);
        let xattrs: Vec<_> = xattr::list(&self.outside)
            .expect("list xattrs")
            .filter(|a| a.to_string_lossy().starts_with("trusted.overlay."))
            .collect();
        assert!(xattrs.is_empty(), "outside/ got overlay xattrs: {xattrs:?}");
        assert!(
            fs::symlink_metadata(&self.ghost).is_err(),
            "{} was created",
            self.ghost.display()
        );
    }

    /// `ROOT/tmp` holds no session leftovers.
    fn assert_tmp_empty(&self) {
        let left: Vec<_> = fs::read_dir(self.root.join("tmp"))
            .expect("list tmp/")
            .map(|e| e.expect("list tmp/").path())
            .collect();
        assert!(left.is_empty(), "leftovers in tmp/: {left:?}");
    }

    /// A failed import left nothing visible and the store still works.
    fn assert_clean_failure(&self) {
        self.assert_outside_untouched();
        self.assert_tmp_empty();
        assert!(
            self.store.images().list().expect("list images").is_empty(),
            "a failed import left an image record"
        );
        assert!(
            self.store.images().tags().expect("list tags").is_empty(),
            "a failed import left a tag"
        );
        self.assert_store_usable();
    }

    /// A normal import and a listing still succeed.
    fn assert_store_usable(&self) {
        let mut layer = TarBuilder::new();
        layer.file("hello.txt", b"hello\n");
        let mut save = DockerSave::new();
        save.image(&[layer.finish()], &["skiff-test/ok:1"]);
        let p = self.input("good.tar", &save.bytes());
        let report = self.import_ok(&p);
        assert_eq!(report.images.len(), 1);
        let rec = self.store.resolve("skiff-test/ok:1").expect("resolve");
        assert!(self
            .store
            .images()
            .list()
            .expect("list images")
            .iter()
            .any(|r| r.id == rec.id));
        let snaps = self.snapshots(&rec);
        assert_eq!(
            fs::read(snaps[0].join("hello.txt")).expect("read hello.txt"),
            b"hello\n"
        );
        self.assert_tmp_empty();
        self.assert_outside_untouched();
    }

    /// A relative path from a snapshot directory (or the import's scratch
    /// directory) up to `outside/`: enough `..` to reach `/`, then down.
    fn climb_to_outside(&self) -> String {
        let depth = self.root.components().count() + 4;
        format!("{}..{}", "../".repeat(depth - 1), self.outside.display())
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Only if a test failed: never leave the ghost behind.
        let _ = fs::remove_dir_all(&self.ghost);
        let _ = fs::remove_file(&self.ghost);
    }
}

/// An error and its causes, as `skiff` prints them.
fn chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    s
}

fn assert_mentions(err: &str, needles: &[&str]) {
    for n in needles {
        assert!(err.contains(n), "error does not mention {n:?}: {err}");
    }
}

/// A one-layer `docker save` archive of `layer`, tagged `hostile:latest`.
fn docker_save_of(layer: &TarBuilder) -> Vec<u8> {
    let mut save = DockerSave::new();
    save.image(&[layer.finish()], &["hostile:latest"]);
    save.bytes()
}

fn is_whiteout(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

// ---------------------------------------------------------------------------
// Entry names.

#[test]
fn test_import_dotdot_path_lands_inside_snapshot() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let climb = env.climb_to_outside();
    // The same climb as a GNU long name and as a PAX `path` record.
    let long = format!("{climb}/{}/long-pwned\0", "x".repeat(120));
    let mut layer = TarBuilder::new();
    layer
        .file(&format!("{climb}/pwned"), b"escaped?\n")
        .file("../../../../dotdot-top", b"top\n")
        .raw(
            tar::EntryType::GNULongName,
            b"././@LongLink",
            None,
            long.as_bytes(),
            Meta::default(),
            None,
        )
        .file("truncated-name", b"long\n")
        .pax(&[("path", format!("{climb}/pax-pwned").as_bytes())])
        .file("innocent", b"pax\n");
    let p = env.input("dotdot.tar", &docker_save_of(&layer));
    env.import_ok(&p);
    let rec = env.only_image();
    let snap = &env.snapshots(&rec)[0];
    let rel = env.outside.strip_prefix("/").expect("absolute");
    assert_eq!(
        fs::read(snap.join(rel).join("pwned")).expect("landed inside"),
        b"escaped?\n"
    );
    assert_eq!(
        fs::read(snap.join(rel).join("x".repeat(120)).join("long-pwned"))
            .expect("long name landed inside"),
        b"long\n"
    );
    assert_eq!(
        fs::read(snap.join(rel).join("pax-pwned")).expect("pax path landed inside"),
        b"pax\n"
    );
    assert!(!snap.join("innocent").exists() && !snap.join("truncated-name").exists());
    assert_eq!(
        fs::read(snap.join("dotdot-top")).expect("landed at the snapshot root"),
        b"top\n"
    );
    assert!(!env.tmp.path().join("dotdot-top").exists());
    assert!(!env.root.join("dotdot-top").exists());
    env.assert_outside_untouched();
    env.assert_tmp_empty();
    env.assert_store_usable();
}

#[test]
fn test_import_absolute_path_lands_inside_snapshot() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let abs_outside = format!("{}/abs-pwned", env.outside.display());
    let abs_ghost = format!("{}/pwned", env.ghost.display());
    let etc = format!("/etc/skiff-hostile-{}", sha256_hex(abs_ghost.as_bytes()));
    let mut layer = TarBuilder::new();
    layer
        .file(&abs_outside, b"abs\n")
        .file(&abs_ghost, b"ghost\n")
        .file(&etc, b"etc\n");
    let p = env.input("absolute.tar", &docker_save_of(&layer));
    env.import_ok(&p);
    let snap = env.snapshots(&env.only_image()).remove(0);
    for (path, body) in [
        (&abs_outside, &b"abs\n"[..]),
        (&abs_ghost, b"ghost\n"),
        (&etc, b"etc\n"),
    ] {
        let inside = snap.join(path.trim_start_matches('/'));
        assert_eq!(fs::read(&inside).expect("landed inside"), body, "{path}");
    }
    assert!(!Path::new(&etc).exists(), "{etc} was created on the host");
    env.assert_outside_untouched();
    env.assert_tmp_empty();
    env.assert_store_usable();
}

// ---------------------------------------------------------------------------
// Symlinks.

#[test]
fn test_import_symlink_then_write_through_is_refused() {
    if !privileged() {
        return;
    }
    // Absolute target that does not exist (mkdir -p through it would create it),
    // absolute target that exists, and a relative climb to it.
    let env = Env::new();
    let targets = [
        env.ghost.display().to_string(),
        env.outside.display().to_string(),
        env.climb_to_outside(),
    ];
    for (i, target) in targets.iter().enumerate() {
        for inner in ["pwned", "sub/dir/pwned"] {
            let mut layer = TarBuilder::new();
            layer
                .file("before", b"x")
                .symlink("evil", target)
                .file(&format!("evil/{inner}"), b"written through a symlink\n");
            let p = env.input(&format!("symlink-{i}.tar"), &docker_save_of(&layer));
            let err = env.import_err(&p);
            assert_mentions(&err, &[&format!("evil/{inner}"), "symlink"]);
            assert!(!env.outside.join("pwned").exists());
            assert!(!env.outside.join("sub").exists());
            env.assert_outside_untouched();
            env.assert_tmp_empty();
            assert!(env.store.images().list().expect("list").is_empty());
        }
    }
    // A symlink deeper in the path, planted with a directory in between.
    let mut layer = TarBuilder::new();
    layer
        .dir("a/")
        .symlink("a/b", &env.outside.display().to_string())
        .dir("a/b/c/")
        .file("a/b/c/pwned", b"x");
    let p = env.input("symlink-deep.tar", &docker_save_of(&layer));
    let err = env.import_err(&p);
    assert_mentions(&err, &["a/b/c", "symlink"]);
    env.assert_clean_failure();
}

#[test]
fn test_import_symlink_then_replace_is_neutralised() {
    if !privileged() {
        return;
    }
    // An entry that replaces a planted symlink replaces the link itself.
    let env = Env::new();
    let sentinel = env.outside.join(SENTINEL).display().to_string();
    let mut layer = TarBuilder::new();
    layer
        .symlink("file-over-link", &sentinel)
        .file("file-over-link", b"replaced\n")
        .symlink("dir-over-link", &env.outside.display().to_string())
        .dir("dir-over-link/")
        .file("dir-over-link/inside", b"inside\n")
        .symlink("ghost-link", &env.ghost.display().to_string())
        .dir("ghost-link/");
    let p = env.input("replace.tar", &docker_save_of(&layer));
    env.import_ok(&p);
    let snap = env.snapshots(&env.only_image()).remove(0);
    let m = fs::symlink_metadata(snap.join("file-over-link")).expect("stat");
    assert!(m.file_type().is_file());
    assert_eq!(
        fs::read(snap.join("file-over-link")).expect("read"),
        b"replaced\n"
    );
    assert!(fs::symlink_metadata(snap.join("dir-over-link"))
        .expect("stat")
        .file_type()
        .is_dir());
    assert_eq!(
        fs::read(snap.join("dir-over-link/inside")).expect("read"),
        b"inside\n"
    );
    assert!(fs::symlink_metadata(snap.join("ghost-link"))
        .expect("stat")
        .file_type()
        .is_dir());
    env.assert_outside_untouched();
    env.assert_tmp_empty();
    env.assert_store_usable();
}

// ---------------------------------------------------------------------------
// Hardlinks.

#[test]
fn test_import_hardlink_outside_is_refused() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let host_passwd = fs::metadata("/etc/passwd").expect("stat /etc/passwd");
    let sentinel = env.outside.join(SENTINEL).display().to_string();
    let climb_sentinel = format!("{}/{SENTINEL}", env.climb_to_outside());
    for (i, target) in [
        "../../../etc/passwd",
        "/etc/passwd",
        &sentinel,
        &climb_sentinel,
    ]
    .iter()
    .enumerate()
    {
        let mut layer = TarBuilder::new();
        layer.file("ok", b"x").hardlink("stolen", target);
        let p = env.input(&format!("hardlink-{i}.tar"), &docker_save_of(&layer));
        let err = env.import_err(&p);
        assert_mentions(&err, &["stolen", "hardlink"]);
        env.assert_outside_untouched();
        env.assert_tmp_empty();
    }
    let after = fs::metadata("/etc/passwd").expect("stat /etc/passwd");
    assert_eq!(after.nlink(), host_passwd.nlink(), "/etc/passwd was linked");
    env.assert_clean_failure();
}

#[test]
fn test_import_hardlink_resolves_inside_snapshot() {
    if !privileged() {
        return;
    }
    // The layer has its own etc/passwd: the climbing and absolute names
    // both mean that one, never the host's.
    let env = Env::new();
    let host_passwd = fs::metadata("/etc/passwd").expect("stat /etc/passwd");
    let mut layer = TarBuilder::new();
    layer
        .dir("etc/")
        .file("etc/passwd", b"root:x:0:0:inside:/root:/bin/sh\n")
        .hardlink("climb", "../../../etc/passwd")
        .hardlink("absolute", "/etc/passwd");
    let p = env.input("hardlink-inside.tar", &docker_save_of(&layer));
    env.import_ok(&p);
    let snap = env.snapshots(&env.only_image()).remove(0);
    let own = fs::metadata(snap.join("etc/passwd")).expect("stat own passwd");
    for name in ["climb", "absolute"] {
        let m = fs::metadata(snap.join(name)).expect("stat link");
        assert_eq!(m.ino(), own.ino(), "{name} is not the layer's etc/passwd");
        assert!(
            m.ino() != host_passwd.ino() || m.dev() != host_passwd.dev(),
            "{name} is the host's /etc/passwd"
        );
    }
    assert_eq!(own.nlink(), 3);
    let after = fs::metadata("/etc/passwd").expect("stat /etc/passwd");
    assert_eq!(after.nlink(), host_passwd.nlink());
    env.assert_outside_untouched();
    env.assert_store_usable();
}

#[test]
fn test_import_hardlink_through_symlink_is_refused() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let host_passwd = fs::metadata("/etc/passwd").expect("stat /etc/passwd");

    // The link target's parent is a symlink to the host's /etc.
    let mut layer = TarBuilder::new();
    layer
        .symlink("etc", "/etc")
        .hardlink("stolen", "etc/passwd");
    let p = env.input("hardlink-via-symlink.tar", &docker_save_of(&layer));
    let err = env.import_err(&p);
    assert_mentions(&err, &["stolen", "etc/passwd"]);
    env.assert_clean_failure();

    // A hardlink to a symlink links the symlink itself, never its target.
    let env = Env::new();
    let mut layer = TarBuilder::new();
    layer
        .symlink("link-to-passwd", "/etc/passwd")
        .hardlink("hl", "link-to-passwd");
    let p = env.input("hardlink-to-symlink.tar", &docker_save_of(&layer));
    env.import_ok(&p);
    let snap = env.snapshots(&env.only_image()).remove(0);
    let m = fs::symlink_metadata(snap.join("hl")).expect("stat hl");
    assert!(m.file_type().is_symlink(), "hl is not the symlink itself");
    assert_ne!(m.ino(), host_passwd.ino());
    assert_eq!(
        fs::read_link(snap.join("hl")).expect("readlink"),
        PathBuf::from("/etc/passwd")
    );
    let after = fs::metadata("/etc/passwd").expect("stat /etc/passwd");
    assert_eq!(after.nlink(), host_passwd.nlink());
    env.assert_outside_untouched();
    env.assert_store_usable();
}

// ---------------------------------------------------------------------------
// Whiteouts.

#[test]
fn test_import_whiteout_escape_names_are_refused() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    for (i, name) in ["a/.wh..", ".wh..", "a/.wh.", "a/b/.wh.."]
        .iter()
        .enumerate()
    {
        let mut layer = TarBuilder::new();
        layer.dir("a/").dir("a/b/").file(name, b"");
        let p = env.input(&format!("wh-escape-{i}.tar"), &docker_save_of(&layer));
        let err = env.import_err(&p);
        assert_mentions(&err, &[name, "whiteout"]);
        env.assert_outside_untouched();
        env.assert_tmp_empty();
    }
    env.assert_clean_failure();
}

#[test]
fn test_import_whiteout_climbing_path_stays_inside() {
    if !privileged() {
        return;
    }
    // `../…/outside/.wh.sentinel` and the absolute form whiteout a
    // file inside the snapshot, never the host's sentinel.
    let env = Env::new();
    let climb = format!("{}/.wh.{SENTINEL}", env.climb_to_outside());
    let abs = format!("{}/.wh.{SENTINEL}", env.outside.display());
    let dotdot_name = format!("{}/.wh...", env.outside.display());
    let mut layer = TarBuilder::new();
    layer
        .file(&climb, b"")
        .file(&abs, b"")
        .file(".wh.../x", b"x")
        .file("../.wh.up", b"");
    let p = env.input("wh-climb.tar", &docker_save_of(&layer));
    env.import_ok(&p);
    let snap = env.snapshots(&env.only_image()).remove(0);
    let rel = env.outside.strip_prefix("/").expect("absolute");
    assert!(is_whiteout(&snap.join(rel).join(SENTINEL)));
    assert!(is_whiteout(&snap.join("up")));
    // `.wh...` as a directory component is just a (strange) directory name.
    assert_eq!(fs::read(snap.join(".wh.../x")).expect("read"), b"x");
    env.assert_outside_untouched();

    // `outside/.wh...` is refused (it names `..`).
    let mut layer = TarBuilder::new();
    layer.file(&dotdot_name, b"");
    let p = env.input("wh-dotdot.tar", &docker_save_of(&layer));
    let err = env.import_err(&p);
    assert_mentions(&err, &[".wh...", "whiteout"]);
    env.assert_outside_untouched();
    env.assert_tmp_empty();
    env.assert_store_usable();
}

#[test]
fn test_import_whiteout_under_symlinked_parent_is_refused() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let outside = env.outside.display().to_string();
    let climb = env.climb_to_outside();
    let cases = [
        (outside.clone(), format!("evil/.wh.{SENTINEL}")),
        (climb.clone(), format!("evil/.wh.{SENTINEL}")),
        (outside.clone(), "evil/.wh..wh..opq".to_string()),
        (climb, "evil/.wh..wh..opq".to_string()),
        (env.ghost.display().to_string(), "evil/.wh.x".to_string()),
    ];
    for (i, (target, wh)) in cases.iter().enumerate() {
        let mut layer = TarBuilder::new();
        layer.symlink("evil", target).file(wh, b"");
        let p = env.input(&format!("wh-symlink-{i}.tar"), &docker_save_of(&layer));
        let err = env.import_err(&p);
        assert_mentions(&err, &[wh, "symlink"]);
        env.assert_outside_untouched();
        env.assert_tmp_empty();
    }
    env.assert_clean_failure();
}

// ---------------------------------------------------------------------------
// Device nodes.

#[test]
fn test_import_device_nodes_are_skipped_and_reported() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let mut layer = TarBuilder::new();
    layer
        .dir("dev/")
        .char_dev("dev/null", 1, 3)
        .block_dev("dev/sda", 8, 0)
        .char_dev("dev/kept-whiteout", 0, 0)
        .file("dev/regular", b"ok");
    let p = env.input("devices.tar", &docker_save_of(&layer));
    let report = env.import_ok(&p);
    let warnings = report.warnings.join("\n");
    assert_mentions(&warnings, &["dev/null", "1:3", "dev/sda", "8:0"]);
    assert!(
        !warnings.contains("kept-whiteout"),
        "0/0 device reported: {warnings}"
    );
    let snap = env.snapshots(&env.only_image()).remove(0);
    assert!(fs::symlink_metadata(snap.join("dev/null")).is_err());
    assert!(fs::symlink_metadata(snap.join("dev/sda")).is_err());
    assert!(is_whiteout(&snap.join("dev/kept-whiteout")));
    assert_eq!(fs::read(snap.join("dev/regular")).expect("read"), b"ok");
    // No device node anywhere in the store.
    let mut stack = vec![env.root.clone()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).expect("walk store") {
            let e = e.expect("walk store");
            let m = fs::symlink_metadata(e.path()).expect("stat");
            let ft = m.file_type();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_block_device() || (ft.is_char_device() && m.rdev() != 0) {
                panic!("device node {} in the store", e.path().display());
            }
        }
    }
    env.assert_outside_untouched();
    env.assert_store_usable();
}

// ---------------------------------------------------------------------------
// Integrity: digests, diff_ids, truncation, missing blobs, bad JSON.

fn simple_layer(name: &str) -> Vec<u8> {
    let mut t = TarBuilder::new();
    t.dir("data/")
        .file(&format!("data/{name}"), name.repeat(200).as_bytes());
    t.finish()
}

#[test]
fn test_import_oci_blob_digest_mismatch_is_refused() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let layout = write_oci_layout(
        &env.layout_dir("tampered"),
        &[simple_layer("a"), simple_layer("b")],
        Some("1"),
    );
    // Change the gzip header's mtime: the blob still decompresses to the
    // same tar (so the diff_id matches) but no longer has its digest.
    let victim = &layout.layer_digests[1];
    let path = layout.blob_path(victim);
    let mut bytes = fs::read(&path).expect("read blob");
    bytes[4] ^= 0x5a;
    fs::write(&path, &bytes).expect("tamper blob");
    let err = env.import_err(&layout.dir);
    assert_mentions(&err, &[victim, "digest mismatch"]);
    assert!(!env
        .store
        .content()
        .contains(&imagestore::Digest::parse(&common::digest_of(&bytes)).expect("digest")));
    env.assert_clean_failure();

    // A tampered config or manifest is refused before any layer is read.
    let env = Env::new();
    let layout = write_oci_layout(&env.layout_dir("cfg"), &[simple_layer("a")], None);
    fs::write(
        layout.blob_path(&layout.config_digest),
        b"{\"architecture\":\"x\"}",
    )
    .expect("tamper config");
    let err = env.import_err(&layout.dir);
    assert_mentions(&err, &[&layout.config_digest, "digest mismatch"]);
    assert!(env.store.snapshots().list().expect("list").is_empty());
    env.assert_clean_failure();

    let env = Env::new();
    let layout = write_oci_layout(&env.layout_dir("mf"), &[simple_layer("a")], None);
    let mpath = layout.blob_path(&layout.manifest_digest);
    let mut m = fs::read(&mpath).expect("read manifest");
    m.push(b' ');
    fs::write(&mpath, m).expect("tamper manifest");
    let err = env.import_err(&layout.dir);
    assert_mentions(&err, &[&layout.manifest_digest, "mismatch"]);
    env.assert_clean_failure();
}

#[test]
fn test_import_docker_diff_id_mismatch_is_refused() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let layers = [simple_layer("a"), simple_layer("b")];
    let wrong = common::digest_of(b"not the layer");
    let real_a = common::diff_id_of(&layers[0]);
    let mut save = DockerSave::new();
    let img = save.image_with(
        &layers,
        &["hostile:diffid"],
        Some(vec![real_a, wrong.clone()]),
    );
    let p = env.input("diffid.tar", &save.bytes());
    let err = env.import_err(&p);
    assert_mentions(&err, &["diff_id", &wrong, &img.layer_entries[1]]);
    env.assert_clean_failure();

    // The same through an OCI layout.
    let env = Env::new();
    let real_a = common::diff_id_of(&layers[0]);
    let layout = write_oci_layout_with(
        &env.layout_dir("diffid"),
        &layers,
        None,
        Some(vec![real_a, wrong.clone()]),
    );
    let err = env.import_err(&layout.dir);
    assert_mentions(&err, &["diff_id", &wrong, &layout.layer_digests[1]]);
    env.assert_clean_failure();
}

#[test]
fn test_import_oci_truncated_gzip_layer_is_refused() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    // Incompressible content, so half the blob is half the tar.
    let noise: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut t = TarBuilder::new();
    t.file("noise.bin", &noise).file("after", b"x");
    let layout = write_oci_layout(&env.layout_dir("truncated"), &[t.finish()], None);
    let victim = &layout.layer_digests[0];
    let path = layout.blob_path(victim);
    let bytes = fs::read(&path).expect("read blob");
    fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate blob");
    let err = env.import_err(&layout.dir);
    assert_mentions(&err, &[victim]);
    env.assert_clean_failure();

    // Cut just before the gzip trailer: the tar is whole, the stream is not.
    let env = Env::new();
    let layout = write_oci_layout(&env.layout_dir("trailer"), &[simple_layer("a")], None);
    let victim = &layout.layer_digests[0];
    let path = layout.blob_path(victim);
    let bytes = fs::read(&path).expect("read blob");
    fs::write(&path, &bytes[..bytes.len() - 4]).expect("truncate blob");
    let err = env.import_err(&layout.dir);
    assert_mentions(&err, &[victim]);
    env.assert_clean_failure();
}

#[test]
fn test_import_truncated_gzip_wrapped_docker_save_is_refused() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let noise: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let mut t = TarBuilder::new();
    t.file("noise.bin", &noise);
    let mut save = DockerSave::new();
    save.image(&[t.finish()], &["hostile:truncated"]);
    let archive = save.bytes();
    let gz = gzip(&archive);
    let p = env.input("truncated.tar.gz", &gz[..gz.len() / 2]);
    let err = env.import_err(&p);
    assert_mentions(&err, &[&p.display().to_string()]);
    assert!(
        err.contains("layer.tar") || err.contains("after entry"),
        "error names no entry: {err}"
    );
    env.assert_clean_failure();

    // The gzip wrapper minus its trailer: every entry is whole, the stream is not.
    let env = Env::new();
    let p = env.input("no-trailer.tar.gz", &gz[..gz.len() - 6]);
    let err = env.import_err(&p);
    assert_mentions(&err, &[&p.display().to_string()]);
    env.assert_clean_failure();
}

#[test]
fn test_import_oci_missing_blob_is_refused() {
    if !privileged() {
        return;
    }
    // The manifest, the config and a layer, each missing in turn.
    for which in ["manifest", "config", "layer"] {
        let env = Env::new();
        let layout = write_oci_layout(
            &env.layout_dir(which),
            &[simple_layer("a"), simple_layer("b")],
            Some("1"),
        );
        let victim = match which {
            "manifest" => layout.manifest_digest.clone(),
            "config" => layout.config_digest.clone(),
            _ => layout.layer_digests[1].clone(),
        };
        fs::remove_file(layout.blob_path(&victim)).expect("remove blob");
        let err = env.import_err(&layout.dir);
        let hex = victim.trim_start_matches("sha256:");
        assert_mentions(&err, &[hex, "missing"]);
        env.assert_clean_failure();
    }
}

#[test]
fn test_import_docker_bad_manifest_json_is_refused() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let mut save = DockerSave::new();
    save.image(&[simple_layer("a")], &["hostile:json"]);
    for (i, bad) in [
        &b"[{\"Config\": \"abc.json\", \"Layers\": ["[..],
        b"{\"Config\": \"x\"}",
        b"null",
        b"\x00\x01\x02",
        b"[{\"Config\": 7, \"Layers\": []}]",
    ]
    .iter()
    .enumerate()
    {
        let p = env.input(&format!("badjson-{i}.tar"), &save.bytes_with_manifest(bad));
        let err = env.import_err(&p);
        assert_mentions(&err, &["manifest.json"]);
        env.assert_tmp_empty();
    }
    env.assert_clean_failure();
}

#[test]
fn test_import_docker_config_digest_mismatch_is_refused() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let layer = simple_layer("a");
    let good = common::config_json(&[common::diff_id_of(&layer)]);
    let forged_hex = sha256_hex(b"some other config");
    let forged = format!("{forged_hex}.json");
    let mut save = DockerSave::new();
    save.tar.file(&forged, &good);
    save.tar.dir("l1/").file("l1/layer.tar", &layer);
    save.manifest.push(serde_json::json!({
        "Config": forged,
        "RepoTags": ["hostile:config"],
        "Layers": ["l1/layer.tar"],
    }));
    let p = env.input("config-digest.tar", &save.bytes());
    let err = env.import_err(&p);
    assert_mentions(&err, &[&forged_hex, "digest mismatch"]);
    env.assert_clean_failure();
}

#[test]
fn test_import_docker_layer_symlink_outside_archive_is_refused() {
    if !privileged() {
        return;
    }
    // `layer.tar` links that leave the archive resolve inside it (where
    // there is nothing), never to a host file.
    for (i, target) in [
        "../../etc/passwd",
        "/etc/passwd",
        "../../../../../../../../etc/passwd",
    ]
    .iter()
    .enumerate()
    {
        let env = Env::new();
        let host = fs::read("/etc/passwd").expect("read /etc/passwd");
        let diff = common::digest_of(&host);
        let mut save = DockerSave::new();
        let cfg = common::config_json(std::slice::from_ref(&diff));
        let cfg_name = format!("{}.json", sha256_hex(&cfg));
        save.tar.file(&cfg_name, &cfg);
        save.tar.dir("l1/").symlink("l1/layer.tar", target);
        save.manifest.push(serde_json::json!({
            "Config": cfg_name,
            "RepoTags": ["hostile:link"],
            "Layers": ["l1/layer.tar"],
        }));
        let p = env.input(&format!("layer-link-{i}.tar"), &save.bytes());
        let err = env.import_err(&p);
        assert_mentions(&err, &["l1/layer.tar", "missing"]);
        env.assert_clean_failure();
    }
}

#[test]
fn test_import_oci_layout_blob_symlink_to_host_is_refused() {
    if !privileged() {
        return;
    }
    // In a layout directory, a blob that is a symlink out of the layout is
    // not read from the host.
    let env = Env::new();
    let layout = write_oci_layout(&env.layout_dir("bloblink"), &[simple_layer("a")], None);
    let victim = &layout.layer_digests[0];
    let path = layout.blob_path(victim);
    fs::remove_file(&path).expect("remove blob");
    let sentinel = env.outside.join(SENTINEL);
    std::os::unix::fs::symlink(&sentinel, &path).expect("plant symlink");
    let err = env.import_err(&layout.dir);
    assert_mentions(&err, &[victim.trim_start_matches("sha256:")]);
    env.assert_clean_failure();

    let env = Env::new();
    let layout = write_oci_layout(&env.layout_dir("cfglink"), &[simple_layer("a")], None);
    let path = layout.blob_path(&layout.config_digest);
    fs::remove_file(&path).expect("remove blob");
    std::os::unix::fs::symlink("../../../../outside/sentinel", &path).expect("plant symlink");
    let err = env.import_err(&layout.dir);
    assert_mentions(&err, &[&layout.config_digest]);
    env.assert_clean_failure();
}

// ---------------------------------------------------------------------------
// Many layers: the lowerdir option fits in a page, and the image mounts.

struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn overlay_supported() -> bool {
    fs::read_to_string("/proc/filesystems").is_ok_and(|s| s.contains("\toverlay"))
}

#[test]
fn test_import_sixty_layers_lowerdir_fits_and_mounts() {
    if !privileged() {
        return;
    }
    const LAYERS: usize = 60;
    let env = Env::new();
    // A second store whose root is a long-ish path (as long as
    // `/home/someone/.local/share/skiff-store`), padded to ROOT_LEN bytes.
    const ROOT_LEN: usize = 40;
    let base_len = env.tmp.path().as_os_str().len();
    let pad = ROOT_LEN.saturating_sub(base_len + 1).max(1);
    let long_root = env.tmp.path().join("s".repeat(pad));
    let store = Store::open(&long_root).expect("open store");

    let mut layers = Vec::new();
    for i in 0..LAYERS {
        let mut t = TarBuilder::new();
        t.file(&format!("layer-{i:02}.txt"), format!("{i}\n").as_bytes());
        match i {
            0 => {
                t.file("bottom.txt", b"bottom\n")
                    .file("gone.txt", b"deleted above\n")
                    .dir("opq/")
                    .file("opq/old", b"hidden by opaque dir\n");
            }
            i if i == LAYERS - 1 => {
                t.file("top.txt", b"top\n")
                    .file(".wh.gone.txt", b"")
                    .dir("opq/")
                    .file("opq/.wh..wh..opq", b"")
                    .file("opq/new", b"new\n");
            }
            _ => {}
        }
        layers.push(t.finish());
    }
    let mut save = DockerSave::new();
    save.image(&layers, &["hostile:sixty"]);
    let p = env.input("sixty.tar", &save.bytes());
    let report = store
        .import(&Input::Path(p), &ImportOptions::default())
        .unwrap_or_else(|e| panic!("import failed: {}", chain(&e)));
    assert_eq!(report.images[0].layers, LAYERS);
    assert_eq!(report.layers_unpacked, LAYERS);
    let rec = store.resolve("hostile:sixty").expect("resolve");
    let md = store.mount_description(&rec).expect("mount description");
    assert_eq!(md.lowerdirs.len(), LAYERS);
    let lower: Vec<String> = md
        .lowerdirs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let option = format!("lowerdir={}", lower.join(":"));
    let _ = writeln!(
        std::io::stderr(),
        "store root {} ({} bytes): lowerdir option for {LAYERS} layers is {} bytes",
        store.root().display(),
        store.root().as_os_str().len(),
        option.len()
    );
    assert!(
        option.len() < 4096,
        "lowerdir option is {} bytes: too long for one page",
        option.len()
    );
    assert!(
        fs::read(md.lowerdirs[0].join("top.txt")).is_ok(),
        "top first"
    );
    assert!(fs::read(md.lowerdirs[LAYERS - 1].join("bottom.txt")).is_ok());

    if !overlay_supported() && !skip("overlayfs is not available: mount part skipped") {
        return;
    }
    let target = env.tmp.path().join("mnt");
    fs::create_dir(&target).expect("create mount point");
    if let Err(e) = nix::mount::mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(option.as_str()),
    ) {
        skip(&format!("cannot mount overlay here: {e}"));
        return;
    }
    let _guard = MountGuard(target.clone());
    assert_eq!(
        fs::read(target.join("bottom.txt")).expect("bottom layer"),
        b"bottom\n"
    );
    assert_eq!(
        fs::read(target.join("top.txt")).expect("top layer"),
        b"top\n"
    );
    assert_eq!(
        fs::read(target.join("layer-30.txt")).expect("middle"),
        b"30\n"
    );
    assert!(!target.join("gone.txt").exists(), "whiteout did not hide");
    let opq: Vec<String> = fs::read_dir(target.join("opq"))
        .expect("list opq")
        .map(|e| e.expect("list").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(opq, vec!["new".to_string()], "opaque dir did not hide");
}

// ---------------------------------------------------------------------------
// The layer applier, directly.

fn apply(layer: &TarBuilder) -> (tempfile::TempDir, PathBuf, imagestore::apply::ApplyReport) {
    let tmp = tempfile::Builder::new()
        .prefix("skiff-apply-")
        .tempdir_in(test_tmp_base())
        .expect("create test dir");
    let root = tmp.path().join("snap");
    fs::create_dir(&root).expect("create snapshot dir");
    let bytes = layer.finish();
    let report =
        apply_layer(&bytes[..], &root).unwrap_or_else(|e| panic!("apply failed: {}", chain(&e)));
    (tmp, root, report)
}

#[test]
fn test_apply_layer_converts_whiteouts() {
    if !privileged() {
        return;
    }
    let mut layer = TarBuilder::new();
    layer
        .file(".wh.foo", b"")
        .dir("dir/")
        .file("dir/.wh..wh..opq", b"")
        .file("dir/kept", b"k")
        .dir("other/")
        .file("other/.wh.gone", b"")
        .file(".wh..wh.plnk", b"");
    let (_tmp, root, report) = apply(&layer);
    assert!(is_whiteout(&root.join("foo")));
    assert!(is_whiteout(&root.join("other/gone")));
    assert!(!root.join(".wh.foo").exists());
    assert_eq!(
        xattr::get(root.join("dir"), OPAQUE_XATTR).expect("getxattr"),
        Some(b"y".to_vec())
    );
    assert!(!root.join("dir/.wh..wh..opq").exists());
    assert_eq!(fs::read(root.join("dir/kept")).expect("read"), b"k");
    assert_eq!(
        xattr::get(root.join("other"), OPAQUE_XATTR).expect("getxattr"),
        None
    );
    assert_eq!(report.whiteouts, 4);
}

#[test]
fn test_apply_layer_keeps_setuid_setgid_modes() {
    if !privileged() {
        return;
    }
    let owned = |mode| Meta {
        mode,
        uid: 1234,
        gid: 5678,
        ..Meta::default()
    };
    let mut layer = TarBuilder::new();
    layer
        .file_meta("suid", b"#!", owned(0o4755))
        .file_meta("sgid", b"#!", owned(0o2711))
        .file_meta("both", b"#!", owned(0o6750))
        .file_meta("root-suid", b"#!", Meta::mode(0o4755))
        .dir_meta("sgid-dir/", owned(0o2775))
        .dir_meta("sticky/", Meta::mode(0o1777));
    let (_tmp, root, _) = apply(&layer);
    for (name, mode) in [
        ("suid", 0o4755),
        ("sgid", 0o2711),
        ("both", 0o6750),
        ("root-suid", 0o4755),
        ("sgid-dir", 0o2775),
        ("sticky", 0o1777),
    ] {
        let m = fs::symlink_metadata(root.join(name)).expect("stat");
        assert_eq!(m.permissions().mode() & 0o7777, mode, "{name}");
    }
}

#[test]
fn test_apply_layer_keeps_owners() {
    if !privileged() {
        return;
    }
    let meta = |uid, gid, mode| Meta {
        mode,
        uid,
        gid,
        ..Meta::default()
    };
    let mut layer = TarBuilder::new();
    layer
        .dir_meta("home/", meta(2222, 3333, 0o750))
        .file_meta("home/file", b"x", meta(1234, 5678, 0o640))
        .symlink_meta("home/link", "file", meta(4444, 5555, 0o777))
        .raw(
            tar::EntryType::Fifo,
            b"home/fifo",
            None,
            b"",
            meta(6666, 7777, 0o600),
            None,
        );
    let (_tmp, root, _) = apply(&layer);
    for (name, uid, gid) in [
        ("home", 2222, 3333),
        ("home/file", 1234, 5678),
        ("home/link", 4444, 5555),
        ("home/fifo", 6666, 7777),
    ] {
        let m = fs::symlink_metadata(root.join(name)).expect("stat");
        assert_eq!((m.uid(), m.gid()), (uid, gid), "{name}");
    }
    let m = fs::symlink_metadata(root.join("home/fifo")).expect("stat");
    assert!(m.file_type().is_fifo());
}

#[test]
fn test_apply_layer_keeps_mtimes_and_sets_dirs_last() {
    if !privileged() {
        return;
    }
    let at = |mtime, mode| Meta {
        mode,
        mtime,
        ..Meta::default()
    };
    let mut layer = TarBuilder::new();
    layer
        .dir_meta("./", at(900, 0o755))
        .dir_meta("d/", at(1000, 0o755))
        .file_meta("d/f", b"f", at(2000, 0o644))
        .dir_meta("d/sub/", at(3000, 0o755))
        .file_meta("d/sub/g", b"g", at(4000, 0o644))
        .symlink_meta("d/l", "f", at(5000, 0o777))
        // Written into d/ after its own entry, and into the root.
        .file_meta("d/late", b"l", at(6000, 0o644))
        .file_meta("top", b"t", at(7000, 0o644));
    let (_tmp, root, _) = apply(&layer);
    for (name, mtime) in [
        ("", 900),
        ("d", 1000),
        ("d/f", 2000),
        ("d/sub", 3000),
        ("d/sub/g", 4000),
        ("d/l", 5000),
        ("d/late", 6000),
        ("top", 7000),
    ] {
        let m = fs::symlink_metadata(root.join(name)).expect("stat");
        assert_eq!(m.mtime(), mtime, "mtime of {name:?}");
    }
}

#[test]
fn test_apply_layer_hardlinks_share_an_inode() {
    if !privileged() {
        return;
    }
    let mut layer = TarBuilder::new();
    layer
        .dir("bin/")
        .file_meta("bin/busybox", b"\x7fELF", Meta::mode(0o755))
        .hardlink("bin/sh", "bin/busybox")
        .hardlink("bin/ls", "./bin/busybox")
        .dir("usr/")
        .hardlink("usr/env", "/bin/busybox");
    let (_tmp, root, _) = apply(&layer);
    let a = fs::metadata(root.join("bin/busybox")).expect("stat");
    for name in ["bin/sh", "bin/ls", "usr/env"] {
        let m = fs::metadata(root.join(name)).expect("stat");
        assert_eq!(m.ino(), a.ino(), "{name}");
    }
    assert_eq!(a.nlink(), 4);
}

#[test]
fn test_apply_layer_keeps_security_capability_xattr() {
    if !privileged() {
        return;
    }
    // struct vfs_cap_data, revision 2, effective: cap_net_bind_service.
    let mut cap = Vec::new();
    for word in [0x0200_0001u32, 1 << 10, 0, 0, 0] {
        cap.extend_from_slice(&word.to_le_bytes());
    }
    let mut layer = TarBuilder::new();
    layer
        .pax(&[
            ("SCHILY.xattr.security.capability", &cap),
            ("SCHILY.xattr.user.note", b"kept"),
        ])
        .file_meta(
            "ping",
            b"\x7fELF",
            Meta {
                mode: 0o755,
                uid: 1234,
                gid: 5678,
                ..Meta::default()
            },
        );
    let (_tmp, root, report) = apply(&layer);
    let got = xattr::get(root.join("ping"), "security.capability")
        .expect("getxattr")
        .expect("security.capability is set");
    assert_eq!(got, cap);
    assert_eq!(
        xattr::get(root.join("ping"), "user.note").expect("getxattr"),
        Some(b"kept".to_vec())
    );
    let m = fs::metadata(root.join("ping")).expect("stat");
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
}

#[test]
fn test_apply_layer_ignores_overlay_xattrs_from_archive() {
    if !privileged() {
        return;
    }
    let mut layer = TarBuilder::new();
    layer
        .pax(&[("SCHILY.xattr.trusted.overlay.redirect", b"/etc")])
        .dir("redirected/")
        .pax(&[("SCHILY.xattr.trusted.overlay.opaque", b"y")])
        .dir("forged-opaque/")
        .pax(&[("SCHILY.xattr.trusted.overlay.metacopy", b"")])
        .file("meta", b"m");
    let (_tmp, root, report) = apply(&layer);
    for (name, attr) in [
        ("redirected", "trusted.overlay.redirect"),
        ("forged-opaque", "trusted.overlay.opaque"),
        ("meta", "trusted.overlay.metacopy"),
    ] {
        assert_eq!(
            xattr::get(root.join(name), attr).expect("getxattr"),
            None,
            "{name} got {attr}"
        );
    }
    let skipped = report.skipped.join("\n");
    assert_mentions(
        &skipped,
        &[
            "redirected",
            "trusted.overlay.redirect",
            "forged-opaque",
            "trusted.overlay.opaque",
        ],
    );
}

/// `SKIFF_IMAGE_CORPUS`, resolved: a relative path is taken from the
/// current directory if the corpus is there, else from the workspace root
/// (`.ci/run` gives it relative to the root, and this crate's tests run in
/// `imagestore/`).
fn corpus_dir() -> Option<PathBuf> {
    let raw = PathBuf::from(std::env::var_os("SKIFF_IMAGE_CORPUS")?);
    if raw.is_absolute() || raw.join("README.md").is_file() {
        return Some(raw);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("imagestore/ has a parent");
    Some(workspace.join(raw))
}

#[test]
fn test_apply_layer_corpus_regclient_whiteouts() {
    let Some(corpus) = corpus_dir() else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: SKIFF_IMAGE_CORPUS is not set, so raw-layers/regclient-layer-wh.tar \
             from the external image corpus was not applied"
        );
        return;
    };
    if !privileged() {
        return;
    }
    let path = Path::new(&corpus).join("raw-layers/regclient-layer-wh.tar");
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let tmp = tempfile::Builder::new()
        .prefix("skiff-apply-")
        .tempdir_in(test_tmp_base())
        .expect("create test dir");
    let root = tmp.path().join("snap");
    fs::create_dir(&root).expect("create snapshot dir");
    let report = apply_layer(&bytes[..], &root).unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert!(is_whiteout(&root.join("layer2.txt")));
    assert!(!root.join(".wh.layer2.txt").exists());
    assert_eq!(
        xattr::get(root.join("exdir"), OPAQUE_XATTR).expect("getxattr"),
        Some(b"y".to_vec())
    );
    assert!(!root.join("exdir/.wh..wh..opq").exists());
    assert!(root.join("layer1.txt").is_file());
    assert!(root.join("layer3.txt").is_file());
    assert_eq!(report.whiteouts, 2);

    // Over the plain layer, as overlayfs stacks them: layer2.txt is gone.
    let plain_path = Path::new(&corpus).join("raw-layers/regclient-layer.tar");
    let plain =
        fs::read(&plain_path).unwrap_or_else(|e| panic!("read {}: {e}", plain_path.display()));
    let lower = tmp.path().join("plain");
    fs::create_dir(&lower).expect("create snapshot dir");
    apply_layer(&plain[..], &lower).unwrap_or_else(|e| panic!("{}", chain(&e)));
    for f in ["layer1.txt", "layer2.txt", "layer3.txt"] {
        assert!(lower.join(f).is_file(), "{f} missing from the plain layer");
    }
    if !overlay_supported() && !skip("overlayfs is not available: mount part skipped") {
        return;
    }
    let target = tmp.path().join("mnt");
    fs::create_dir(&target).expect("create mount point");
    let option = format!("lowerdir={}:{}", root.display(), lower.display());
    if let Err(e) = nix::mount::mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(option.as_str()),
    ) {
        skip(&format!("cannot mount overlay here: {e}"));
        return;
    }
    let _guard = MountGuard(target.clone());
    assert!(target.join("layer1.txt").is_file());
    assert!(target.join("layer3.txt").is_file());
    assert!(
        !target.join("layer2.txt").exists(),
        "whiteout did not hide layer2.txt"
    );
}
