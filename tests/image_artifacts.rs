//! Archives that hold more than one image, or artifacts next to images
//! (issue 10, defect 2): an artifact in an image's clothes (the image-config
//! media type with `{}` as config, as buildx attestations are) is skipped
//! with a warning naming it; parse errors name the blob and the field; one
//! image can be selected from many.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{json, Value};
use sha2::Digest as _;
use support::env::Env;
use support::privilege::{is_root, prerequisite};
use support::tar::{layer, Entry};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

fn sha(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The host's architecture, as image configs name it.
fn arch() -> String {
    imagestore::Platform::host().arch
}

/// An OCI layout directory being written.
struct Layout {
    dir: PathBuf,
    entries: Vec<Value>,
}

impl Layout {
    fn new(dir: PathBuf) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("mkdir");
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("oci-layout");
        Layout {
            dir,
            entries: Vec::new(),
        }
    }

    /// Store a blob; its descriptor with media type `mt`.
    fn blob(&self, mt: &str, data: &[u8]) -> Value {
        let hex = sha(data);
        std::fs::write(self.dir.join("blobs/sha256").join(&hex), data).expect("blob");
        json!({"mediaType": mt, "digest": format!("sha256:{hex}"), "size": data.len()})
    }

    /// List a manifest of `config` and `layers` under the ref name `name`;
    /// its digest.
    fn manifest(&mut self, config: Value, layers: Vec<Value>, name: &str) -> String {
        let m = json!({"schemaVersion": 2, "mediaType": MANIFEST,
            "config": config, "layers": layers});
        let mut d = self.blob(MANIFEST, &serde_json::to_vec(&m).expect("json"));
        d["annotations"] = json!({"org.opencontainers.image.ref.name": name});
        let digest = d["digest"].as_str().expect("digest").to_string();
        self.entries.push(d);
        digest
    }

    /// A runnable-looking image: one layer with `/hello`, tagged `name`.
    fn image(&mut self, name: &str, config_edit: impl Fn(&mut Value)) -> String {
        let l = layer(&[Entry::File("hello".into(), b"hi\n".to_vec(), 0o644)]);
        let mut cfg = json!({"architecture": arch(), "os": "linux",
            "config": {"Cmd": ["/hello"]},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha(&l))]}});
        config_edit(&mut cfg);
        let config = self.blob(CONFIG, &serde_json::to_vec(&cfg).expect("json"));
        let layer = self.blob(LAYER, &l);
        self.manifest(config, vec![layer], name)
    }

    /// An attestation as buildx writes one, but with no annotation marking
    /// it: the image-config media type, `{}` as config, an in-toto layer.
    fn attestation(&mut self, name: &str) -> String {
        let config = self.blob(CONFIG, b"{}");
        let statement = self.blob(
            "application/vnd.in-toto+json",
            br#"{"_type":"https://in-toto.io/Statement/v0.1"}"#,
        );
        self.manifest(config, vec![statement], name)
    }

    fn finish(&self) -> &str {
        let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": self.entries});
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).expect("json"),
        )
        .expect("index");
        self.dir.to_str().expect("utf8")
    }
}

fn root_env() -> Option<Env> {
    prerequisite(is_root(), "root").then(Env::new)
}

#[test]
fn test_artifacts_attestation_next_to_an_image_is_skipped_with_a_warning() {
    let Some(env) = root_env() else {
        return;
    };
    let mut l = Layout::new(env.path("layout"));
    l.image("app:v1", |_| {});
    let att = l.attestation("app:v1-attestation");
    let path = l.finish().to_string();
    let out = env.run(&["image", "import", &path]);
    let err = stderr(&out);
    assert!(out.status.success(), "the image imports: {err}");
    assert!(!err.contains("serde failed"), "{err}");
    assert!(
        err.contains("warning: skipped")
            && err.contains(&att)
            && err.contains("app:v1-attestation"),
        "the warning names the artifact's digest and ref name: {err}"
    );
    let ls = env.json(&["image", "ls"]);
    assert_eq!(ls.as_array().expect("rows").len(), 1, "{ls}");
}

#[test]
fn test_artifacts_layout_of_only_an_artifact_says_so() {
    let Some(env) = root_env() else {
        return;
    };
    let mut l = Layout::new(env.path("layout"));
    let att = l.attestation("sbom");
    let path = l.finish().to_string();
    let out = env.run(&["image", "import", &path]);
    let err = stderr(&out);
    assert!(!out.status.success(), "nothing to import");
    assert!(
        err.contains("only non-image content") && err.contains(&att) && err.contains("artifact"),
        "the error says the layout holds only an artifact, and names it: {err}"
    );
}

#[test]
fn test_artifacts_oci_parse_errors_name_blob_and_field() {
    let Some(env) = root_env() else {
        return;
    };
    // A config whose third diff_id is a number.
    let mut l = Layout::new(env.path("layout"));
    l.image("app:v1", |cfg| {
        let ids = cfg["rootfs"]["diff_ids"].as_array_mut().expect("ids");
        ids.push(json!(format!("sha256:{}", "a".repeat(64))));
        ids.push(json!(7));
    });
    let path = l.finish().to_string();
    let out = env.run(&["image", "import", &path]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("image config sha256:") && err.contains("rootfs.diff_ids[2]: invalid type"),
        "names the config blob and the field: {err}"
    );

    // A manifest whose layer size is a string.
    let mut l = Layout::new(env.path("layout2"));
    let config = l.blob(
        CONFIG,
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let mut bad = l.blob(LAYER, b"x");
    bad["size"] = json!("big");
    let m = l.manifest(config, vec![bad], "app:v2");
    let path = l.finish().to_string();
    let err = stderr(&env.run(&["image", "import", &path]));
    assert!(
        err.contains(&format!("image manifest {m}")) && err.contains("layers[0].size"),
        "names the manifest blob and the field: {err}"
    );
}

/// A `docker save` archive of the image configs `configs` (each of one
/// layer holding `/hello`), tagged `app:<i>`.
fn docker_archive(path: &Path, configs: &[Value]) {
    let l = layer(&[Entry::File("hello".into(), b"hi\n".to_vec(), 0o644)]);
    let mut files: Vec<(String, Vec<u8>)> = vec![("l/layer.tar".into(), l.clone())];
    let mut manifest = Vec::new();
    for (i, c) in configs.iter().enumerate() {
        let mut c = c.clone();
        if c.get("rootfs").is_some() {
            c["rootfs"]["diff_ids"]
                .as_array_mut()
                .expect("ids")
                .insert(0, json!(format!("sha256:{}", sha(&l))));
        }
        let bytes = serde_json::to_vec(&c).expect("json");
        let name = format!("{}.json", sha(&bytes));
        let layers: Vec<&str> = if c.get("rootfs").is_some() {
            vec!["l/layer.tar"; c["rootfs"]["diff_ids"].as_array().expect("ids").len()]
        } else {
            vec![]
        };
        manifest.push(json!({"Config": name, "RepoTags": [format!("app:{i}")], "Layers": layers}));
        files.push((name, bytes));
    }
    files.push((
        "manifest.json".into(),
        serde_json::to_vec(&manifest).expect("json"),
    ));
    let mut b = ::tar::Builder::new(Vec::new());
    for (name, data) in &files {
        let mut h = ::tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, &data[..]).expect("append");
    }
    std::fs::write(path, b.into_inner().expect("tar")).expect("write");
}

#[test]
fn test_artifacts_docker_archive_config_error_names_entry_and_field() {
    let Some(env) = root_env() else {
        return;
    };
    let bad = json!({"architecture": arch(), "os": "linux",
        "config": {"Env": "FOO=1"},
        "rootfs": {"type": "layers", "diff_ids": []}});
    let archive = env.path("bad.tar");
    docker_archive(&archive, std::slice::from_ref(&bad));
    let err = stderr(&env.run(&["image", "import", archive.to_str().expect("utf8")]));
    let mut with_layer = bad;
    with_layer["rootfs"]["diff_ids"] = json!([format!(
        "sha256:{}",
        sha(&layer(&[Entry::File(
            "hello".into(),
            b"hi\n".to_vec(),
            0o644
        )]))
    )]);
    let entry = format!(
        "{}.json",
        sha(&serde_json::to_vec(&with_layer).expect("json"))
    );
    assert!(
        err.contains(&entry) && err.contains("config.Env: invalid type"),
        "names the archive entry {entry} and the field: {err}"
    );
}

#[test]
fn test_artifacts_docker_archive_skips_an_entry_whose_config_is_not_an_image() {
    let Some(env) = root_env() else {
        return;
    };
    let good = json!({"architecture": arch(), "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []}});
    let archive = env.path("two.tar");
    docker_archive(&archive, &[good, json!({})]);
    let out = env.run(&["image", "import", archive.to_str().expect("utf8")]);
    let err = stderr(&out);
    assert!(out.status.success(), "the image imports: {err}");
    assert!(
        err.contains("warning: skipped manifest.json entry 1") && err.contains("app:1"),
        "names the skipped entry: {err}"
    );
}

/// A layout of three images: `app:a`, `app:b` and `tools:a`; their
/// manifest digests.
fn three_images(env: &Env) -> (String, Vec<String>) {
    let mut l = Layout::new(env.path("layout"));
    let digests = ["app:a", "app:b", "tools:a"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            l.image(name, |cfg| {
                cfg["config"]["Env"] = json!([format!("N={i}")]);
            })
        })
        .collect();
    (l.finish().to_string(), digests)
}

#[test]
fn test_artifacts_select_imports_one_image_through_the_library() {
    let Some(env) = root_env() else {
        return;
    };
    let (path, digests) = three_images(&env);
    let store = imagestore::Store::open(env.root()).expect("store");
    let import = |select: &str| {
        let opts = imagestore::ImportOptions {
            select: Some(select.to_string()),
            ..Default::default()
        };
        store.import(&imagestore::Input::Path(PathBuf::from(&path)), &opts)
    };
    let r = import("app:b").expect("by reference");
    assert_eq!(r.images.len(), 1);
    assert_eq!(r.images[0].manifest.to_string(), digests[1]);
    let r = import(&digests[2]).expect("by manifest digest");
    assert_eq!(r.images[0].manifest.to_string(), digests[2]);
    let id = r.images[0].id.clone();
    let r = import(&id.hex()[..12]).expect("by id prefix");
    assert_eq!(r.images[0].id, id);
    let e = import("a")
        .expect_err("the tag `a` names two images")
        .to_string();
    assert!(e.contains("matches several images"), "{e}");
    let e = import("nope:1").expect_err("no such image").to_string();
    assert!(
        e.contains("\"nope:1\"") && digests.iter().all(|d| e.contains(d.as_str())),
        "names the selector and lists what the layout holds: {e}"
    );
    let ls = env.json(&["image", "ls"]);
    assert_eq!(
        ls.as_array().expect("rows").len(),
        2,
        "only what was selected: {ls}"
    );
}

#[test]
fn test_artifacts_select_flag_of_image_import() {
    let Some(env) = root_env() else {
        return;
    };
    let (path, digests) = three_images(&env);
    let r = env.json(&["image", "import", "--select", "tools:a", &path]);
    let images = r["images"].as_array().expect("images");
    assert_eq!(images.len(), 1, "{r}");
    assert_eq!(images[0]["manifest"], digests[2].as_str());
    let out = env.run(&["image", "import", "--select", "nope", &path]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("\"nope\"") && err.contains("app:a") && err.contains("tools:a"),
        "{err}"
    );
}
