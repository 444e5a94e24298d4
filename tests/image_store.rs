//! Store-level behaviour of `skiff image`: crash safety under SIGKILL,
//! concurrent imports, rm and gc with leases.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{is_root, prerequisite, vendor, Env};
use sha2::Digest as _;

/// Write a legacy `docker save` archive with `layers` layers of `files`
/// files of `size` bytes each; returns nothing, the archive is at `path`.
fn big_archive(path: &Path, layers: usize, files: usize, size: usize) {
    let mut out = tar::Builder::new(fs::File::create(path).expect("create"));
    let mut diff_ids = Vec::new();
    let mut names = Vec::new();
    for l in 0..layers {
        let mut layer = tar::Builder::new(Vec::new());
        for f in 0..files {
            let mut data = vec![0u8; size];
            for (i, b) in data.iter_mut().enumerate() {
                *b = ((i * 31 + f * 7 + l * 13) % 251) as u8;
            }
            let mut h = tar::Header::new_gnu();
            h.set_size(size as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_600_000_000);
            h.set_entry_type(tar::EntryType::Regular);
            layer
                .append_data(&mut h, format!("layer{l}/dir{}/file{f}", f % 16), &data[..])
                .expect("append");
        }
        let bytes = layer.into_inner().expect("layer");
        diff_ids.push(format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(&bytes))
        ));
        let name = format!("l{l}/layer.tar");
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        out.append_data(&mut h, &name, &bytes[..]).expect("append");
        names.push(name);
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string();
    let cfg_name = format!(
        "{}.json",
        hex::encode(sha2::Sha256::digest(config.as_bytes()))
    );
    let manifest =
        serde_json::json!([{ "Config": cfg_name, "RepoTags": ["big:latest"], "Layers": names }])
            .to_string();
    for (name, data) in [
        (cfg_name.as_str(), config.as_bytes()),
        ("manifest.json", manifest.as_bytes()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        out.append_data(&mut h, name, data).expect("append");
    }
    out.finish().expect("finish");
}

fn list_names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

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
        list_names(&env.root().join("tmp")).is_empty(),
        "stale temp data cleaned by the next command"
    );
    let r = env.json(&["image", "import", archive.to_str().expect("utf8")]);
    assert_eq!(r["images"][0]["refs"][0], "big:latest");
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
    big_archive(&archive, 3, 400, 16 * 1024);
    let data = fs::read(&archive).expect("read");
    let mut child = env
        .skiff()
        .args(["image", "import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(&data[..data.len() / 2])
        .expect("write half");
    stdin.flush().expect("flush");
    let tmp = env.root().join("tmp");
    assert!(
        wait_for(|| list_names(&tmp).iter().any(|n| !n.ends_with(".lock"))),
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
    big_archive(&archive, 3, 1500, 8 * 1024);
    // Kill at several points: as soon as unpacking starts, and once a
    // snapshot has been committed.
    for stage in ["unpacking", "committed"] {
        let mut child = env
            .skiff()
            .args(["image", "import", archive.to_str().expect("utf8")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let tmp = env.root().join("tmp");
        let snaps = env.root().join("snapshots");
        let reached = wait_for(|| match stage {
            "unpacking" => list_names(&tmp).iter().any(|n| {
                !n.ends_with(".lock")
                    && list_names(&tmp.join(n))
                        .iter()
                        .any(|e| e.starts_with("snap"))
            }),
            _ => !list_names(&snaps).is_empty() || child.try_wait().ok().flatten().is_some(),
        });
        assert!(reached, "stage {stage} reached");
        let _ = child.kill();
        child.wait().expect("reap");
        let ls = env.json(&["image", "ls"]);
        let finished = ls.as_array().is_some_and(|a| !a.is_empty());
        if !finished {
            assert!(
                list_names(&tmp).is_empty(),
                "{stage}: stale temp data cleaned"
            );
        }
        // Reset for the next stage.
        fs::remove_dir_all(env.root()).expect("reset");
    }
    // And a final kill-then-recover round with full checks.
    let mut child = env
        .skiff()
        .args(["image", "import", archive.to_str().expect("utf8")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let tmp = env.root().join("tmp");
    assert!(wait_for(|| list_names(&tmp).iter().any(|n| !n
        .ends_with(".lock")
        && list_names(&tmp.join(n))
            .iter()
            .any(|e| e.starts_with("snap")))));
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
    assert_eq!(
        r["untagged"],
        serde_json::json!(["c:2:latest"])
            .get(5)
            .cloned()
            .unwrap_or(serde_json::json!(["c:2"]))
    );
    assert!(
        r["deleted"].is_null(),
        "image kept while another tag names it"
    );

    // A live lease (held by another process with flock) keeps compat's snapshots.
    let inspect = env.json(&["image", "inspect", "skiff-vendor/compat"]);
    let lease = env.root().join("leases/test-job.lease");
    let body = serde_json::json!({
        "image": inspect["id"],
        "chain": inspect["layers"].as_array().expect("layers").iter().map(|l| l["chain_id"].clone()).collect::<Vec<_>>(),
    });
    fs::write(&lease, body.to_string()).expect("lease");
    // The shell takes the lock on fd 9 and becomes `sleep`, which keeps it.
    let mut holder = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec 9<>'{}'; flock 9; exec sleep 600",
            lease.display()
        ))
        .spawn()
        .expect("flock holder");
    assert!(wait_for(|| Command::new("flock")
        .args(["-n", "-x"])
        .arg(&lease)
        .arg("true")
        .status()
        .is_ok_and(|s| !s.success())));

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
