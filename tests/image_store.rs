//! Store-level behaviour of `skiff image`: crash safety under SIGKILL,
//! concurrent imports, rm and gc with leases.

mod support;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::env::{names, vendor, Env};
use support::privilege::{is_root, prerequisite};
use support::tar::generated_image;

/// Poll until `cond` holds or time runs out (a liveness bound, not a timing check).
fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// After a SIGKILLed import, the store holds no trace of the image, the next
/// command cleans the dead session, and the next import works.
fn check_recovers(env: &Env, archive: &Path) {
    let ls = env.json(&["image", "ls"]);
    assert_eq!(
        ls,
        serde_json::json!([]),
        "no half-visible image after SIGKILL"
    );
    assert!(
        names(&env.root().join("tmp")).is_empty(),
        "stale temp data cleaned by the next command"
    );
    let r = env.json(&["image", "import", archive.to_str().expect("utf8")]);
    assert_eq!(r["images"][0]["refs"][0], "docker.io/library/big:latest");
    let ls = env.json(&["image", "ls"]);
    assert_eq!(ls.as_array().expect("rows").len(), 1);
    // Whatever the killed import had committed is either reused or collected.
    env.json(&["image", "gc"]);
    assert_eq!(
        env.count("snapshots"),
        3,
        "one snapshot per layer, orphans collected"
    );
    assert_eq!(env.count("meta/snapshots"), 3);
}

#[test]
fn test_store_sigkill_during_stdin_spool_leaves_a_usable_store() {
    if !prerequisite(is_root(), "root") {
        return;
    }
    let env = Env::new();
    let archive = env.path("big.tar");
    generated_image(&archive, "big:latest", 3, 400, 16 * 1024, false);
    let data = fs::read(&archive).expect("read");
    let mut child = env
        .quiet()
        .args(["image", "import", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(&data[..data.len() / 2])
        .expect("write half");
    stdin.flush().expect("flush");
    let tmp = env.root().join("tmp");
    assert!(
        wait_for(|| names(&tmp).iter().any(|n| !n.ends_with(".lock"))),
        "import session started"
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    drop(stdin);
    check_recovers(&env, &archive);
}

#[test]
fn test_store_sigkill_during_unpack_leaves_a_usable_store() {
    if !prerequisite(is_root(), "root") {
        return;
    }
    let env = Env::new();
    let archive = env.path("big.tar");
    generated_image(&archive, "big:latest", 3, 1500, 8 * 1024, false);
    // Kill at several points: as soon as unpacking starts, and once a
    // snapshot has been committed.
    for stage in ["unpacking", "committed"] {
        let mut child = env
            .quiet()
            .args(["image", "import", archive.to_str().expect("utf8")])
            .spawn()
            .expect("spawn");
        let tmp = env.root().join("tmp");
        let snaps = env.root().join("snapshots");
        let reached = wait_for(|| match stage {
            "unpacking" => names(&tmp).iter().any(|n| {
                !n.ends_with(".lock") && names(&tmp.join(n)).iter().any(|e| e.starts_with("snap"))
            }),
            _ => !names(&snaps).is_empty() || child.try_wait().ok().flatten().is_some(),
        });
        assert!(reached, "stage {stage} reached");
        let _ = child.kill();
        child.wait().expect("reap");
        let ls = env.json(&["image", "ls"]);
        let finished = ls.as_array().is_some_and(|a| !a.is_empty());
        if !finished {
            assert!(names(&tmp).is_empty(), "{stage}: stale temp data cleaned");
        }
        // Reset for the next stage.
        fs::remove_dir_all(env.root()).expect("reset");
    }
    // And a final kill-then-recover round with full checks.
    let mut child = env
        .quiet()
        .args(["image", "import", archive.to_str().expect("utf8")])
        .spawn()
        .expect("spawn");
    let tmp = env.root().join("tmp");
    assert!(wait_for(|| names(&tmp).iter().any(|n| !n
        .ends_with(".lock")
        && names(&tmp.join(n)).iter().any(|e| e.starts_with("snap")))));
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    check_recovers(&env, &archive);
}

#[test]
fn test_store_concurrent_imports_make_one_copy_and_both_succeed() {
    if !prerequisite(is_root(), "root") {
        return;
    }
    let env = Env::new();
    let archive = vendor("compat.tar");
    for _ in 0..3 {
        fs::remove_dir_all(env.root()).ok();
        let children: Vec<_> = (0..2)
            .map(|_| {
                env.skiff()
                    .args(["image", "import", archive.to_str().expect("utf8"), "--json"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        let mut unpacked = 0;
        for c in children {
            let out = c.wait_with_output().expect("wait");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
            unpacked += r["layers_unpacked"].as_u64().expect("n");
        }
        assert_eq!(unpacked, 6, "each layer unpacked by exactly one of the two");
        assert_eq!(env.count("snapshots"), 6);
        assert_eq!(env.count("meta/snapshots"), 6);
        assert_eq!(
            env.json(&["image", "ls"]).as_array().expect("rows").len(),
            1
        );
    }
}

#[test]
fn test_store_rm_and_gc_keep_shared_and_leased_snapshots() {
    if !prerequisite(is_root(), "root") {
        return;
    }
    let env = Env::new();
    env.json(&[
        "image",
        "import",
        vendor("busybox.tar").to_str().expect("utf8"),
    ]);
    env.json(&[
        "image",
        "import",
        vendor("compat.tar").to_str().expect("utf8"),
    ]);
    let blobs_before = env.count("blobs/sha256");
    assert_eq!(env.count("snapshots"), 6);

    // A second tag: rm of one tag only untags.
    env.json(&[
        "image",
        "import",
        vendor("compat.tar").to_str().expect("utf8"),
        "--tag",
        "c:2",
    ]);
    let r = env.json(&["image", "rm", "c:2"]);
    assert_eq!(r["untagged"], serde_json::json!(["docker.io/library/c:2"]));
    assert!(
        r["deleted"].is_null(),
        "image kept while another tag names it"
    );

    // A live lease, held by a running job (its launcher's POSIX lock),
    // keeps compat's snapshots.
    let inspect = env.json(&["image", "inspect", "skiff-vendor/compat"]);
    let mut holder = env
        .skiff()
        .args([
            "run",
            "--name",
            "test-job",
            "--entrypoint",
            "/bin/sleep",
            "skiff-vendor/compat",
            "600",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("skiff run");
    assert!(wait_for(
        || env.count("leases") == 1 && env.count("run") >= 1
    ));

    let r = env.json(&["image", "rm", "skiff-vendor/compat"]);
    assert_eq!(r["deleted"], inspect["id"]);
    let gc = env.json(&["image", "gc"]);
    assert_eq!(gc["snapshots_removed"], 0);
    assert_eq!(gc["snapshots_leased"], 4);
    assert_eq!(env.count("snapshots"), 6);

    // The holder dies: its lease is stale and the snapshots go.
    holder.kill().expect("kill");
    holder.wait().expect("reap");
    let gc = env.json(&["image", "gc"]);
    assert_eq!(gc["stale_leases_removed"], 1);
    assert_eq!(gc["snapshots_removed"], 4);
    // The killed job's run directory and cgroup.
    assert!(env.run(&["gc"]).status.success());
    assert_eq!(env.count("snapshots"), 2);
    assert!(env.count("blobs/sha256") < blobs_before);
    // busybox still fully usable.
    let i = env.json(&["image", "inspect", "skiff-vendor/busybox"]);
    for l in i["rootfs"]["lowerdirs"].as_array().expect("lowerdirs") {
        assert!(Path::new(l.as_str().expect("str")).is_dir());
    }
    assert!(
        env.run(&["image", "inspect", "skiff-vendor/compat"])
            .status
            .code()
            == Some(125)
    );
}

/// `skiff image verify --json [--repair]`: exit code and report.
fn verify(env: &Env, repair: bool) -> (Option<i32>, serde_json::Value) {
    let extra: &[&str] = if repair { &["--repair"] } else { &[] };
    let (out, report) = env.verify(extra, "");
    (out.status.code(), report)
}

/// The problems a report names for one subject kind, as (name, detail).
fn problems(report: &serde_json::Value, subject: &str) -> Vec<(String, String)> {
    report["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter(|p| p["subject"] == subject)
        .map(|p| {
            (
                p["name"].as_str().expect("name").to_string(),
                p["detail"].as_str().expect("detail").to_string(),
            )
        })
        .collect()
}

/// A store with busybox and compat imported; returns compat's layer that
/// busybox does not share (its blob digest, chain ID and snapshot directory).
fn damaged_store_setup() -> Option<(Env, String, String, std::path::PathBuf)> {
    if !prerequisite(is_root(), "root") {
        return None;
    }
    let env = Env::new();
    for a in ["busybox.tar", "compat.tar"] {
        env.json(&["image", "import", vendor(a).to_str().expect("utf8")]);
    }
    let (code, r) = verify(&env, false);
    assert_eq!(code, Some(0), "a fresh store verifies clean: {r:#}");
    let busybox = env.json(&["image", "inspect", "skiff-vendor/busybox"]);
    let compat = env.json(&["image", "inspect", "skiff-vendor/compat"]);
    let shared: Vec<&serde_json::Value> = busybox["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| &l["chain_id"])
        .collect();
    let layers = compat["layers"].as_array().expect("layers");
    let lowerdirs = compat["rootfs"]["lowerdirs"].as_array().expect("lowerdirs");
    // The largest unshared layer (lowerdirs are top first, layers bottom first).
    let (i, l) = layers
        .iter()
        .enumerate()
        .filter(|(_, l)| !shared.contains(&&l["chain_id"]))
        .max_by_key(|(_, l)| l["size"].as_u64())
        .expect("compat has a layer of its own");
    let dir = lowerdirs[layers.len() - 1 - i]
        .as_str()
        .expect("dir")
        .into();
    Some((
        env,
        l["digest"].as_str().expect("digest").to_string(),
        l["chain_id"].as_str().expect("chain").to_string(),
        dir,
    ))
}

/// After `--repair`: verify is clean, busybox is untouched and usable,
/// compat is gone, and re-importing compat restores a clean store.
fn assert_repaired(env: &Env, busybox_before: &serde_json::Value, layers_removed: bool) {
    let (code, r) = verify(env, false);
    assert_eq!(code, Some(0), "clean after repair: {r:#}");
    let busybox = env.json(&["image", "inspect", "skiff-vendor/busybox"]);
    assert_eq!(&busybox, busybox_before, "healthy image untouched");
    for l in busybox["rootfs"]["lowerdirs"]
        .as_array()
        .expect("lowerdirs")
    {
        assert!(Path::new(l.as_str().expect("str")).is_dir());
    }
    let r = env.json(&[
        "image",
        "import",
        vendor("compat.tar").to_str().expect("utf8"),
    ]);
    assert_eq!(
        r["layers_unpacked"].as_u64() > Some(0),
        layers_removed,
        "re-import redoes what was removed, and only that: {r}"
    );
    let (code, r) = verify(env, false);
    assert_eq!(code, Some(0), "clean after re-import: {r:#}");
    assert_eq!(
        env.json(&["image", "ls"]).as_array().expect("rows").len(),
        2
    );
}

#[test]
fn test_store_verify_reports_and_repairs_a_corrupt_blob() {
    let Some((env, _, _, _)) = damaged_store_setup() else {
        return;
    };
    let busybox = env.json(&["image", "inspect", "skiff-vendor/busybox"]);
    // The vendored images' layers are plain, so their blobs are not kept
    // (their snapshots are checked against recorded trees, below); the
    // config blob is, and is the image's id.
    let compat = env.json(&["image", "inspect", "skiff-vendor/compat"]);
    let digest = compat["id"].as_str().expect("id").to_string();
    let hex = digest.strip_prefix("sha256:").expect("sha256");
    let blob = env.root().join("blobs/sha256").join(hex);
    let mut data = fs::read(&blob).expect("read blob");
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    fs::write(&blob, &data).expect("corrupt blob");

    let (code, r) = verify(&env, false);
    assert_eq!(code, Some(1), "damage exits 1: {r:#}");
    let blobs = problems(&r, "blob");
    assert_eq!(blobs.len(), 1, "{r:#}");
    assert_eq!(blobs[0].0, digest, "the corrupt blob is named");
    assert!(blobs[0].1.contains("hashes to"), "{r:#}");
    assert_eq!(problems(&r, "image").len(), 1, "only compat is damaged");
    assert!(blob.exists(), "without --repair nothing is removed");

    let (code, r) = verify(&env, true);
    assert_eq!(code, Some(1), "{r:#}");
    assert!(r["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .all(|p| p["repaired"] == true));
    assert!(!blob.exists(), "the corrupt blob is removed");
    assert_eq!(
        env.run(&["image", "inspect", "skiff-vendor/compat"])
            .status
            .code(),
        Some(125),
        "the image using it is removed"
    );
    assert_repaired(&env, &busybox, false);
}

/// A plain layer is written once, into its snapshot (no blob copy); verify
/// checks the snapshot against the tree recorded at import and names a
/// file whose size changed, and a missing record.
#[test]
fn test_store_plain_layers_are_written_once_and_checked_against_their_tree() {
    let Some((env, digest, chain, dir)) = damaged_store_setup() else {
        return;
    };
    let hex = digest.strip_prefix("sha256:").expect("sha256");
    assert!(
        !env.root().join("blobs/sha256").join(hex).exists(),
        "a plain layer's blob is not kept"
    );
    let chain_hex = chain.strip_prefix("sha256:").expect("sha256");
    let meta = env.root().join(format!("meta/snapshots/{chain_hex}.json"));
    let info: serde_json::Value =
        serde_json::from_slice(&fs::read(&meta).expect("read")).expect("json");
    assert_eq!(info["blob_kept"], false, "{info}");
    let tree = env.root().join(format!("meta/trees/{chain_hex}.tree"));
    assert!(tree.is_file(), "its tree is recorded");

    // One regular file of the snapshot grows by a byte.
    let victim = first_file(&dir);
    let mut data = fs::read(&victim).expect("read");
    data.push(b'!');
    fs::write(&victim, &data).expect("grow");
    let rel = victim
        .strip_prefix(&dir)
        .expect("inside")
        .to_string_lossy()
        .into_owned();
    let (code, r) = verify(&env, false);
    assert_eq!(code, Some(1), "{r:#}");
    let snaps = problems(&r, "snapshot");
    assert_eq!(snaps.len(), 1, "{r:#}");
    assert_eq!(snaps[0].0, chain, "the snapshot is named by chain ID");
    assert!(
        snaps[0].1.contains(&rel) && snaps[0].1.contains("bytes"),
        "the changed path is named: {r:#}"
    );
    data.pop();
    fs::write(&victim, &data).expect("restore");
    let (code, r) = verify(&env, false);
    assert_eq!(code, Some(0), "{r:#}");

    // Without its record, the snapshot cannot be checked: damage.
    fs::remove_file(&tree).expect("remove tree");
    let (code, r) = verify(&env, false);
    assert_eq!(code, Some(1), "{r:#}");
    let snaps = problems(&r, "snapshot");
    assert!(
        snaps
            .iter()
            .any(|(n, d)| n == &chain && d.contains("recorded tree")),
        "{r:#}"
    );
}

/// A regular file of the snapshot `dir`, deep in its tree.
fn first_file(dir: &Path) -> std::path::PathBuf {
    let mut victim = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("list").flatten() {
            let t = e.file_type().expect("type");
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() && victim.is_none() {
                victim = Some(e.path());
            }
        }
    }
    victim.expect("the snapshot has a file")
}

#[test]
fn test_store_verify_reports_and_repairs_a_deleted_snapshot_file() {
    let Some((env, _, chain, dir)) = damaged_store_setup() else {
        return;
    };
    let busybox = env.json(&["image", "inspect", "skiff-vendor/busybox"]);
    // One regular file of the snapshot, deep in its tree.
    let victim = first_file(&dir);
    fs::remove_file(&victim).expect("delete");
    let rel = victim
        .strip_prefix(&dir)
        .expect("inside")
        .to_string_lossy()
        .into_owned();

    let (code, r) = verify(&env, false);
    assert_eq!(code, Some(1), "{r:#}");
    let snaps = problems(&r, "snapshot");
    assert_eq!(snaps.len(), 1, "{r:#}");
    assert_eq!(snaps[0].0, chain, "the snapshot is named by chain ID");
    assert!(
        snaps[0].1.contains(&rel) && snaps[0].1.contains("missing"),
        "the missing path is named: {r:#}"
    );
    let (code, _) = verify(&env, true);
    assert_eq!(code, Some(1));
    assert!(!dir.exists(), "the broken snapshot is removed");
    assert_repaired(&env, &busybox, true);
}

#[test]
fn test_store_verify_reports_and_repairs_truncated_metadata() {
    let Some((env, _, chain, dir)) = damaged_store_setup() else {
        return;
    };
    let busybox = env.json(&["image", "inspect", "skiff-vendor/busybox"]);
    let hex = chain.strip_prefix("sha256:").expect("sha256");
    let meta = env
        .root()
        .join("meta/snapshots")
        .join(format!("{hex}.json"));
    let data = fs::read(&meta).expect("read meta");
    fs::write(&meta, &data[..data.len() / 2]).expect("truncate");

    let (code, r) = verify(&env, false);
    assert_eq!(code, Some(1), "{r:#}");
    let snaps = problems(&r, "snapshot");
    assert_eq!(snaps.len(), 1, "{r:#}");
    assert_eq!(snaps[0].0, chain);
    assert!(snaps[0].1.contains("metadata unreadable"), "{r:#}");
    assert_eq!(problems(&r, "image").len(), 1, "compat uses it: {r:#}");
    // The directory it named is now unnamed: a leftover, not damage.
    assert!(r["leftovers"]
        .as_array()
        .expect("leftovers")
        .iter()
        .any(|l| Path::new(l["path"].as_str().expect("path")) == dir));
    let (code, _) = verify(&env, true);
    assert_eq!(code, Some(1));
    assert!(!meta.exists() && !dir.exists());
    assert_repaired(&env, &busybox, true);

    // A truncated image record: that image and its tag go, nothing else.
    let compat = env.json(&["image", "inspect", "skiff-vendor/compat"]);
    let id = compat["id"].as_str().expect("id");
    let rec = env.root().join("meta/images").join(format!(
        "{}.json",
        id.strip_prefix("sha256:").expect("sha256")
    ));
    fs::write(&rec, b"{\"id\": \"sha256:").expect("truncate record");
    let (code, r) = verify(&env, false);
    assert_eq!(code, Some(1), "{r:#}");
    assert_eq!(
        problems(&r, "image"),
        vec![(id.to_string(), problems(&r, "image")[0].1.clone())]
    );
    assert_eq!(
        problems(&r, "tag").len(),
        1,
        "its tag names a broken image: {r:#}"
    );
    let (code, _) = verify(&env, true);
    assert_eq!(code, Some(1));
    assert_repaired(&env, &busybox, false);
}

/// Every path under `dir`, sorted (to compare a store before and after).
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap_or(&p).display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn test_store_import_of_a_tar_without_an_image_says_what_is_missing() {
    // A valid but empty tar (`tar cf x --files-from /dev/null`: end-of-archive
    // blocks only) and a tar with an unrelated file are tars: the message
    // names the input and the missing `manifest.json`/`index.json`, never
    // "not a tar archive", and the store is left as it was.
    if !prerequisite(is_root(), "root") {
        return;
    }
    let env = Env::new();
    let good = env.path("good.tar");
    generated_image(&good, "small:latest", 1, 2, 64, false);
    env.ok(&["image", "import", good.to_str().expect("utf8")]);
    let empty = env.path("empty.tar");
    fs::write(&empty, vec![0u8; 10240]).expect("write empty tar");
    let other = env.path("other.tar");
    {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "notes.txt", &b"hi\n"[..])
            .expect("tar entry");
        fs::write(&other, b.into_inner().expect("tar")).expect("write tar");
    }
    let before = tree(&env.root());
    for input in [&empty, &other] {
        let path = input.to_str().expect("utf8");
        let out = env.run(&["image", "import", path]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{path}: import succeeded");
        assert!(!err.contains("not a tar archive"), "{path}: {err}");
        for needle in [path, "manifest.json", "index.json"] {
            assert!(err.contains(needle), "{path}: no {needle:?} in {err}");
        }
        assert_eq!(tree(&env.root()), before, "{path}: the store changed");
    }
}

/// The race `run_faults`' churn test once hit: a job reads the image's
/// record, then `image rm` and `image gc` remove it before the job takes its
/// lease. The lease must refuse ("no such image", a clean 125), not succeed
/// over snapshots that are gone (the job's overlay mount then failed with
/// ENOENT).
#[test]
fn test_store_lease_refuses_an_image_removed_after_its_record_was_read() {
    if !prerequisite(is_root(), "root") {
        return;
    }
    let env = Env::new();
    let store = imagestore::Store::open(env.root()).expect("open store");
    let report = store
        .import(
            &imagestore::Input::from_arg(vendor("compat.tar").to_str().expect("utf8")),
            &imagestore::ImportOptions::default(),
        )
        .expect("import");
    let id = report.images[0].id.clone();
    let rec = store
        .image(&imagestore::ImageId::from_config(id.clone()))
        .expect("record");
    store.remove_image(&id.to_string()).expect("image rm");
    store.gc().expect("image gc");
    let e = store
        .lease("job", &rec)
        .expect_err("the image is gone")
        .to_string();
    assert!(e.contains("no such image") && e.contains("snapshot"), "{e}");
    assert_eq!(env.count("leases"), 0, "no lease left behind");
}
