//! Image references as Docker normalises them (issue 10, defect 1): names
//! written by skopeo and Docker 25+ (`docker.io/org/app:v1`) resolve from
//! any form, one image is listed under one name, ids, id prefixes and
//! `NAME@sha256:…` resolve, `image ls` shows names as `docker images` does,
//! and a store written before normalisation keeps working.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use support::env::{docker_load, vendor_archive, Env};
use support::privilege::{is_root, prerequisite};
use support::tar::{docker_save, layer, members, Entry};

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A one-layer image config whose only file is `/marker` holding `marker`;
/// returns (config, layer tar).
fn tiny_image(marker: &str) -> (Value, Vec<u8>) {
    let layer = layer(&[Entry::File(
        "marker".into(),
        marker.as_bytes().to_vec(),
        0o644,
    )]);
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    let config = json!({
        "architecture": arch, "os": "linux",
        "created": "2024-09-26T21:31:42Z",
        "config": {"Cmd": ["/marker"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(&layer))]},
    });
    (config, layer)
}

/// A legacy `docker save` archive of [`tiny_image`] tagged `tag` as written.
fn save_archive(path: &Path, tag: &str, marker: &str) {
    save_archive_created(path, tag, marker, None);
}

/// [`save_archive`] with the config's `created` time (RFC 3339).
fn save_archive_created(path: &Path, tag: &str, marker: &str, created: Option<&str>) {
    let (mut config, layer) = tiny_image(marker);
    if let Some(c) = created {
        config["created"] = json!(c);
    }
    let tar = docker_save(&[("l/layer.tar".into(), layer)], &config, tag);
    std::fs::write(path, tar).expect("write archive");
}

/// An archive as `docker save` writes it from Docker 25 on: an OCI layout
/// (`index.json` annotated with `io.containerd.image.name` and
/// `org.opencontainers.image.ref.name`) plus `manifest.json`, whose
/// `RepoTags` spell the name in its familiar form. Returns the manifest
/// digest.
fn docker25_archive(path: &Path, full_name: &str, familiar: &str, marker: &str) -> String {
    let (config, layer) = tiny_image(marker);
    let config = serde_json::to_vec(&config).expect("json");
    let (cfg_hex, layer_hex) = (sha256_hex(&config), sha256_hex(&layer));
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{cfg_hex}"), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": format!("sha256:{layer_hex}"), "size": layer.len()}],
    }))
    .expect("json");
    let man_hex = sha256_hex(&manifest);
    let tag = full_name.rsplit(':').next().expect("tag");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{man_hex}"), "size": manifest.len(),
            "annotations": {
                "io.containerd.image.name": full_name,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))
    .expect("json");
    let docker_manifest = serde_json::to_vec(&json!([{
        "Config": format!("blobs/sha256/{cfg_hex}"),
        "RepoTags": [familiar],
        "Layers": [format!("blobs/sha256/{layer_hex}")],
    }]))
    .expect("json");
    let mut b = tar::Builder::new(Vec::new());
    let files: [(String, &[u8]); 6] = [
        ("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#),
        (format!("blobs/sha256/{cfg_hex}"), &config),
        (format!("blobs/sha256/{layer_hex}"), &layer),
        (format!("blobs/sha256/{man_hex}"), &manifest),
        ("index.json".into(), &index),
        ("manifest.json".into(), &docker_manifest),
    ];
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, name, data).expect("append");
    }
    std::fs::write(path, b.into_inner().expect("tar")).expect("write archive");
    format!("sha256:{man_hex}")
}

fn import(env: &Env, archive: &Path) -> Value {
    env.json(&["image", "import", archive.to_str().expect("utf8")])
}

/// The image id `reference` resolves to in skiff (`image inspect`), or
/// skiff's error.
fn resolve(env: &Env, reference: &str) -> Result<String, String> {
    let out = env.run(&["image", "inspect", reference]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: Value = serde_json::from_slice(&out.stdout).expect("inspect json");
    Ok(v["id"].as_str().expect("id").to_string())
}

fn refs(report: &Value) -> Vec<String> {
    report["images"][0]["refs"]
        .as_array()
        .expect("refs")
        .iter()
        .map(|r| r.as_str().expect("str").to_string())
        .collect()
}

#[test]
fn test_refs_full_names_from_skopeo_resolve_from_every_form() {
    if !prerequisite(is_root(), "root") {
        return;
    }
    let env = Env::new();
    let a = env.path("app.tar");
    save_archive(&a, "docker.io/org/app:v1", "app");
    let r = import(&env, &a);
    assert_eq!(refs(&r), ["docker.io/org/app:v1"]);
    let id = r["images"][0]["id"].as_str().expect("id").to_string();
    for reference in [
        "org/app:v1",
        "docker.io/org/app:v1",
        "index.docker.io/org/app:v1",
    ] {
        assert_eq!(
            resolve(&env, reference).as_deref(),
            Ok(id.as_str()),
            "{reference}"
        );
    }
    let e = resolve(&env, "org/app").expect_err("latest is not v1");
    assert!(e.contains("no such image: org/app"), "{e}");

    let h = env.path("hello.tar");
    save_archive(&h, "docker.io/library/hello-world:latest", "hello");
    let r = import(&env, &h);
    let hello = r["images"][0]["id"].as_str().expect("id").to_string();
    for reference in [
        "hello-world",
        "hello-world:latest",
        "library/hello-world",
        "docker.io/library/hello-world:latest",
        "docker.io/hello-world",
    ] {
        assert_eq!(
            resolve(&env, reference).as_deref(),
            Ok(hello.as_str()),
            "{reference}"
        );
    }
    // Importing it again under the short name leaves one name.
    save_archive(&h, "hello-world", "hello");
    import(&env, &h);
    let ls = env.json(&["image", "ls"]);
    let rows: Vec<(&str, &str, &str)> = ls
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["reference"].as_str().expect("reference"),
                r["repository"].as_str().expect("repository"),
                r["tag"].as_str().expect("tag"),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                "docker.io/library/hello-world:latest",
                "hello-world",
                "latest"
            ),
            ("docker.io/org/app:v1", "org/app", "v1"),
        ]
    );
    // The table has `docker images`' columns, names as Docker shows them.
    let table = env.ok(&["image", "ls"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"],
        "{table}"
    );
    let cells: Vec<&str> = lines[2]
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(cells[..3], ["org/app", "v1", &id[7..19]], "{table}");
    assert!(cells[3].ends_with(" ago"), "{table}");
}

#[test]
fn test_refs_docker25_archive_one_name_and_digest_references() {
    if !prerequisite(is_root(), "root") {
        return;
    }
    let env = Env::new();
    let a = env.path("d25.tar");
    let manifest = docker25_archive(
        &a,
        "docker.io/library/refs-hello:latest",
        "refs-hello:latest",
        "d25",
    );
    let r = import(&env, &a);
    assert_eq!(refs(&r), ["docker.io/library/refs-hello:latest"], "{r}");
    assert_eq!(
        env.json(&["image", "ls"]).as_array().expect("rows").len(),
        1
    );
    let id = r["images"][0]["id"].as_str().expect("id").to_string();
    let hex = &id["sha256:".len()..];
    for reference in [
        "refs-hello".to_string(),
        id.clone(),
        hex.to_string(),
        hex[..12].to_string(),
        format!("sha256:{}", &hex[..8]),
        format!("refs-hello@{manifest}"),
        format!("docker.io/library/refs-hello@{manifest}"),
        format!("refs-hello:other@{manifest}"),
    ] {
        assert_eq!(
            resolve(&env, &reference).as_deref(),
            Ok(id.as_str()),
            "{reference}"
        );
    }
    // A digest of another name, or no image's digest, is no such image.
    for reference in [
        format!("alpine@{manifest}"),
        format!("refs-hello@{id}"),
        format!("refs-hello@sha256:{}", "0".repeat(64)),
    ] {
        let e = resolve(&env, &reference).expect_err(&reference);
        assert!(e.contains("no such image"), "{reference}: {e}");
    }
    let inspect = env.json(&["image", "inspect", "refs-hello"]);
    assert_eq!(inspect["repo_tags"], json!(["refs-hello:latest"]));
    assert_eq!(
        inspect["repo_digests"],
        json!([format!("refs-hello@{manifest}")])
    );
}

#[test]
fn test_refs_bad_references_name_the_reference_and_the_fault() {
    if !prerequisite(is_root(), "root") {
        return;
    }
    let env = Env::new();
    for (reference, fault) in [
        ("Org/App:v1", "repository name must be lowercase"),
        // Docker's words: "invalid reference format: repository name must be lowercase".
        (
            "Skiff-Vendor/busybox",
            "invalid reference format: repository name must be lowercase",
        ),
        ("busybox:", "the tag is empty"),
        ("busybox@sha256:abc", "digest"),
        ("sha256:xyz", "hex"),
    ] {
        let e = resolve(&env, reference).expect_err(reference);
        assert!(
            e.contains(&format!("\"{reference}\"")) && e.contains(fault),
            "{reference}: {e}"
        );
    }
    // An archive tag Docker's grammar refuses is refused at import, named.
    let a = env.path("bad.tar");
    save_archive(&a, "Bad/Name:1", "bad");
    let out = env.run(&["image", "import", a.to_str().expect("utf8")]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("Bad/Name:1"), "{e}");
}

/// A store written before normalisation: tag files under the name as
/// given (`busybox%3Alatest.json` holding `busybox:latest`).
#[test]
fn test_refs_old_store_tags_resolve_show_and_migrate() {
    if !prerequisite(is_root(), "root") {
        return;
    }
    let env = Env::new();
    let a = env.path("a.tar");
    save_archive(&a, "busybox:latest", "a");
    let id_a = import(&env, &a)["images"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let b = env.path("b.tar");
    save_archive(&b, "skiff-vendor/busybox:latest", "b");
    let id_b = import(&env, &b)["images"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    // Rewrite the tags as the old store had them.
    let tags = env.root().join("meta/tags");
    for e in std::fs::read_dir(&tags).expect("tags") {
        std::fs::remove_file(e.expect("entry").path()).expect("rm");
    }
    for (name, reference, id) in [
        ("busybox%3Alatest.json", "busybox:latest", &id_a),
        (
            "skiff-vendor%2Fbusybox%3Alatest.json",
            "skiff-vendor/busybox:latest",
            &id_b,
        ),
    ] {
        let rec = json!({"reference": reference, "id": id});
        std::fs::write(tags.join(name), rec.to_string()).expect("write");
    }
    for (reference, id) in [
        ("busybox", &id_a),
        ("busybox:latest", &id_a),
        ("docker.io/library/busybox:latest", &id_a),
        ("skiff-vendor/busybox", &id_b),
        ("docker.io/skiff-vendor/busybox:latest", &id_b),
    ] {
        assert_eq!(resolve(&env, reference).as_ref(), Ok(id), "{reference}");
    }
    let ls = env.json(&["image", "ls"]);
    let names: Vec<(&str, &str)> = ls
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["repository"].as_str().expect("repository"),
                r["reference"].as_str().expect("reference"),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("busybox", "docker.io/library/busybox:latest"),
            (
                "skiff-vendor/busybox",
                "docker.io/skiff-vendor/busybox:latest"
            ),
        ]
    );
    let (_, verify) = env.verify(&[], "");
    assert_eq!(verify["problems"], json!([]), "{verify}");
    // Importing again rewrites the tag in canonical form, the old file goes.
    import(&env, &b);
    let files = support::env::names(&tags);
    assert!(
        files.contains(&"docker.io%2Fskiff-vendor%2Fbusybox%3Alatest.json".to_string())
            && !files.contains(&"skiff-vendor%2Fbusybox%3Alatest.json".to_string()),
        "{files:?}"
    );
    // rm removes an old-form tag by any of its names.
    let r = env.json(&["image", "rm", "docker.io/library/busybox:latest"]);
    assert_eq!(r["untagged"], json!(["docker.io/library/busybox:latest"]));
    assert!(resolve(&env, "busybox").is_err());
    assert!(!support::env::names(&tags).contains(&"busybox%3Alatest.json".to_string()));
}

/// `skiff run org/app:v1` on an image a skopeo archive named
/// `docker.io/org/app:v1` (the vendored busybox, renamed).
#[test]
fn test_refs_run_by_short_name() {
    let Some(env) = support::run::env() else {
        return;
    };
    let base = vendor_archive("busybox");
    let files = members(&base);
    let mut manifest: Value = serde_json::from_slice(&files["manifest.json"]).expect("manifest");
    manifest[0]["RepoTags"] = json!(["docker.io/skiff-refs/app:v1"]);
    let dir = tempfile::tempdir().expect("tmp");
    let archive = dir.path().join("app.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&archive).expect("create"));
    for (name, data) in &files {
        let data = if name == "manifest.json" {
            serde_json::to_vec(&manifest).expect("json")
        } else {
            data.clone()
        };
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, &data[..]).expect("append");
    }
    b.finish().expect("finish");
    drop(b);
    let out = env.skiff(&["image", "import", archive.to_str().expect("utf8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env.run(None, &["skiff-refs/app:v1", "echo", "hi"]);
    assert!(
        out.status.success(),
        "skiff run skiff-refs/app:v1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(support::run::stdout(&out), "hi\n");
}

/// The Docker engine is the oracle: it shows `docker.io/library/x` as `x`
/// and `docker.io/org/app` as `org/app`, as skiff does; and it refuses
/// `NAME@<image id>` for a loaded image, as skiff does.
/// `docker rmi`s the names this test loaded, even when it fails.
struct DockerNames(Vec<String>);

impl Drop for DockerNames {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("docker").args(["rmi", name]).output();
        }
    }
}

#[test]
fn test_refs_names_match_docker_images() {
    if !prerequisite(is_root(), "root") {
        return;
    }
    let env = Env::new();
    // (repository, tag) as the archive spells them, and created times that
    // order them the other way round from their names: `docker images`
    // lists the newest first.
    let names = [
        (
            "docker.io/library/skiff-refs-x",
            "1",
            "2020-01-01T00:00:00Z",
        ),
        ("docker.io/skiff-refs/app", "v1", "2024-01-01T00:00:00Z"),
    ];
    let mut ids = Vec::new();
    let mut loaded = DockerNames(Vec::new());
    let docker = |args: &[&str]| Command::new("docker").args(args).output().expect("docker");
    let mut want = Vec::new();
    for (i, (repo, tag, created)) in names.iter().enumerate() {
        let name = format!("{repo}:{tag}");
        let a = env.path(&format!("{i}.tar"));
        save_archive_created(&a, &name, &format!("oracle {i}"), Some(created));
        if let Err(e) = docker_load(&a) {
            prerequisite(false, &format!("a Docker engine ({e})"));
            return;
        }
        loaded.0.push(name.clone());
        let id = import(&env, &a)["images"][0]["id"]
            .as_str()
            .expect("id")
            .to_string();
        let out = docker(&["image", "inspect", "-f", "{{json .RepoTags}}", &name]);
        let tags: Value = serde_json::from_slice(&out.stdout).expect("RepoTags");
        let inspect = env.json(&["image", "inspect", &name]);
        assert_eq!(inspect["repo_tags"], tags, "{name}");
        ids.push(id[7..19].to_string());
        // NAME@<image id>: no such image on both sides (NAME@ takes a
        // manifest digest, and a loaded image has none); the id alone works.
        let by_id = format!("{repo}@{id}");
        let out = docker(&["image", "inspect", &by_id]);
        assert!(!out.status.success(), "docker resolved {by_id}");
        let e = resolve(&env, &by_id).expect_err(&by_id);
        assert!(
            e.contains("no such image") && e.contains("by its id alone"),
            "{e}"
        );
        let out = docker(&["image", "inspect", "-f", "{{.Id}}", &id]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id);
        assert_eq!(resolve(&env, &id).as_ref(), Ok(&id));
    }
    // `docker images`' rows for these images, in its order (its arguments
    // filter by familiar name, so list all and pick by id).
    let out = docker(&["images", "--format", "{{.Repository}} {{.Tag}} {{.ID}}"]);
    want.extend(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| ids.iter().any(|id| l.ends_with(id.as_str())))
            .map(String::from),
    );
    let ls = env.json(&["image", "ls"]);
    let got: Vec<String> = ls
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["repository"].as_str().expect("repository"),
                r["tag"].as_str().expect("tag"),
                &r["id"].as_str().expect("id")[7..19]
            )
        })
        .collect();
    assert_eq!(got, want, "skiff image ls vs docker images");
    assert_eq!(
        want[0].split(' ').next(),
        Some("skiff-refs/app"),
        "{want:?}"
    );
}
