//! OCI layouts with artifacts next to images, parse errors that name the
//! blob and the field, and the import selector. Images here have no layers,
//! so no privilege is needed.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::digest::Digest;
use crate::import::ImportOptions;
use crate::platform::Platform;
use crate::source::{Input, Opened};
use crate::store::Store;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// A layout directory being written: blobs, then `index.json`.
struct Layout {
    dir: PathBuf,
    entries: Vec<Value>,
}

impl Layout {
    fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("mkdir");
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("oci-layout");
        Layout {
            dir: dir.to_path_buf(),
            entries: Vec::new(),
        }
    }

    /// Store a blob; its descriptor fields.
    fn blob(&self, data: &[u8]) -> (Digest, usize) {
        let d = Digest::of_bytes(data);
        std::fs::write(self.dir.join("blobs/sha256").join(d.hex()), data).expect("blob");
        (d, data.len())
    }

    /// A manifest over `config` (of media type `config_type`) and `layers`
    /// descriptors, listed in the index with `annotations`; its digest.
    fn manifest(
        &mut self,
        config: &[u8],
        config_type: &str,
        layers: Vec<Value>,
        annotations: Value,
    ) -> Digest {
        let (cd, cs) = self.blob(config);
        let m = json!({
            "schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": config_type, "digest": cd.to_string(), "size": cs},
            "layers": layers,
        });
        self.raw_manifest(&serde_json::to_vec(&m).expect("json"), annotations)
    }

    /// List manifest bytes as they are.
    fn raw_manifest(&mut self, bytes: &[u8], annotations: Value) -> Digest {
        let (d, s) = self.blob(bytes);
        let mut e = json!({"mediaType": MANIFEST, "digest": d.to_string(), "size": s});
        if !annotations.is_null() {
            e["annotations"] = annotations;
        }
        self.entries.push(e);
        d
    }

    fn finish(&self) -> PathBuf {
        let index = json!({"schemaVersion": 2, "manifests": self.entries});
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).expect("json"),
        )
        .expect("index");
        self.dir.clone()
    }
}

/// A layerless image config for `arch` (`n` makes it distinct).
fn image_config(arch: &str, n: u32) -> Vec<u8> {
    format!(
        r#"{{"architecture":"{arch}","os":"linux","config":{{"Env":["N={n}"]}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    )
    .into_bytes()
}

fn host_arch() -> String {
    Platform::host().arch
}

fn ref_name(name: &str) -> Value {
    json!({"org.opencontainers.image.ref.name": name})
}

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path().join("store")).expect("store");
        Fixture { dir, store }
    }

    fn layout(&self) -> Layout {
        Layout::new(&self.dir.path().join("layout"))
    }

    fn import(&self, path: &Path, select: Option<&str>) -> crate::Result<crate::ImportReport> {
        let opened = Opened::open(&Input::Path(path.to_path_buf()))?;
        self.store
            .import_opened_select(opened, &ImportOptions::default(), select)
    }
}

#[test]
fn test_oci_attestation_style_artifact_is_skipped_with_a_warning() {
    let f = Fixture::new();
    let mut l = f.layout();
    l.manifest(
        &image_config(&host_arch(), 1),
        CONFIG,
        vec![],
        ref_name("app:v1"),
    );
    // buildx attestations: the image-config media type, `{}` as config,
    // in-toto layers; here with no annotation marking it as one.
    let (ld, ls) = l.blob(br#"{"_type":"https://in-toto.io/Statement/v0.1"}"#);
    let layers = vec![json!({"mediaType": "application/vnd.in-toto+json",
        "digest": ld.to_string(), "size": ls})];
    let att = l.manifest(b"{}", CONFIG, layers, ref_name("app:att"));
    // And a manifest with no layers whose config lacks rootfs, os, arch.
    let empty = l.manifest(b"{}", CONFIG, vec![], Value::Null);
    let path = l.finish();
    let report = f.import(&path, None).expect("the image imports");
    assert_eq!(report.images.len(), 1, "{report:?}");
    let w = report.warnings.join("\n");
    assert!(
        w.contains(&format!("skipped {att}")) && w.contains("app:att"),
        "the artifact is named by digest and ref name: {w}"
    );
    assert!(w.contains("application/vnd.in-toto+json"), "{w}");
    assert!(w.contains(&format!("skipped {empty}")), "{w}");
    assert!(w.contains("has no architecture, os, rootfs"), "{w}");
}

#[test]
fn test_oci_layout_holding_only_an_artifact_says_so() {
    let f = Fixture::new();
    let mut l = f.layout();
    let att = l.manifest(b"{}", CONFIG, vec![], ref_name("sbom"));
    let path = l.finish();
    let e = f
        .import(&path, None)
        .expect_err("nothing to import")
        .to_string();
    assert!(e.contains("only non-image content"), "{e}");
    assert!(e.contains(&att.to_string()) && e.contains("sbom"), "{e}");
    assert!(e.contains("artifact"), "{e}");
}

#[test]
fn test_oci_config_parse_error_names_blob_and_field() {
    let f = Fixture::new();
    let mut l = f.layout();
    let bad = format!(
        r#"{{"architecture":"{}","os":"linux","rootfs":{{"type":"layers","diff_ids":["sha256:{}",3]}}}}"#,
        host_arch(),
        "a".repeat(64)
    );
    let m = l.manifest(bad.as_bytes(), CONFIG, vec![], Value::Null);
    let path = l.finish();
    let e = f.import(&path, None).expect_err("bad config").to_string();
    let cfg = Digest::of_bytes(bad.as_bytes());
    assert!(e.contains(&format!("image config {cfg}")), "{e}");
    assert!(e.contains(&m.to_string()), "{e}");
    assert!(e.contains("rootfs.diff_ids[1]: invalid type"), "{e}");
    assert!(!e.contains("serde failed"), "{e}");
}

#[test]
fn test_oci_bad_diff_id_digest_names_blob_and_field() {
    let f = Fixture::new();
    let mut l = f.layout();
    let bad = format!(
        r#"{{"architecture":"{}","os":"linux","rootfs":{{"type":"layers","diff_ids":["md5:abc"]}}}}"#,
        host_arch()
    );
    let (ld, ls) = l.blob(b"not read");
    let layers = vec![
        json!({"mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": ld.to_string(), "size": ls}),
    ];
    l.manifest(bad.as_bytes(), CONFIG, layers, Value::Null);
    let path = l.finish();
    let e = f.import(&path, None).expect_err("bad diff_id").to_string();
    let cfg = Digest::of_bytes(bad.as_bytes());
    assert!(e.contains(&cfg.to_string()), "{e}");
    assert!(e.contains("rootfs.diff_ids[0]"), "{e}");
}

#[test]
fn test_oci_manifest_and_index_parse_errors_name_blob_and_field() {
    let f = Fixture::new();
    let mut l = f.layout();
    let (cd, cs) = l.blob(&image_config(&host_arch(), 1));
    let bad = json!({"schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": cd.to_string(), "size": cs},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": cd.to_string(), "size": "big"}]});
    let m = l.raw_manifest(&serde_json::to_vec(&bad).expect("json"), Value::Null);
    let path = l.finish();
    let e = f.import(&path, None).expect_err("bad manifest").to_string();
    assert!(e.contains(&format!("image manifest {m}")), "{e}");
    assert!(e.contains("layers[0].size"), "{e}");

    let index = json!({"schemaVersion": 2, "manifests": [
        {"mediaType": MANIFEST, "digest": m.to_string(), "size": 1},
        {"mediaType": MANIFEST, "size": 2}]});
    std::fs::write(
        path.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("index");
    let e = f.import(&path, None).expect_err("bad index").to_string();
    assert!(e.contains("index.json"), "{e}");
    assert!(e.contains("manifests[1]"), "{e}");
}

#[test]
fn test_oci_select_imports_one_image_by_ref_or_digest() {
    let f = Fixture::new();
    let mut l = f.layout();
    let a_cfg = image_config(&host_arch(), 1);
    let a = l.manifest(&a_cfg, CONFIG, vec![], ref_name("app:a"));
    let b = l.manifest(
        &image_config(&host_arch(), 2),
        CONFIG,
        vec![],
        ref_name("app:b"),
    );
    let path = l.finish();

    let all = f.import(&path, None).expect("both");
    assert_eq!(all.images.len(), 2);

    let r = f.import(&path, Some("app:b")).expect("by ref");
    assert_eq!(r.images.len(), 1);
    assert_eq!(r.images[0].manifest, b);
    let r = f.import(&path, Some("a")).expect("by tag");
    assert_eq!(r.images[0].manifest, a);
    let r = f
        .import(&path, Some(&a.to_string()))
        .expect("by manifest digest");
    assert_eq!(r.images[0].manifest, a);
    let id = Digest::of_bytes(&a_cfg);
    let r = f
        .import(&path, Some(&id.hex()[..12]))
        .expect("by id prefix");
    assert_eq!(r.images[0].id, id);

    let e = f
        .import(&path, Some("app:c"))
        .expect_err("no match")
        .to_string();
    assert!(e.contains("\"app:c\""), "{e}");
    assert!(
        e.contains("app:a") && e.contains("app:b"),
        "lists what it holds: {e}"
    );
    assert!(e.contains(&a.to_string()), "{e}");
    let e = f
        .import(&path, Some("sha256:"))
        .expect_err("empty")
        .to_string();
    assert!(e.contains("\"sha256:\""), "{e}");
}

#[test]
fn test_oci_select_ambiguous_prefix_is_an_error() {
    let f = Fixture::new();
    let mut l = f.layout();
    // Find two configs whose ids share a first hex character.
    let mut cfgs: Vec<Vec<u8>> = Vec::new();
    let mut n = 0;
    while cfgs.len() < 2 {
        let c = image_config(&host_arch(), n);
        let first = Digest::of_bytes(&c).hex()[..1].to_string();
        if cfgs.is_empty() || Digest::of_bytes(&cfgs[0]).hex().starts_with(&first) {
            cfgs.push(c);
        }
        n += 1;
    }
    for (i, c) in cfgs.iter().enumerate() {
        let tag = ["app:first", "app:second"][i];
        l.manifest(c, CONFIG, vec![], ref_name(tag));
    }
    let path = l.finish();
    let prefix = Digest::of_bytes(&cfgs[0]).hex()[..1].to_string();
    let e = f
        .import(&path, Some(&prefix))
        .expect_err("ambiguous")
        .to_string();
    assert!(e.contains("matches several images"), "{e}");
}

#[test]
fn test_oci_foreign_platform_import_warns_naming_both_platforms() {
    let f = Fixture::new();
    let mut l = f.layout();
    let other = if host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    l.manifest(&image_config(other, 1), CONFIG, vec![], ref_name("app:x"));
    l.manifest(
        &image_config(&host_arch(), 2),
        CONFIG,
        vec![],
        ref_name("app:y"),
    );
    let path = l.finish();
    let report = f.import(&path, None).expect("imports");
    let w: Vec<&String> = report
        .warnings
        .iter()
        .filter(|w| w.contains("does not match"))
        .collect();
    assert_eq!(w.len(), 1, "only the foreign image: {:?}", report.warnings);
    assert!(w[0].contains(&format!("linux/{other}")), "{}", w[0]);
    assert!(w[0].contains(&Platform::host().to_string()), "{}", w[0]);
    assert!(w[0].contains("app:x"), "{}", w[0]);
}
