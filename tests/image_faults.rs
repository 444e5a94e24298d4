//! The import fault suite: `skiff image import` SIGKILLed at many points of
//! its run, ENOSPC on a small tmpfs store, and imports racing `image rm` and
//! `image gc`. After every case the store holds no temporary file and no
//! import session, and `skiff image verify` finds it consistent.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::env::{names, skiff_on, vendor, Env};
use support::mounts::mount_tmpfs;
use support::privilege::{is_root, prerequisite};
use support::tar::generated_image;

/// Bytes the import has written so far: files in its session directories
/// (the layers being unpacked among them), committed snapshots and
/// committed blobs. Grows monotonically through an import (a snapshot is
/// renamed from the session into `snapshots/`).
fn progress(root: &Path) -> u64 {
    ["tmp", "snapshots", "blobs/sha256"]
        .iter()
        .map(|d| tree_bytes(&root.join(d)))
        .sum()
}

/// The bytes of the regular files beneath `dir` (symlinks not followed).
fn tree_bytes(dir: &Path) -> u64 {
    let mut n = 0;
    for name in names(dir) {
        let p = dir.join(name);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => n += tree_bytes(&p),
            Ok(m) if m.is_file() => n += m.len(),
            _ => {}
        }
    }
    n
}

/// Every `.tmp-*` file and import session in the store.
fn temp_leftovers(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = names(&root.join("tmp"))
        .into_iter()
        .map(|n| root.join("tmp").join(n))
        .collect();
    for sub in ["blobs/sha256", "meta/snapshots", "meta/images", "meta/tags"] {
        for n in names(&root.join(sub)) {
            if n.starts_with(".tmp-") {
                out.push(root.join(sub).join(n));
            }
        }
    }
    out
}

/// `skiff image verify --json`: must exit 0 with no problems and no leftovers.
fn assert_consistent(env: &Env, case: &str) {
    let (out, report) = env.verify(&[], &format!("{case}: "));
    assert!(
        out.status.success(),
        "{case}: verify says the store is damaged: {report:#}"
    );
    assert_eq!(report["problems"], serde_json::json!([]), "{case}");
    assert_eq!(report["leftovers"], serde_json::json!([]), "{case}");
}

/// SIGKILL one import once it has written `at` bytes (or when it ends first).
/// Returns whether it was killed before finishing.
fn import_killed_at(env: &Env, archive: &Path, at: u64) -> bool {
    let mut child = env
        .quiet()
        .args(["image", "import", archive.to_str().expect("utf8")])
        .spawn()
        .expect("spawn");
    let root = env.root();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().expect("wait").is_some() {
            return false;
        }
        if progress(&root) >= at {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
            return true;
        }
        assert!(Instant::now() < deadline, "import did not progress");
        std::hint::spin_loop();
    }
}

fn sigkill_round(gzip: bool) {
    let env = Env::new();
    let archive_path = env.path(if gzip { "a.tar.gz" } else { "a.tar" });
    generated_image(&archive_path, "fault:1", 3, 600, 8 * 1024, gzip);
    // The bytes a whole import writes, measured once.
    env.ok(&["image", "import", archive_path.to_str().expect("utf8")]);
    let total = progress(&env.root());
    assert!(total > 0);
    fs::remove_dir_all(env.root()).expect("reset");
    let points = 12;
    let mut killed: u64 = 0;
    for i in 0..points {
        let at = total * i / points + 1;
        let case = format!("gzip={gzip}, SIGKILL after {at} of {total} bytes");
        killed += u64::from(import_killed_at(&env, &archive_path, at));
        // A killed import leaves no visible half-image…
        let ls = env.json(&["image", "ls"]);
        assert!(
            ls.as_array().is_some_and(|a| a.is_empty()),
            "{case}: half-visible image {ls}"
        );
        // …and gc removes every leftover of it.
        env.json(&["image", "gc"]);
        assert_eq!(temp_leftovers(&env.root()), Vec::<PathBuf>::new(), "{case}");
        assert_consistent(&env, &case);
        // The next import works, and the store is still consistent.
        env.ok(&["image", "import", archive_path.to_str().expect("utf8")]);
        assert_consistent(&env, &format!("{case}, re-imported"));
        fs::remove_dir_all(env.root()).expect("reset");
    }
    assert!(
        killed >= points / 2,
        "only {killed} of {points} imports were killed mid-way"
    );
}

#[test]
fn test_faults_sigkill_indexed_import_at_many_points() {
    if !prerequisite(is_root(), "root") {
        return;
    }
    sigkill_round(false);
}

#[test]
fn test_faults_sigkill_streamed_import_at_many_points() {
    if !prerequisite(is_root(), "root") {
        return;
    }
    sigkill_round(true);
}

#[test]
fn test_faults_gc_and_import_remove_stale_temp_files_and_dead_sessions() {
    if !prerequisite(is_root(), "root") {
        return;
    }
    let env = Env::new();
    env.ok(&[
        "image",
        "import",
        vendor("busybox.tar").to_str().expect("utf8"),
    ]);
    let root = env.root();
    // What a SIGKILLed import leaves: atomic-write temp files beside the
    // metadata and blobs, and a session whose lock nobody holds.
    let plant = |root: &Path| {
        for sub in ["blobs/sha256", "meta/snapshots", "meta/images", "meta/tags"] {
            fs::write(root.join(sub).join(".tmp-killedwrite"), b"{\"half").expect("plant");
        }
    };
    plant(&root);
    let out = env.run(&["image", "verify", "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        r["leftovers"].as_array().map(Vec::len),
        Some(4),
        "verify names each temp file: {r:#}"
    );
    let gc = env.json(&["image", "gc"]);
    assert_eq!(gc["temp_files_removed"], 4, "{gc}");
    assert_eq!(temp_leftovers(&root), Vec::<PathBuf>::new());
    // An import's start-up removes them too, when nothing else runs.
    plant(&root);
    env.ok(&[
        "image",
        "import",
        vendor("busybox.tar").to_str().expect("utf8"),
    ]);
    assert_eq!(temp_leftovers(&root), Vec::<PathBuf>::new());
    assert_consistent(&env, "after import start-up cleaning");
}

#[test]
fn test_faults_enospc_import_reports_the_write_and_leaves_a_consistent_store() {
    if !prerequisite(is_root(), "root") {
        return;
    }
    let env = Env::new();
    let plain = env.path("a.tar");
    let gz = env.path("a.tar.gz");
    // 3 layers of ~4.7 MB: the store needs ~2× that (blob + snapshot).
    generated_image(&plain, "fault:1", 3, 600, 8 * 1024, false);
    generated_image(&gz, "fault:1", 3, 600, 8 * 1024, true);
    let mut failed = 0;
    // Every megabyte: where the disk fills decides which write fails (the
    // blob copy, a snapshot file, a spool file, metadata).
    let sizes: Vec<String> = std::iter::once("64k".to_string())
        .chain((1..=28).map(|m| format!("{m}m")))
        .collect();
    for (input, sizes) in [(&plain, &sizes[..]), (&gz, &sizes[..8])] {
        for size in sizes {
            let case = format!("{} on a {size} store", input.display());
            let Some(_mount) = mount_tmpfs(&env.root(), size) else {
                return;
            };
            let out = env.run(&["image", "import", input.to_str().expect("utf8")]);
            if !out.status.success() {
                failed += 1;
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(
                    err.contains("No space left on device"),
                    "{case}: the error names the full disk: {err}"
                );
                assert!(
                    !err.contains("reading tar stream") && !err.contains("reading archive"),
                    "{case}: a full disk is a write failure, not a bad input: {err}"
                );
                assert!(
                    err.contains("write") || err.contains("create"),
                    "{case}: the error says what could not be written: {err}"
                );
                let ls = env.json(&["image", "ls"]);
                assert!(ls.as_array().is_some_and(|a| a.is_empty()), "{case}: {ls}");
            }
            assert_eq!(temp_leftovers(&env.root()), Vec::<PathBuf>::new(), "{case}");
            assert_consistent(&env, &case);
        }
    }
    assert!(failed >= 20, "only {failed} imports hit the full disk");
}

#[test]
fn test_faults_concurrent_import_rm_gc_keep_the_store_consistent() {
    if !prerequisite(is_root(), "root") {
        return;
    }
    let env = Env::new();
    let busybox = vendor("busybox.tar");
    let compat = vendor("compat.tar");
    let own = env.path("own.tar.gz");
    generated_image(&own, "fault:1", 2, 200, 4 * 1024, true);
    let root = env.root();
    let worker = |args: Vec<String>, rounds: usize, must_succeed: bool| {
        let root = root.clone();
        std::thread::spawn(move || {
            for _ in 0..rounds {
                let out = skiff_on(&root).args(&args).output().expect("spawn");
                let err = String::from_utf8_lossy(&out.stderr);
                if must_succeed {
                    // verify reports on stdout: show it too.
                    let report = String::from_utf8_lossy(&out.stdout);
                    assert!(out.status.success(), "skiff {args:?}: {err}{report}");
                } else {
                    // rm may find the image already gone; nothing else may fail.
                    assert!(
                        out.status.success() || err.contains("no such image"),
                        "skiff {args:?}: {err}"
                    );
                }
            }
        })
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let p = |x: &Path| x.to_str().expect("utf8").to_string();
    let threads = vec![
        worker(s(&["image", "import", &p(&busybox)]), 12, true),
        worker(s(&["image", "import", &p(&compat)]), 12, true),
        worker(s(&["image", "import", &p(&own)]), 12, true),
        worker(s(&["image", "rm", "skiff-vendor/compat"]), 20, false),
        worker(s(&["image", "rm", "fault:1"]), 20, false),
        worker(s(&["image", "gc"]), 20, true),
        worker(s(&["image", "verify"]), 10, true),
    ];
    for t in threads {
        t.join().expect("worker");
    }
    env.json(&["image", "gc"]);
    assert_eq!(temp_leftovers(&env.root()), Vec::<PathBuf>::new());
    assert_consistent(&env, "after concurrent import, rm and gc");
    // Whatever survived is usable.
    for img in env.json(&["image", "ls"]).as_array().expect("rows") {
        let id = img["id"].as_str().expect("id");
        let i = env.json(&["image", "inspect", id]);
        for l in i["rootfs"]["lowerdirs"].as_array().expect("lowerdirs") {
            assert!(Path::new(l.as_str().expect("str")).is_dir(), "{i}");
        }
    }
}
