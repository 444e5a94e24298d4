//! `skiff image pull` against real registries (issue 14): Debian's
//! `docker-registry` on loopback, one with TLS from a CA made for the test
//! and htpasswd auth, plain ones as mirrors, filled by `skopeo copy`; and a
//! small proxy that throttles, corrupts or demands a Bearer token.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::Digest as _;
use support::env::{test_dir, vendor, Env};
use support::privilege::{gate, is_root, prerequisite};
use support::proxy::Proxy;
use support::registry::{auth_file, certs_dir, missing_tools, Registry, PASSWORD, USER};
use support::tar::{docker_save, layer, Entry};

/// The vendored busybox image's id.
const BUSYBOX_ID: &str = "sha256:ab84641e3af44119f30577f27752521abc1d1650212e225df722c5b6eb691162";

fn ready() -> bool {
    prerequisite(is_root(), "root (the store chowns unpacked files)") && gate(missing_tools())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `skiff image pull ARGS --json`, its report when it succeeds.
fn pull(env: &Env, args: &[&str]) -> Result<Value, String> {
    let out = env
        .skiff()
        .args(["image", "pull", "--json"])
        .args(args)
        .output()
        .expect("run skiff image pull");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("pull report JSON"))
    } else {
        Err(stderr(&out))
    }
}

/// A registry config file at `dir/registries.json`.
fn registry_config(dir: &Path, doc: Value) -> String {
    let p = dir.join("registries.json");
    std::fs::write(&p, doc.to_string()).expect("write registry config");
    p.display().to_string()
}

/// The store is consistent (`image verify`), and lists `images` images.
fn assert_store_ok(env: &Env, images: usize, label: &str) {
    let (_, v) = env.verify(&[], label);
    assert_eq!(
        v["problems"].as_array().map(Vec::len),
        Some(0),
        "{label}: {v}"
    );
    let ls = env.json(&["image", "ls"]);
    let ids: std::collections::BTreeSet<&str> = ls
        .as_array()
        .expect("ls array")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids.len(), images, "{label}: {ls}");
}

/// A one-layer image of `mib` MiB of incompressible bytes, as a `docker
/// save` archive tagged `tag`: big enough to kill things mid-download.
fn big_archive(dir: &Path, tag: &str, mib: usize) -> PathBuf {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..mib << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let l = layer(&[Entry::File("big.bin".into(), data, 0o644)]);
    let diff_id = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&l)));
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/big.bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let path = dir.join("big.tar");
    std::fs::write(
        &path,
        docker_save(&[("l/layer.tar".into(), l)], &config, tag),
    )
    .expect("write big archive");
    path
}

fn busybox() -> String {
    format!("docker-archive:{}", vendor("busybox.tar").display())
}

/// The layer digests of `repo:tag` at a registry, from its manifest.
fn layer_digests(host: &str, repo_tag: &str) -> Vec<String> {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{host}/{repo_tag}"))
        .output()
        .expect("skopeo inspect");
    assert!(out.status.success(), "skopeo inspect: {}", stderr(&out));
    let m: Value = serde_json::from_slice(&out.stdout).expect("manifest JSON");
    m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect()
}

#[test]
fn test_pull_by_tag_and_by_digest_over_tls_with_auth() {
    if !ready() {
        return;
    }
    let dir = test_dir("skiff-pull-tls-");
    let origin = Registry::tls_auth(&dir.path().join("origin"));
    origin.push(&busybox(), "skiff/busybox:1", false);
    let host = origin.host();
    let ca = origin.tls.as_ref().expect("tls").ca.clone();
    let cfg = registry_config(
        dir.path(),
        json!({"certs_dir": certs_dir(dir.path(), &host, &ca)}),
    );
    let auth = auth_file(dir.path(), &host, USER, PASSWORD);
    let auth = auth.to_str().expect("utf-8");
    let reference = format!("{host}/skiff/busybox:1");

    let env = Env::new();
    let r = pull(
        &env,
        &[&reference, "--registry-config", &cfg, "--auth-file", auth],
    )
    .expect("pull by tag");
    assert_eq!(r["image"]["id"], BUSYBOX_ID, "{r}");
    assert_eq!(r["layers_reused"], 0, "{r}");
    assert!(r["layers_downloaded"].as_u64() > Some(0), "{r}");
    assert_eq!(
        r["served_by"],
        json!([format!("registry https://{host}/")]),
        "{r}"
    );
    assert_store_ok(&env, 1, "after a pull by tag");
    let digest = r["digest"].as_str().expect("digest").to_string();

    // By digest, into another store: the same image, found again by NAME@DIGEST.
    let env2 = Env::new();
    let by_digest = format!("{host}/skiff/busybox@{digest}");
    let r2 = pull(
        &env2,
        &[&by_digest, "--registry-config", &cfg, "--auth-file", auth],
    )
    .expect("pull by digest");
    assert_eq!(r2["image"]["id"], BUSYBOX_ID, "{r2}");
    assert_eq!(r2["digest"], digest.as_str());
    let inspect = env2.json(&["image", "inspect", &by_digest]);
    assert_eq!(inspect["id"], BUSYBOX_ID, "{inspect}");

    // A wrong digest is not found, and says where it looked.
    let wrong = format!("{host}/skiff/busybox@sha256:{}", "0".repeat(64));
    let e = pull(
        &env2,
        &[&wrong, "--registry-config", &cfg, "--auth-file", auth],
    )
    .expect_err("unknown digest");
    assert!(e.contains("not found") && e.contains(&host), "{e}");
}

#[test]
fn test_pull_auth_and_tls_failures_are_named() {
    if !ready() {
        return;
    }
    let dir = test_dir("skiff-pull-auth-");
    let origin = Registry::tls_auth(&dir.path().join("origin"));
    origin.push(&busybox(), "skiff/busybox:1", false);
    let host = origin.host();
    let ca = origin.tls.as_ref().expect("tls").ca.clone();
    let cfg = registry_config(
        dir.path(),
        json!({"certs_dir": certs_dir(dir.path(), &host, &ca)}),
    );
    let reference = format!("{host}/skiff/busybox:1");
    let env = Env::new();

    let wrong = auth_file(dir.path(), &host, USER, "not-the-password");
    let e = pull(
        &env,
        &[
            &reference,
            "--registry-config",
            &cfg,
            "--auth-file",
            wrong.to_str().expect("utf-8"),
        ],
    )
    .expect_err("wrong password");
    assert!(
        e.contains("refused access") && e.contains(&host) && e.contains("\"skiff\""),
        "{e}"
    );

    let other = auth_file(dir.path(), "elsewhere.example", USER, PASSWORD);
    let e = pull(
        &env,
        &[
            &reference,
            "--registry-config",
            &cfg,
            "--auth-file",
            other.to_str().expect("utf-8"),
        ],
    )
    .expect_err("no credentials");
    assert!(e.contains("asks for a user name and password"), "{e}");

    // Without its CA the registry's certificate is not trusted.
    let right = auth_file(dir.path(), &host, USER, PASSWORD);
    let e = pull(
        &env,
        &[&reference, "--auth-file", right.to_str().expect("utf-8")],
    )
    .expect_err("unknown CA");
    assert!(e.contains("certificate") && e.contains(&host), "{e}");

    // --insecure is for loopback only.
    let e = pull(&env, &["registry.example:5000/a/b:1", "--insecure"]).expect_err("insecure");
    assert!(e.contains("only allowed for a registry on loopback"), "{e}");
    assert_store_ok(&env, 0, "after failed pulls");
}

#[test]
fn test_pull_through_a_mirror_and_from_the_origin_when_the_mirror_lacks_it() {
    if !ready() {
        return;
    }
    let dir = test_dir("skiff-pull-mirror-");
    let mut origin = Registry::tls_auth(&dir.path().join("origin"));
    let mirror = Registry::plain(&dir.path().join("mirror"));
    origin.push(&busybox(), "skiff/busybox:1", false);
    origin.push(
        &format!("docker-archive:{}", vendor("compat.tar").display()),
        "skiff/compat:1",
        false,
    );
    mirror.push(&busybox(), "skiff/busybox:1", false);
    let host = origin.host();
    let ca = origin.tls.as_ref().expect("tls").ca.clone();
    let cfg = registry_config(
        dir.path(),
        json!({
            "certs_dir": certs_dir(dir.path(), &host, &ca),
            "registries": {host.clone(): {"mirrors": [mirror.url()]}},
        }),
    );
    let auth = auth_file(dir.path(), &host, USER, PASSWORD);
    let auth = auth.to_str().expect("utf-8");
    let env = Env::new();

    origin.kill();
    let r = pull(
        &env,
        &[
            &format!("{host}/skiff/busybox:1"),
            "--registry-config",
            &cfg,
            "--auth-file",
            auth,
        ],
    )
    .expect("the mirror serves while the origin is down");
    assert_eq!(r["image"]["id"], BUSYBOX_ID, "{r}");
    assert_eq!(
        r["served_by"],
        json!([format!("mirror {}", mirror.url())]),
        "{r}"
    );
    // What the mirror lacks, the stopped origin cannot give: both are named.
    let e = pull(
        &env,
        &[
            &format!("{host}/skiff/compat:1"),
            "--registry-config",
            &cfg,
            "--auth-file",
            auth,
        ],
    )
    .expect_err("origin down, mirror lacks it");
    assert!(
        e.contains(&mirror.url()) && e.contains(&format!("https://{host}/")),
        "{e}"
    );

    origin.restart();
    let r = pull(
        &env,
        &[
            &format!("{host}/skiff/compat:1"),
            "--registry-config",
            &cfg,
            "--auth-file",
            auth,
        ],
    )
    .expect("the origin serves what the mirror lacks");
    assert_eq!(
        r["served_by"],
        json!([format!("registry https://{host}/")]),
        "{r}"
    );
    assert_store_ok(&env, 2, "after pulls through a mirror");
}

/// An OCI layout holding an index of busybox (amd64) and an arm64 image,
/// with platforms, tagged `multi`.
fn multi_platform_layout(dir: &Path) -> PathBuf {
    let layout = dir.join("multi");
    let copy = |src: String, tag: &str| {
        let out = Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--quiet"])
            .arg(src)
            .arg(format!("oci:{}:{tag}", layout.display()))
            .output()
            .expect("skopeo copy");
        assert!(out.status.success(), "skopeo copy: {}", stderr(&out));
    };
    copy(busybox(), "amd64");
    let l = layer(&[Entry::File("x".into(), b"arm64 stand-in".to_vec(), 0o755)]);
    let diff_id = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&l)));
    let config = json!({
        "architecture": "arm64", "os": "linux", "config": {"Cmd": ["/x"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let arm = dir.join("arm64.tar");
    std::fs::write(
        &arm,
        docker_save(&[("l/layer.tar".into(), l)], &config, "arm:1"),
    )
    .expect("write");
    copy(format!("docker-archive:{}", arm.display()), "arm64");
    let index_path = layout.join("index.json");
    let top: Value =
        serde_json::from_slice(&std::fs::read(&index_path).expect("index.json")).expect("json");
    let mut manifests = Vec::new();
    for m in top["manifests"].as_array().expect("manifests") {
        let arch = m["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .expect("ref");
        let mut d = m.clone();
        d.as_object_mut().expect("object").remove("annotations");
        d["platform"] = json!({"architecture": arch, "os": "linux"});
        manifests.push(d);
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    })
    .to_string();
    let hexd = hex::encode(sha2::Sha256::digest(index.as_bytes()));
    std::fs::write(layout.join("blobs/sha256").join(&hexd), &index).expect("write index blob");
    let top = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{hexd}"),
            "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }],
    });
    std::fs::write(&index_path, top.to_string()).expect("write index.json");
    layout
}

#[test]
fn test_pull_of_a_multi_platform_index_takes_the_host_platform_or_the_one_asked() {
    if !ready()
        || !prerequisite(
            imagestore::Platform::host().arch == "amd64",
            "an amd64 host",
        )
    {
        return;
    }
    let dir = test_dir("skiff-pull-multi-");
    let reg = Registry::plain(&dir.path().join("reg"));
    let layout = multi_platform_layout(dir.path());
    reg.push(
        &format!("oci:{}:multi", layout.display()),
        "skiff/multi:1",
        true,
    );
    let reference = format!("{}/skiff/multi:1", reg.host());
    let env = Env::new();
    let r = pull(&env, &[&reference, "--insecure"]).expect("pull the host's platform");
    assert_eq!(r["image"]["platform"], "linux/amd64", "{r}");
    // The image an import of the same layout picks (skopeo rewrote the
    // config as OCI's, so it is not the vendored id).
    let imported = Env::new();
    let layout_arg = layout.to_str().expect("utf-8");
    let i = imported.json(&["image", "import", layout_arg]);
    assert_eq!(r["image"]["id"], i["images"][0]["id"], "{r} vs {i}");
    let index_digest = r["digest"].as_str().expect("digest").to_string();
    let r = pull(
        &env,
        &[&reference, "--insecure", "--platform", "linux/arm64"],
    )
    .expect("pull arm64");
    assert_eq!(r["image"]["platform"], "linux/arm64", "{r}");
    assert_eq!(r["digest"], index_digest.as_str(), "the same index");
    let e = pull(
        &env,
        &[&reference, "--insecure", "--platform", "linux/s390x"],
    )
    .expect_err("absent platform");
    assert!(
        e.contains("linux/s390x") && e.contains("linux/arm64"),
        "{e}"
    );
    // NAME@INDEX-DIGEST names the pulled image (the host's, pulled first).
    let found = env.json(&[
        "image",
        "inspect",
        &format!("{}/skiff/multi@{index_digest}", reg.host()),
    ]);
    assert!(found["id"].is_string(), "{found}");
}

/// Wait until `pred` holds, or panic after `secs`.
fn wait_for(secs: u64, what: &str, pred: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A big image in a plain registry behind a proxy throttled to `bps`, and
/// a pull of it started (`--insecure`, stdout and stderr piped), once its
/// layer download has begun: (registry, proxy, layer digest, the pull).
fn throttled_pull(
    dir: &Path,
    env: &Env,
    mib: usize,
    bps: u64,
) -> (Registry, Proxy, String, std::process::Child) {
    let reg = Registry::plain(&dir.join("reg"));
    let big = big_archive(dir, "big:1", mib);
    reg.push(
        &format!("docker-archive:{}", big.display()),
        "skiff/big:1",
        false,
    );
    let layer = layer_digests(&reg.host(), "skiff/big:1").remove(0);
    let proxy = Proxy::start(&reg.url());
    proxy
        .behaviour
        .bytes_per_sec
        .store(bps, std::sync::atomic::Ordering::SeqCst);
    let child = env
        .skiff()
        .args(["image", "pull", "--json", "--insecure"])
        .arg(format!("{}/skiff/big:1", proxy.host()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pull");
    wait_for(60, "the layer download to start", || {
        proxy.log().iter().any(|l| l.contains(&layer))
    });
    (reg, proxy, layer, child)
}

#[test]
fn test_pull_survives_a_registry_killed_mid_blob_and_resumes_with_range() {
    if !ready() {
        return;
    }
    let dir = test_dir("skiff-pull-resume-");
    let env = Env::new();
    let (mut reg, proxy, layer, child) = throttled_pull(dir.path(), &env, 24, 6 << 20);
    std::thread::sleep(Duration::from_millis(1500));
    reg.kill();
    std::thread::sleep(Duration::from_millis(700));
    reg.restart();
    let out = child.wait_with_output().expect("pull");
    assert!(out.status.success(), "pull failed: {}", stderr(&out));
    let ranged: Vec<String> = proxy
        .log()
        .into_iter()
        .filter(|l| l.contains(&layer) && l.contains("bytes="))
        .collect();
    assert!(
        !ranged.is_empty(),
        "no Range request after the kill: {:?}",
        proxy.log()
    );
    assert!(
        !ranged[0].contains("bytes=0-"),
        "resumed from the start: {ranged:?}"
    );
    assert_store_ok(&env, 1, "after a resumed pull");
}

#[test]
fn test_pull_killed_mid_download_leaves_no_image_and_a_second_pull_finishes() {
    if !ready() {
        return;
    }
    let dir = test_dir("skiff-pull-kill-");
    let env = Env::new();
    let (_reg, proxy, _, mut child) = throttled_pull(dir.path(), &env, 16, 4 << 20);
    let reference = format!("{}/skiff/big:1", proxy.host());
    std::thread::sleep(Duration::from_millis(800));
    child.kill().expect("SIGKILL the pull");
    let _ = child.wait();
    assert_store_ok(&env, 0, "after a pull was killed");
    proxy
        .behaviour
        .bytes_per_sec
        .store(0, std::sync::atomic::Ordering::SeqCst);
    let r = pull(&env, &["--insecure", &reference]).expect("pull again");
    assert_eq!(r["layers_downloaded"], 1, "{r}");
    assert_store_ok(&env, 1, "after the second pull");
}

#[test]
fn test_pull_refuses_a_corrupted_blob_naming_it_and_the_registry() {
    if !ready() {
        return;
    }
    let dir = test_dir("skiff-pull-corrupt-");
    let reg = Registry::plain(&dir.path().join("reg"));
    reg.push(&busybox(), "skiff/busybox:1", false);
    let layer = layer_digests(&reg.host(), "skiff/busybox:1").remove(0);
    let proxy = Proxy::start(&reg.url());
    *proxy.behaviour.corrupt.lock().expect("lock") = Some(layer.clone());
    let env = Env::new();
    let e = pull(
        &env,
        &["--insecure", &format!("{}/skiff/busybox:1", proxy.host())],
    )
    .expect_err("a corrupted layer");
    assert!(e.contains(&layer), "names the blob: {e}");
    assert!(
        e.contains(&format!("served by registry http://{}/", proxy.host())),
        "names the registry that served it: {e}"
    );
    assert!(e.contains("digest mismatch"), "{e}");
    assert_store_ok(&env, 0, "after a refused blob");
}

#[test]
fn test_pull_with_a_bearer_token_from_the_token_service() {
    if !ready() {
        return;
    }
    let dir = test_dir("skiff-pull-bearer-");
    let reg = Registry::plain(&dir.path().join("reg"));
    reg.push(&busybox(), "skiff/busybox:1", false);
    let proxy = Proxy::start(&reg.url());
    *proxy.behaviour.bearer.lock().expect("lock") = Some((USER.into(), PASSWORD.into()));
    let reference = format!("{}/skiff/busybox:1", proxy.host());
    let env = Env::new();
    let bad = auth_file(dir.path(), &proxy.host(), USER, "wrong");
    let e = pull(
        &env,
        &[
            "--insecure",
            &reference,
            "--auth-file",
            bad.to_str().expect("utf-8"),
        ],
    )
    .expect_err("wrong credentials");
    assert!(e.contains("token service") && e.contains("refused"), "{e}");
    let good = auth_file(dir.path(), &proxy.host(), USER, PASSWORD);
    let r = pull(
        &env,
        &[
            "--insecure",
            &reference,
            "--auth-file",
            good.to_str().expect("utf-8"),
        ],
    )
    .expect("pull with a token");
    assert_eq!(r["image"]["id"], BUSYBOX_ID, "{r}");
    assert!(
        proxy.log().iter().any(|l| l.starts_with("GET /token?")),
        "{:?}",
        proxy.log()
    );
}

#[test]
fn test_pull_does_not_download_layers_the_store_has() {
    if !ready() {
        return;
    }
    let dir = test_dir("skiff-pull-reuse-");
    let reg = Registry::plain(&dir.path().join("reg"));
    reg.push(&busybox(), "skiff/a:1", false);
    reg.push(&busybox(), "skiff/b:1", false);
    let layers = layer_digests(&reg.host(), "skiff/b:1");
    let proxy = Proxy::start(&reg.url());
    let env = Env::new();
    pull(
        &env,
        &["--insecure", &format!("{}/skiff/a:1", proxy.host())],
    )
    .expect("pull a");
    let before = proxy.log().len();
    let r = pull(
        &env,
        &["--insecure", &format!("{}/skiff/b:1", proxy.host())],
    )
    .expect("pull b");
    assert_eq!(r["layers_downloaded"], 0, "{r}");
    assert_eq!(
        r["layers_reused"].as_u64(),
        Some(layers.len() as u64),
        "{r}"
    );
    let second: Vec<String> = proxy.log().split_off(before);
    assert!(
        !second
            .iter()
            .any(|l| layers.iter().any(|d| l.contains(d.as_str()))),
        "layers fetched again: {second:?}"
    );
}

#[test]
fn test_run_pulls_a_missing_image_as_pull_missing_says() {
    if !support::privilege::gate(support::run::missing_prerequisite()) || !ready() {
        return;
    }
    let dir = test_dir("skiff-pull-run-");
    let reg = Registry::plain(&dir.path().join("reg"));
    reg.push(&busybox(), "skiff/busybox:1", false);
    let reference = format!("{}/skiff/busybox:1", reg.host());
    let env = Env::new();
    let out = env
        .skiff()
        .args(["run", "--rm", "--pull", "never", &reference, "true"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no such image"), "{}", stderr(&out));
    let out = env
        .skiff()
        .args([
            "run",
            "--rm",
            "--pull",
            "missing",
            "--insecure",
            &reference,
            "echo",
            "pulled",
        ])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pulled\n");
    // The same output as the imported image gives.
    let imported = Env::new();
    imported.ok(&[
        "image",
        "import",
        vendor("busybox.tar").to_str().expect("utf-8"),
    ]);
    let args = ["run", "--rm", "skiff-vendor/busybox", "ls", "/bin"];
    let a = imported.skiff().args(args).output().expect("run imported");
    let b = env
        .skiff()
        .args(["run", "--rm", &reference, "ls", "/bin"])
        .output()
        .expect("run pulled");
    assert!(
        a.status.success() && b.status.success(),
        "{} {}",
        stderr(&a),
        stderr(&b)
    );
    assert_eq!(a.stdout, b.stdout);
}
