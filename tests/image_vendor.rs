//! The vendored images, imported through every format skiff accepts, land on
//! disk exactly as their layer tars say: files, modes, owners, links,
//! whiteouts and mtimes. Checked against the archives themselves.

mod support;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::Digest as _;
use support::env::{have, vendor, Env};
use support::mounts::mount_overlay;
use support::privilege::{is_root, prerequisite};
use support::tar::{gzip, layer_tars};

fn sha(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// Import and return (image id, lowerdirs top first).
fn import(env: &Env, args: &[&str]) -> (String, Vec<PathBuf>) {
    let mut a = vec!["image", "import"];
    a.extend_from_slice(args);
    let report = env.json(&a);
    let id = report["images"][0]["id"].as_str().expect("id").to_string();
    let inspect = env.json(&["image", "inspect", &id]);
    let lowers = inspect["rootfs"]["lowerdirs"]
        .as_array()
        .expect("lowerdirs")
        .iter()
        .map(|p| PathBuf::from(p.as_str().expect("str")))
        .collect();
    (id, lowers)
}

/// Check one snapshot directory against its layer tar.
fn check_layer(tar_bytes: &[u8], snap: &Path) {
    let mut ar = tar::Archive::new(tar_bytes);
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        let name = e
            .path()
            .expect("path")
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        let h = e.header().clone();
        let path = snap.join(&name);
        let base = path
            .file_name()
            .map(|b| b.to_string_lossy().into_owned())
            .unwrap_or_default();
        if base == ".wh..wh..opq" {
            let parent = path.parent().expect("parent");
            let v = xattr::get(parent, "trusted.overlay.opaque").expect("getxattr");
            assert_eq!(
                v.as_deref(),
                Some(&b"y"[..]),
                "{name}: opaque xattr on parent"
            );
            assert!(!path.exists(), "{name}: marker itself must not be created");
            continue;
        }
        if let Some(target) = base.strip_prefix(".wh.") {
            let wh = path.with_file_name(target);
            let m = fs::symlink_metadata(&wh)
                .unwrap_or_else(|e| panic!("{name}: whiteout missing: {e}"));
            assert!(
                m.file_type().is_char_device(),
                "{name}: whiteout is a char device"
            );
            assert_eq!(m.rdev(), 0, "{name}: whiteout is 0/0");
            assert!(
                !path.exists(),
                "{name}: .wh. file itself must not be created"
            );
            continue;
        }
        let m = fs::symlink_metadata(&path)
            .unwrap_or_else(|e| panic!("{name}: missing in snapshot: {e}"));
        let mode = h.mode().expect("mode") & 0o7777;
        match h.entry_type() {
            tar::EntryType::Directory => {
                assert!(m.is_dir(), "{name}: directory");
                assert_eq!(m.mode() & 0o7777, mode, "{name}: mode");
            }
            tar::EntryType::Regular => {
                assert!(m.is_file(), "{name}: regular file");
                assert_eq!(
                    m.mode() & 0o7777,
                    mode,
                    "{name}: mode (setuid/setgid included)"
                );
                let mut want = Vec::new();
                e.read_to_end(&mut want).expect("read");
                assert_eq!(
                    sha(&fs::read(&path).expect("read")),
                    sha(&want),
                    "{name}: content"
                );
            }
            tar::EntryType::Symlink => {
                assert!(m.file_type().is_symlink(), "{name}: symlink");
                let target = e.link_name().expect("link").expect("target").into_owned();
                assert_eq!(
                    fs::read_link(&path).expect("readlink"),
                    target,
                    "{name}: target"
                );
            }
            tar::EntryType::Link => {
                let target = e.link_name().expect("link").expect("target").into_owned();
                let tm = fs::symlink_metadata(snap.join(&target)).expect("hardlink target");
                assert_eq!(
                    m.ino(),
                    tm.ino(),
                    "{name}: hardlink shares the inode of {target:?}"
                );
                continue;
            }
            other => panic!("{name}: unexpected entry type {other:?} in a vendored image"),
        }
        assert_eq!(m.uid() as u64, h.uid().expect("uid"), "{name}: uid");
        assert_eq!(m.gid() as u64, h.gid().expect("gid"), "{name}: gid");
        assert_eq!(
            m.mtime() as u64,
            h.mtime().expect("mtime"),
            "{name}: mtime (directories too)"
        );
    }
}

fn check_image(archive: &Path, lowers: &[PathBuf]) {
    let tars = layer_tars(archive);
    assert_eq!(tars.len(), lowers.len(), "one snapshot per layer");
    for (i, t) in tars.iter().enumerate() {
        check_layer(t, &lowers[lowers.len() - 1 - i]);
    }
}

#[test]
fn test_vendor_busybox_and_compat_match_their_layers_on_disk() {
    if !prerequisite(is_root(), "root (for chown, mknod and trusted xattrs)") {
        return;
    }
    let env = Env::new();
    for name in ["busybox.tar", "compat.tar"] {
        let archive = vendor(name);
        let (_, lowers) = import(&env, &[archive.to_str().expect("utf8")]);
        check_image(&archive, &lowers);
    }
    // The two images share their busybox layers: 2 + 4 snapshots.
    assert_eq!(env.count("meta/snapshots"), 6);
    assert_eq!(env.count("snapshots"), 6);
}

#[test]
fn test_vendor_compat_overlay_shows_whiteouts_links_and_modes() {
    if !prerequisite(is_root(), "root (to mount overlayfs)") {
        return;
    }
    let env = Env::new();
    let (_, lowers) = import(&env, &[vendor("compat.tar").to_str().expect("utf8")]);
    let mnt = env.path("mnt");
    let guard = mount_overlay(&lowers, &mnt);
    if !prerequisite(guard.is_ok(), "overlayfs mount") {
        return;
    }
    let _guard = guard.expect("checked");
    assert!(mnt.join("bin/busybox").is_file());
    assert!(
        !mnt.join("data/deleted.txt").exists(),
        "whiteout hides the deleted file"
    );
    assert_eq!(
        fs::read_to_string(mnt.join("data/kept.txt")).expect("kept"),
        "kept\n"
    );
    let replaced: Vec<String> = fs::read_dir(mnt.join("data/replaced"))
        .expect("replaced")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        replaced,
        vec!["new.txt"],
        "opaque directory hides the old contents"
    );
    let a = fs::metadata(mnt.join("data/links/hard-a")).expect("hard-a");
    let b = fs::metadata(mnt.join("data/links/hard-b")).expect("hard-b");
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.nlink(), 2);
    assert_eq!(
        fs::read_link(mnt.join("data/links/soft-a")).expect("soft"),
        Path::new("hard-a")
    );
    assert_eq!(
        fs::read_to_string(mnt.join("data/links/kept-link")).expect("via symlink"),
        "kept\n"
    );
    let suid = fs::metadata(mnt.join("usr/local/bin/suid-tool")).expect("suid");
    assert_eq!(suid.mode() & 0o7777, 0o4755);
    let sgid = fs::metadata(mnt.join("usr/local/bin/sgid-tool")).expect("sgid");
    assert_eq!(sgid.mode() & 0o7777, 0o2755);
    let owned = fs::metadata(mnt.join("home/app/owned.txt")).expect("owned");
    assert_eq!((owned.uid(), owned.gid()), (1000, 1000));
    let passwd = fs::read_to_string(mnt.join("etc/passwd")).expect("passwd");
    assert!(passwd.contains("app:x:1000:1000:"));
}

fn import_stdin(env: &Env, data: &[u8]) -> serde_json::Value {
    let mut child = env
        .skiff()
        .args(["image", "import", "-", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    // Dribble the first block to exercise short reads on the pipe.
    stdin.write_all(&data[..100]).expect("write");
    stdin.flush().expect("flush");
    std::thread::sleep(std::time::Duration::from_millis(20));
    stdin.write_all(&data[100..]).expect("write");
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "stdin import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn test_vendor_busybox_every_wrapper_gives_the_same_image() {
    if !prerequisite(is_root(), "root") {
        return;
    }
    let env = Env::new();
    let plain = vendor("busybox.tar");
    let (id, _) = import(&env, &[plain.to_str().expect("utf8")]);

    // gzip-wrapped file, detected from content even under a misleading name.
    let gz = env.path("busybox.oci");
    fs::write(&gz, gzip(&fs::read(&plain).expect("read"))).expect("write gz");
    let r = env.json(&["image", "import", gz.to_str().expect("utf8")]);
    assert_eq!(r["images"][0]["id"], id.as_str());
    assert_eq!(r["layers_unpacked"], 0, "re-import writes no layer data");
    assert!(r["format"].as_str().expect("format").contains("gzip"));

    // stdin, plain and gzip.
    let r = import_stdin(&env, &fs::read(&plain).expect("read"));
    assert_eq!(r["images"][0]["id"], id.as_str());
    let r = import_stdin(&env, &fs::read(&gz).expect("read"));
    assert_eq!(r["images"][0]["id"], id.as_str());

    // --tag adds a reference.
    let r = env.json(&[
        "image",
        "import",
        plain.to_str().expect("utf8"),
        "--tag",
        "mine/bb:1",
    ]);
    assert!(r["images"][0]["refs"]
        .as_array()
        .expect("refs")
        .iter()
        .any(|t| t == "docker.io/mine/bb:1"));
    let ls = env.json(&["image", "ls"]);
    let refs: Vec<&str> = ls
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["reference"].as_str())
        .collect();
    assert!(
        refs.contains(&"docker.io/mine/bb:1")
            && refs.contains(&"docker.io/skiff-vendor/busybox:latest"),
        "{refs:?}"
    );
}

#[test]
fn test_vendor_oci_layout_archive_and_zstd_via_skopeo() {
    if !prerequisite(is_root(), "root")
        || !prerequisite(have("skopeo"), "skopeo (apt-get install skopeo)")
    {
        return;
    }
    let env = Env::new();
    let src = format!("docker-archive:{}", vendor("compat.tar").display());
    let layout = env.path("layout");
    let ociar = env.path("compat-oci.tar");
    let zstd = env.path("zstd-layout");
    let runs: [(Vec<String>, &Path); 3] = [
        (
            vec![src.clone(), format!("oci:{}:v1", layout.display())],
            &layout,
        ),
        (
            vec![src.clone(), format!("oci-archive:{}:v1", ociar.display())],
            &ociar,
        ),
        (
            vec![
                "--dest-compress-format".into(),
                "zstd".into(),
                src.clone(),
                format!("oci:{}:v1", zstd.display()),
            ],
            &zstd,
        ),
    ];
    let (first_id, _) = import(&env, &[vendor("compat.tar").to_str().expect("utf8")]);
    let diff_ids = |env: &Env, id: &str| -> Vec<serde_json::Value> {
        let i = env.json(&["image", "inspect", id]);
        i["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["diff_id"].clone())
            .collect()
    };
    let want = diff_ids(&env, &first_id);
    for (args, _) in &runs {
        let out = Command::new("skopeo")
            .arg("copy")
            .arg("--quiet")
            .args(args)
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for (_, path) in &runs {
        let fresh = Env::new();
        let (id, lowers) = import(&fresh, &[path.to_str().expect("utf8")]);
        // skopeo rewrites the config as OCI (new id), but the layers are the same.
        assert_eq!(
            diff_ids(&fresh, &id),
            want,
            "{}: same layers in every format",
            path.display()
        );
        check_image(&vendor("compat.tar"), &lowers);
        // And into the shared store: all layers reused.
        let r = env.json(&["image", "import", path.to_str().expect("utf8")]);
        assert_eq!(r["layers_unpacked"], 0, "{}", path.display());
    }
    // A bare ref.name tag is named after the layout directory.
    let inspect = env.json(&["image", "inspect", "layout:v1"]);
    assert_eq!(diff_ids(&env, inspect["id"].as_str().expect("id")), want);
}

#[test]
fn test_vendor_docker_save_pipe() {
    if !prerequisite(is_root(), "root") {
        return;
    }
    let docker_ok = Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    if !prerequisite(docker_ok, "a running Docker engine") {
        return;
    }
    let env = Env::new();
    let load = Command::new("docker")
        .args(["load", "-q", "-i"])
        .arg(vendor("busybox.tar"))
        .output()
        .expect("docker load");
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    let pipeline = format!(
        "docker save skiff-vendor/busybox:latest | {} --root {} image import - --json",
        env!("CARGO_BIN_EXE_skiff"),
        env.root().display()
    );
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", &pipeline])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        r["images"][0]["refs"][0],
        "docker.io/skiff-vendor/busybox:latest"
    );
}
