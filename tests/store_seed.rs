//! `skiff store export` and `skiff store seed`: a store exported and seeded
//! into a new root runs the vendored images as the original does; a second
//! seed writes nothing; a streamed export (`-` to `-`) seeds too; and an
//! export that was tampered with, truncated or padded with a foreign entry
//! is refused, naming what is wrong, with no image left visible.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

use support::env::{skiff_bin, skiff_on, vendor, Env};
use support::privilege::{is_root, prerequisite};

const IMAGES: [&str; 2] = ["skiff-vendor/busybox", "skiff-vendor/compat"];

/// An exporting store holding the vendored images, and its export.
fn exported() -> Option<(Env, std::path::PathBuf)> {
    if !prerequisite(is_root(), "root (chown, mknod and trusted xattrs)") {
        return None;
    }
    let env = Env::new();
    for a in ["busybox.tar", "compat.tar"] {
        env.ok(&["image", "import", vendor(a).to_str().expect("utf8")]);
    }
    let file = env.path("images.skx");
    let report = env.json(&["store", "export", file.to_str().expect("utf8")]);
    assert_eq!(report["images"], 2, "{report}");
    assert_eq!(report["snapshots"], 6, "{report}");
    Some((env, file))
}

/// Every file under `root` (not `tmp/`, `locks/`, `leases/`): size and
/// modification time, to see that nothing was written.
fn listing(root: &Path) -> BTreeMap<String, (u64, i64, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("list").flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("inside")
                .to_string_lossy()
                .into_owned();
            if ["tmp", "locks", "leases", "lock"]
                .iter()
                .any(|x| rel == *x || rel.starts_with(&format!("{x}/")))
            {
                continue;
            }
            let m = fs::symlink_metadata(&p).expect("lstat");
            if m.is_dir() {
                stack.push(p);
            } else {
                out.insert(rel, (m.len(), m.mtime(), m.mtime_nsec()));
            }
        }
    }
    out
}

/// What each vendored image prints, run from the store at `root`.
fn outputs(root: &Path) -> Vec<String> {
    let cases: [(&str, &[&str]); 3] = [
        (
            IMAGES[0],
            &[
                "sh",
                "-c",
                "ls -ln /bin | head -5; cat /etc/passwd; echo $PATH",
            ],
        ),
        (IMAGES[1], &[]),
        (IMAGES[1], &["ls", "-lan", "/home/app"]),
    ];
    let out = cases
        .iter()
        .map(|(image, cmd)| {
            let out = skiff_on(root)
                .args(["run", "--rm", image])
                .args(*cmd)
                .output()
                .expect("run");
            assert!(
                out.status.success(),
                "{image} {cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect();
    // A seeded store in a bare temporary directory: end its job cgroups too.
    let _ = skiff_on(root).arg("gc").status();
    support::run::forget_store_cgroups(root);
    out
}

/// `skiff store seed --json FILE` into `root`, which must succeed: its report.
fn seed(root: &Path, file: &Path) -> serde_json::Value {
    let out = skiff_on(root)
        .args(["store", "seed", "--json", file.to_str().expect("utf8")])
        .output()
        .expect("seed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn test_store_seed_makes_a_store_that_runs_the_images_and_writes_nothing_twice() {
    let Some((env, file)) = exported() else {
        return;
    };
    let new = tempfile::tempdir().expect("tmp");
    let seeded = new.path().join("store");
    let r = seed(&seeded, &file);
    assert_eq!(r["snapshots_unpacked"], 6, "{r}");
    assert_eq!(r["images"].as_array().map(Vec::len), Some(2), "{r}");
    let verify = skiff_on(&seeded)
        .args(["image", "verify"])
        .output()
        .expect("verify");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    assert_eq!(
        outputs(&seeded),
        outputs(&env.root()),
        "the seeded store runs the same"
    );

    // Seeding again writes nothing.
    let before = listing(&seeded);
    let r = seed(&seeded, &file);
    assert_eq!(
        (r["snapshots_unpacked"].clone(), r["blobs_written"].clone()),
        (0.into(), 0.into()),
        "{r}"
    );
    assert_eq!(r["snapshots_reused"], 6, "{r}");
    let after = listing(&seeded);
    let changed: Vec<_> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, _)| k)
        .collect();
    assert!(changed.is_empty(), "a second seed rewrote {changed:?}");
    assert_eq!(before.len(), after.len());
}

#[test]
fn test_store_export_streams_into_seed() {
    let Some((env, _)) = exported() else { return };
    let new = tempfile::tempdir().expect("tmp");
    let seeded = new.path().join("store");
    let mut export = skiff_on(&env.root())
        .args(["store", "export", "--image", IMAGES[0], "-"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("export");
    let seed = Command::new(skiff_bin())
        .arg("--root")
        .arg(&seeded)
        .args(["store", "seed", "-"])
        .stdin(export.stdout.take().expect("pipe"))
        .output()
        .expect("seed");
    assert!(export.wait().expect("wait").success());
    assert!(
        seed.status.success(),
        "{}",
        String::from_utf8_lossy(&seed.stderr)
    );
    let ls = skiff_on(&seeded)
        .args(["image", "ls", "--json"])
        .output()
        .expect("ls");
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).expect("json");
    assert_eq!(
        ls.as_array().map(Vec::len),
        Some(1),
        "only the image asked for: {ls}"
    );
}

/// Seed `data` into a new store: the error output, after checking that it
/// failed and left no image.
fn refused(data: &[u8]) -> String {
    let new = tempfile::tempdir().expect("tmp");
    let root = new.path().join("store");
    let out = seed_from_stdin(&root, data);
    assert!(!out.status.success(), "a bad export was seeded");
    let ls = skiff_on(&root)
        .args(["image", "ls", "--json"])
        .output()
        .expect("ls");
    assert_eq!(
        String::from_utf8_lossy(&ls.stdout).trim(),
        "[]",
        "an image is visible"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `skiff store seed -` into `root`, fed `data`.
fn seed_from_stdin(root: &std::path::Path, data: &[u8]) -> std::process::Output {
    let mut child = skiff_on(root)
        .args(["store", "seed", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("seed");
    let mut stdin = child.stdin.take().expect("stdin");
    // A refused seed may stop reading early: that write error is expected.
    let _ = stdin.write_all(data);
    drop(stdin);
    child.wait_with_output().expect("wait")
}

/// A zstd snapshot with one byte in the middle of its tar flipped,
/// compressed again: a sound stream that only a digest can tell apart.
fn changed_and_recompressed(body: &[u8]) -> Vec<u8> {
    let mut plain = zstd::decode_all(body).expect("zstd");
    let i = plain.len() / 2;
    plain[i] ^= 0x01;
    zstd::encode_all(&plain[..], 3).expect("zstd")
}

/// `members` as an export again, with `manifest`, and `name` replaced by `body`.
fn with_member(
    members: &BTreeMap<String, Vec<u8>>,
    manifest: &str,
    name: &str,
    body: &[u8],
) -> Vec<u8> {
    rebuild(members, manifest, |n, b| {
        if n == name { body } else { b }.to_vec()
    })
}

/// An export made again from `members` (name → bytes) in an export's
/// order: `manifest` first, the blobs, then the snapshots in the
/// manifest's order (parents first); `edit` may change a member.
fn rebuild(
    members: &BTreeMap<String, Vec<u8>>,
    manifest: &str,
    edit: impl Fn(&str, &[u8]) -> Vec<u8>,
) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_str(manifest).unwrap_or_default();
    let snaps: Vec<String> = v["snapshots"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["chain_id"].as_str())
                .map(|c| format!("snapshots/{}.tar.zst", c.trim_start_matches("sha256:")))
                .collect()
        })
        .unwrap_or_default();
    let mut names = vec!["skiff-export.json".to_string()];
    names.extend(members.keys().filter(|n| n.starts_with("blobs/")).cloned());
    names.extend(snaps);
    let mut out = tar::Builder::new(Vec::new());
    for n in names {
        let body = if n == "skiff-export.json" {
            manifest.as_bytes().to_vec()
        } else {
            edit(&n, &members[&n])
        };
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        out.append_data(&mut h, &n, &body[..]).expect("append");
    }
    out.into_inner().expect("tar")
}

#[test]
fn test_store_seed_refuses_tampered_truncated_and_foreign_exports() {
    let Some((_env, file)) = exported() else {
        return;
    };
    let data = fs::read(&file).expect("read");
    // The largest snapshot's compressed bytes: one flipped in the middle.
    let members = support::tar::members(&file);
    let (name, body) = members
        .iter()
        .filter(|(n, _)| n.starts_with("snapshots/"))
        .max_by_key(|(_, b)| b.len())
        .expect("a snapshot");
    let at = data
        .windows(64)
        .position(|w| w == &body[body.len() / 2..body.len() / 2 + 64])
        .expect("find the snapshot's bytes")
        + 32;
    let mut tampered = data.clone();
    tampered[at] ^= 0x01;
    let err = refused(&tampered);
    assert!(err.contains(name.as_str()), "the snapshot is named: {err}");

    // The same snapshot with one byte of a file changed, compressed again:
    // a sound zstd stream, so only the manifest's digest can tell.
    let manifest = String::from_utf8(members["skiff-export.json"].clone()).expect("utf8");
    let recompressed = changed_and_recompressed(body);
    // Its compressed size is corrected in the manifest, as a forger would.
    let mut v: serde_json::Value = serde_json::from_str(&manifest).expect("json");
    for snap in v["snapshots"].as_array_mut().expect("snapshots") {
        let chain = snap["chain_id"]
            .as_str()
            .expect("chain")
            .replace("sha256:", "");
        if name.contains(&chain) {
            snap["zst_size"] = serde_json::json!(recompressed.len());
        }
    }
    let edited = with_member(&members, &v.to_string(), name, &recompressed);
    let err = refused(&edited);
    assert!(
        err.contains(name.as_str())
            && err.contains("its compressed bytes")
            && err.contains("digest mismatch"),
        "the snapshot is named, refused by its compressed digest: {err}"
    );

    // Cut short in the middle of that snapshot.
    let err = refused(&data[..at]);
    assert!(!err.is_empty(), "a truncated export says why");

    // A chain ID in the manifest that does not follow from its diff_id.
    let v: serde_json::Value = serde_json::from_str(&manifest).expect("json");
    let diff = v["snapshots"][1]["diff_id"]
        .as_str()
        .expect("diff")
        .to_string();
    let other = v["snapshots"][0]["diff_id"]
        .as_str()
        .expect("diff")
        .to_string();
    let forged = manifest.replacen(
        &format!("\"diff_id\": \"{diff}\""),
        &format!("\"diff_id\": \"{other}\""),
        1,
    );
    let forged = rebuild(&members, &forged, |_, b| b.to_vec());
    let err = refused(&forged);
    assert!(err.contains("chain ID"), "{err}");

    // A record that borrows the other image's manifest (both blobs sound):
    // NAME@DIGEST would then find it, so the seed refuses it.
    let mut v: serde_json::Value = serde_json::from_str(&manifest).expect("json");
    let theirs = v["images"][1]["record"]["manifest"].clone();
    v["images"][0]["record"]["manifest"] = theirs;
    let borrowed = rebuild(&members, &v.to_string(), |_, b| b.to_vec());
    let err = refused(&borrowed);
    assert!(err.contains("its config is not the record's"), "{err}");

    // An entry that is not part of an export.
    let mut foreign = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(manifest.len() as u64);
    h.set_mode(0o644);
    foreign
        .append_data(&mut h, "skiff-export.json", manifest.as_bytes())
        .expect("append");
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    foreign
        .append_data(&mut h, "etc/evil", &b"bad"[..])
        .expect("append");
    let err = refused(&foreign.into_inner().expect("tar"));
    assert!(err.contains("etc/evil"), "the entry is named: {err}");
}

#[test]
fn test_a_seeded_store_passes_the_conformance_suite() {
    // The vendored images imported, exported, and seeded into a new root:
    // every conformance case runs from the seeded store.
    let Some(src) = support::run::env() else {
        return;
    };
    let file = src.root.path().join("images.skx");
    let out = src.skiff(&["store", "export", file.to_str().expect("utf8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seeded = support::run::Env {
        root: tempfile::Builder::new()
            .prefix("skiff-seeded-")
            .tempdir()
            .expect("seeded root"),
    };
    let out = seeded.skiff(&["store", "seed", file.to_str().expect("utf8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut launcher = seeded.launcher();
    let failures = support::run::run_suite(&mut launcher, &seeded.work_dir(), "seeded");
    assert!(launcher.finish().expect("launcher exit").success());
    assert!(
        failures.is_empty(),
        "{} case(s) failed from the seeded store:\n{}",
        failures.len(),
        failures.join("\n")
    );
    seeded.assert_clean("state left: ", "cgroups left: ");
}

/// A version 1 export (tar digests only, as the last release wrote) still
/// seeds, and its snapshots are checked by their tar digests; a version 2
/// manifest that drops a snapshot's compressed digest is refused.
#[test]
fn test_store_seed_reads_version_1_exports_and_needs_version_2_digests() {
    let Some((_env, file)) = exported() else {
        return;
    };
    let members = support::tar::members(&file);
    let manifest = String::from_utf8(members["skiff-export.json"].clone()).expect("utf8");
    let mut v1: serde_json::Value = serde_json::from_str(&manifest).expect("json");
    assert_eq!(v1["version"], 2);
    v1["version"] = 1.into();
    for snap in v1["snapshots"].as_array_mut().expect("snapshots") {
        let snap = snap.as_object_mut().expect("object");
        assert!(snap.remove("zst_digest").is_some() && snap.remove("zst_size").is_some());
    }
    let old = rebuild(&members, &v1.to_string(), |_, b| b.to_vec());
    let new = tempfile::tempdir().expect("tmp");
    let root = new.path().join("store");
    let out = seed_from_stdin(&root, &old);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verify = skiff_on(&root)
        .args(["image", "verify"])
        .output()
        .expect("verify");
    assert!(verify.status.success(), "{verify:?}");

    // Version 1's check still holds: a snapshot changed and compressed
    // again is refused by its tar digest.
    let (name, body) = members
        .iter()
        .filter(|(n, _)| n.starts_with("snapshots/"))
        .max_by_key(|(_, b)| b.len())
        .expect("a snapshot");
    let recompressed = changed_and_recompressed(body);
    let edited = with_member(&members, &v1.to_string(), name, &recompressed);
    let err = refused(&edited);
    assert!(
        err.contains(name.as_str()) && err.contains("its tar") && err.contains("digest mismatch"),
        "{err}"
    );

    let mut dropped: serde_json::Value = serde_json::from_str(&manifest).expect("json");
    dropped["snapshots"][0]
        .as_object_mut()
        .expect("object")
        .remove("zst_digest");
    let err = refused(&rebuild(&members, &dropped.to_string(), |_, b| b.to_vec()));
    assert!(
        err.contains("snapshots[0]") && err.contains("zst_digest"),
        "{err}"
    );
}
