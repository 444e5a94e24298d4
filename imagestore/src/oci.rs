//! OCI image layouts (directories, `oci-archive` tars, and the layout inside
//! Docker 25+ archives): `index.json`, possibly nested indexes and Docker
//! manifest lists, down to image manifests.
//!
//! Platform rule, as `docker load` applies it: an index whose entries carry
//! platforms yields the wanted platform (`--platform`, else the host's); if
//! nothing was asked for and it holds exactly one image, that one is taken
//! with a warning. Attestations, artifacts and unknown media types are skipped.

use std::collections::HashSet;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use crate::blobs::Blobs;
use crate::digest::Digest;
use crate::docker::{self, DockerManifest};
use crate::error::{Error, Result};
use crate::format::Format;
use crate::images::normalize_reference;
use crate::plan::{
    chain_ids, classify_config, compute_diff_id, config_platform, is_layer_media_type, parse_json,
    ConfigKind, ImagePlan, LayerPlan, Plan,
};
use crate::platform::Platform;
use crate::source::Source;

const MAX_DEPTH: usize = 8;
const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
const CONFIG_TYPES: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// Plan an OCI layout ([`Format::Oci`]), or the layout of a Docker 25+
/// archive ([`Format::DockerOciLayout`], with its `manifest.json`, whose
/// RepoTags name the images). Falls back to `manifest.json` when `index.json`
/// lists nothing.
pub(crate) fn plan(
    source: &Source,
    format: Format,
    docker_manifest: Option<&DockerManifest>,
    wanted: Option<&Platform>,
) -> Result<Plan> {
    let data = source.read_small("index.json", "OCI image index")?;
    let value: serde_json::Value = parse_json(&data, "index.json")?;
    let listed = value
        .get("manifests")
        .and_then(|m| m.as_array())
        .map(|m| !m.is_empty());
    if listed != Some(true) {
        if let Some(m) = docker_manifest {
            return docker::plan(source, m, wanted, format);
        }
        let detail = match value.get("manifests") {
            None => "index.json has no \"manifests\"".to_string(),
            Some(m) if m.is_null() => "index.json \"manifests\" is null".to_string(),
            Some(_) => "index.json lists no manifests".to_string(),
        };
        return Err(Error::NoImage {
            input: source.input.clone(),
            detail,
        });
    }
    let index: ImageIndex = parse_json(&data, "index.json")?;
    let mut walk = Walk::new(source, wanted, format, LAYOUT_BUDGET, false);
    let extra_tags = match docker_manifest {
        Some(m) => m.repo_tags()?,
        None => Vec::new(),
    };
    walk.index(&index, "index.json", None, 0)?;
    for img in &mut walk.plan.images {
        for (cfg, r) in &extra_tags {
            if cfg == &img.config_digest && !img.refs.contains(r) {
                img.refs.push(r.clone());
            }
        }
    }
    walk.finish("the layout holds")
}

/// Plan what a registry serves for one reference: `top` describes the index
/// or manifest the reference names, `refs` the names it gets. The same walk
/// as a layout's: the platform rule, attestations and artifacts skipped.
pub(crate) fn plan_pulled(
    source: &dyn Blobs,
    top: &Descriptor,
    refs: Vec<String>,
    wanted: Option<&Platform>,
) -> Result<Plan> {
    let mut walk = Walk::new(source, wanted, Format::Registry, PULL_BUDGET, true);
    walk.descriptor(top, source.input(), refs, 0)?;
    walk.finish("it names")
}

/// References named by a top-level descriptor's annotations.
fn descriptor_refs(d: &Descriptor, input: &str) -> Vec<String> {
    let Some(ann) = d.annotations() else {
        return Vec::new();
    };
    if let Some(full) = ann.get("io.containerd.image.name") {
        if let Ok(r) = normalize_reference(full) {
            return vec![r];
        }
    }
    let Some(name) = ann.get("org.opencontainers.image.ref.name") else {
        return Vec::new();
    };
    // A bare tag ("latest", "0.0.1") names the layout's image: use the
    // layout's own name as the repository.
    let r = if name.contains('/') || name.contains(':') {
        name.clone()
    } else {
        format!("{}:{name}", layout_name(input))
    };
    normalize_reference(&r).map(|r| vec![r]).unwrap_or_default()
}

/// A repository name from the input's base name (`trivy-test_image_tag.oci` → `trivy-test_image_tag`).
fn layout_name(input: &str) -> String {
    let base = input
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("oci");
    let base = base.split('.').next().unwrap_or(base);
    let clean: String = base
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean.is_empty() || input == "<stdin>" {
        "oci".into()
    } else {
        clean
    }
}

struct Walk<'a> {
    source: &'a dyn Blobs,
    wanted: Option<&'a Platform>,
    plan: Plan,
    seen: HashSet<Digest>,
    skipped: Vec<String>,
    format: Format,
    /// Descriptors the walk may still visit: a hostile index cannot make it
    /// fetch without end.
    budget: usize,
    /// A pull: one image is wanted, and entries without a platform beside
    /// the chosen one are skipped, not planned.
    single: bool,
}

/// Descriptors an import's walk may visit.
const LAYOUT_BUDGET: usize = 100_000;
/// Descriptors a pull's walk may visit (each may be a request).
const PULL_BUDGET: usize = 64;

impl<'a> Walk<'a> {
    /// A walk of `source` for `wanted`, visiting at most `budget`
    /// descriptors; `single` for a pull.
    fn new(
        source: &'a dyn Blobs,
        wanted: Option<&'a Platform>,
        format: Format,
        budget: usize,
        single: bool,
    ) -> Self {
        Walk {
            source,
            wanted,
            plan: Plan::default(),
            seen: HashSet::new(),
            skipped: Vec::new(),
            format,
            budget,
            single,
        }
    }

    /// The plan, with what was skipped as warnings; an error when it holds
    /// no image (`holds` says where: "the layout holds").
    fn finish(self, holds: &str) -> Result<Plan> {
        if self.plan.images.is_empty() {
            let detail = if self.skipped.is_empty() {
                "no image manifests found".to_string()
            } else {
                format!(
                    "{holds} only non-image content: {}",
                    self.skipped.join("; ")
                )
            };
            return Err(Error::NoImage {
                input: self.source.input().to_string(),
                detail,
            });
        }
        let mut plan = self.plan;
        for s in self.skipped {
            plan.warnings.push(format!("skipped {s}"));
        }
        Ok(plan)
    }

    /// Walk one entry of the index `at` names (`index.json manifests[2]`).
    fn descriptor(
        &mut self,
        d: &Descriptor,
        at: &str,
        refs: Vec<String>,
        depth: usize,
    ) -> Result<()> {
        self.budget = self.budget.checked_sub(1).ok_or_else(|| Error::NoImage {
            input: self.source.input().to_string(),
            detail: "it lists more manifests and indexes than a walk visits".into(),
        })?;
        let mt = d.media_type().to_string();
        let digest = descriptor_digest(d, at)?;
        if depth > MAX_DEPTH {
            return Err(Error::Inconsistent {
                image: digest.to_string(),
                detail: format!("indexes nested deeper than {MAX_DEPTH}"),
            });
        }
        let name = label(d, &digest, &refs);
        if is_attestation(d) {
            let of = annotation(d, "vnd.docker.reference.digest")
                .map(|s| format!(" for {s}"))
                .unwrap_or_default();
            self.skipped
                .push(format!("{name}: attestation manifest{of}"));
            return Ok(());
        }
        if INDEX_TYPES.contains(&mt.as_str()) {
            let data = self
                .source
                .manifest(&digest, Some(d.size()), "image index")?;
            let what = format!("image index {digest}");
            let index: ImageIndex = parse_json(&data, &what)?;
            return self.index(&index, &what, Some(refs), depth + 1);
        }
        if MANIFEST_TYPES.contains(&mt.as_str()) {
            if let Some(t) = d.artifact_type() {
                if self.seen.insert(digest.clone()) {
                    self.skipped
                        .push(format!("{name}: artifact manifest (artifact type {t})"));
                }
                return Ok(());
            }
            return self.manifest(d, &digest, &name, refs);
        }
        self.skipped
            .push(format!("{name}: media type {mt} is not an image"));
        Ok(())
    }

    /// Walk an index. `inherited` names the images below a nested index;
    /// at the top level each descriptor's own annotations name it.
    fn index(
        &mut self,
        index: &ImageIndex,
        name: &str,
        inherited: Option<Vec<String>>,
        depth: usize,
    ) -> Result<()> {
        let input = self.source.input().to_string();
        let refs_of = |d: &Descriptor| {
            inherited
                .clone()
                .unwrap_or_else(|| descriptor_refs(d, &input))
        };
        let kids: Vec<&Descriptor> = index.manifests().iter().collect();
        let at = |d: &Descriptor| {
            let i = kids.iter().position(|k| std::ptr::eq(*k, d)).unwrap_or(0);
            format!("{name} manifests[{i}]")
        };
        let with_platform: Vec<&Descriptor> = kids
            .iter()
            .copied()
            .filter(|d| d.platform().is_some() && !is_attestation(d))
            .collect();
        if with_platform.is_empty() {
            for &d in &kids {
                self.descriptor(d, &at(d), refs_of(d), depth)?;
            }
            return Ok(());
        }
        let want = self.wanted.cloned().unwrap_or_else(Platform::host);
        let mut chosen: Option<&Descriptor> = with_platform
            .iter()
            .copied()
            .find(|d| descriptor_platform(d).is_some_and(|p| want.matches(&p)));
        if chosen.is_none() && self.wanted.is_none() && with_platform.len() == 1 {
            // Not the host's, but the only one: taken (import warns).
            chosen = Some(with_platform[0]);
        }
        let Some(chosen) = chosen else {
            let available: Vec<String> = with_platform
                .iter()
                .filter_map(|d| descriptor_platform(d))
                .map(|p| p.to_string())
                .collect();
            return Err(Error::PlatformNotFound {
                wanted: want.to_string(),
                available: available.join(", "),
            });
        };
        self.descriptor(chosen, &at(chosen), refs_of(chosen), depth)?;
        // Entries without a platform in a platform index are other images
        // (a pull wants the one chosen).
        for &d in kids.iter().filter(|d| d.platform().is_none()) {
            if self.single {
                self.skipped
                    .push(format!("{}: no platform, beside the chosen one", at(d)));
                continue;
            }
            self.descriptor(d, &at(d), refs_of(d), depth)?;
        }
        Ok(())
    }

    /// Plan the image manifest `d` (`name` labels it in warnings), or skip
    /// it with a warning when it is an artifact rather than an image.
    fn manifest(
        &mut self,
        d: &Descriptor,
        digest: &Digest,
        name: &str,
        refs: Vec<String>,
    ) -> Result<()> {
        if !self.seen.insert(digest.clone()) {
            // Shared by several indexes: import once, keep every name.
            if let Some(img) = self
                .plan
                .images
                .iter_mut()
                .find(|i| i.manifest.as_ref().map(|m| &m.0) == Some(digest))
            {
                for r in refs {
                    if !img.refs.contains(&r) {
                        img.refs.push(r);
                    }
                }
            }
            return Ok(());
        }
        let what = match descriptor_platform(d) {
            Some(p) => format!("image manifest for {p}"),
            None => "image manifest".to_string(),
        };
        let data = self.source.manifest(digest, Some(d.size()), &what)?;
        let manifest_name = format!("image manifest {digest}");
        let manifest: ImageManifest = parse_json(&data, &manifest_name)?;
        let cfg_mt = manifest.config().media_type().to_string();
        let image_config = CONFIG_TYPES.contains(&cfg_mt.as_str());
        let is_tar = |l: &Descriptor| is_layer_media_type(l.media_type().as_ref());
        let all_tar = !manifest.layers().is_empty() && manifest.layers().iter().all(is_tar);
        let skip = if let Some(t) = manifest.artifact_type() {
            Some(format!("artifact type {t}"))
        } else if !image_config && !all_tar {
            Some(format!("config media type {cfg_mt}"))
        } else if !manifest.layers().iter().any(is_tar) && !manifest.layers().is_empty() {
            let mut types: Vec<String> = manifest
                .layers()
                .iter()
                .map(|l| l.media_type().to_string())
                .collect();
            types.dedup();
            Some(format!("layers of media type {}", types.join(", ")))
        } else {
            None
        };
        if let Some(why) = skip {
            self.skipped.push(format!("{name}: artifact ({why})"));
            return Ok(());
        }
        let cfg_digest = field_digest(
            manifest.config().digest().as_ref(),
            &manifest_name,
            "config.digest",
        )?;
        let what = format!("image config {cfg_digest} of manifest {digest}");
        let config_bytes =
            self.source
                .config(&cfg_digest, Some(manifest.config().size()), &what)?;
        let parsed = classify_config(&config_bytes, &what);
        let (platform, diff_ids) = match parsed {
            Ok(ConfigKind::Image(cfg, diff_ids)) => (config_platform(&cfg), diff_ids),
            Ok(ConfigKind::NotImage(why)) if image_config => {
                self.skipped.push(format!(
                    "{name}: artifact (config {cfg_digest} of media type {cfg_mt} {why})"
                ));
                return Ok(());
            }
            Err(e) if image_config => return Err(e),
            // A config that claims to be an image config (it has
            // architecture, os and rootfs) but does not parse as one, under
            // another media type: the runtime could not read it, so this is
            // no image (found by the import_layout fuzzer: it was imported,
            // and `verify` and `run` then rejected it).
            Err(e) => {
                self.skipped.push(format!(
                    "{name}: artifact (config {cfg_digest} of media type {cfg_mt} is not an \
                     image config: {e})"
                ));
                return Ok(());
            }
            Ok(ConfigKind::NotImage(_)) => {
                // Another kind of config (Helm's, say) over tar layers: an
                // image all the same, as go-containerregistry reads it.
                // Learn the diff_ids from the layers themselves.
                self.plan.warnings.push(format!(
                    "manifest {digest}: config media type {cfg_mt} is not an image config; \
                     layers imported, diff_ids computed from them"
                ));
                let mut ids = Vec::new();
                for (i, l) in manifest.layers().iter().enumerate() {
                    let ld = field_digest(
                        l.digest().as_ref(),
                        &manifest_name,
                        &format!("layers[{i}].digest"),
                    )?;
                    ids.push(compute_diff_id(
                        self.source,
                        &format!("blobs/sha256/{}", ld.hex()),
                        &ld,
                    )?);
                }
                let platform = descriptor_platform(d)
                    .unwrap_or_else(|| Platform::new("unknown", "unknown", None));
                (platform, ids)
            }
        };
        if diff_ids.len() != manifest.layers().len() {
            return Err(Error::Inconsistent {
                image: digest.to_string(),
                detail: format!(
                    "manifest lists {} layers but its config has {} diff_ids",
                    manifest.layers().len(),
                    diff_ids.len()
                ),
            });
        }
        if let Some(w) = self.wanted {
            if d.platform().is_none() && !w.matches(&platform) {
                self.skipped
                    .push(format!("{name}: platform {platform}, not {w}"));
                return Ok(());
            }
        }
        let chains = chain_ids(&diff_ids);
        let mut layers = Vec::new();
        let parents = std::iter::once(None).chain(chains.iter().cloned().map(Some));
        for (i, (((l, diff_id), chain_id), parent)) in manifest
            .layers()
            .iter()
            .zip(diff_ids)
            .zip(chains.clone())
            .zip(parents)
            .enumerate()
        {
            let lmt = l.media_type().to_string();
            let ld = field_digest(
                l.digest().as_ref(),
                &manifest_name,
                &format!("layers[{i}].digest"),
            )?;
            if !is_layer_media_type(&lmt) {
                return Err(Error::UnsupportedMediaType {
                    digest: ld.to_string(),
                    media_type: lmt,
                });
            }
            layers.push(LayerPlan {
                entry: format!("blobs/sha256/{}", ld.hex()),
                declared: Some(ld),
                declared_size: Some(l.size()),
                media_type: lmt,
                diff_id,
                chain_id,
                parent,
            });
        }
        if self.single && !self.plan.images.is_empty() {
            return Err(Error::NoImage {
                input: self.source.input().to_string(),
                detail: "it names several images with no platform to choose between them".into(),
            });
        }
        self.plan.images.push(ImagePlan {
            manifest: Some((digest.clone(), data)),
            config_digest: cfg_digest,
            config_bytes,
            platform,
            layers,
            refs,
            format: self.format,
        });
        Ok(())
    }
}

/// A descriptor's annotation `key`.
fn annotation<'a>(d: &'a Descriptor, key: &str) -> Option<&'a String> {
    d.annotations().as_ref().and_then(|a| a.get(key))
}

/// How warnings name an entry: its digest, then the references it carries
/// (or its raw ref name annotation).
fn label(d: &Descriptor, digest: &Digest, refs: &[String]) -> String {
    let names: Vec<&str> = if refs.is_empty() {
        [
            "io.containerd.image.name",
            "org.opencontainers.image.ref.name",
        ]
        .into_iter()
        .filter_map(|k| annotation(d, k).map(String::as_str))
        .collect()
    } else {
        refs.iter().map(String::as_str).collect()
    };
    if names.is_empty() {
        digest.to_string()
    } else {
        format!("{digest} ({})", names.join(", "))
    }
}

/// The digest a descriptor at `at` declares.
fn descriptor_digest(d: &Descriptor, at: &str) -> Result<Digest> {
    field_digest(d.digest().as_ref(), at, "digest")
}

/// Parse a digest found in document `what` at JSON path `field`.
fn field_digest(s: &str, what: &str, field: &str) -> Result<Digest> {
    Digest::parse(s).map_err(|e| Error::BadJson {
        what: what.to_string(),
        detail: format!("{field}: {e}"),
    })
}

fn is_attestation(d: &Descriptor) -> bool {
    let ann = d.annotations().as_ref();
    if ann
        .and_then(|a| a.get("vnd.docker.reference.type"))
        .map(|v| v == "attestation-manifest")
        == Some(true)
    {
        return true;
    }
    d.platform()
        .as_ref()
        .map(|p| p.os().to_string() == "unknown" && p.architecture().to_string() == "unknown")
        .unwrap_or(false)
}

fn descriptor_platform(d: &Descriptor) -> Option<Platform> {
    d.platform().as_ref().map(|p| {
        Platform::new(
            &p.os().to_string(),
            &p.architecture().to_string(),
            p.variant().as_deref(),
        )
    })
}

/// OCI layouts with artifacts next to images, parse errors that name the
/// blob and the field, and the import selector. Images here have no layers,
/// so no privilege is needed.
#[cfg(test)]
mod tests {
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
            let opts = ImportOptions {
                select: select.map(str::to_string),
                ..ImportOptions::default()
            };
            self.store.import_opened(opened, &opts)
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
    fn test_oci_tar_layers_under_a_config_that_is_no_image_config_are_skipped() {
        // Found by the import_layout fuzzer: such an entry was imported with
        // diff_ids computed from its layers, and its config then failed
        // `verify` and `run` ("rootfs: missing field `type`").
        let f = Fixture::new();
        let mut l = f.layout();
        l.manifest(
            &image_config(&host_arch(), 1),
            CONFIG,
            vec![],
            ref_name("app:1"),
        );
        let (ld, ls) = l.blob(&[0u8; 1024]);
        let layers = vec![
            json!({"mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": ld.to_string(), "size": ls}),
        ];
        let cfg = format!(
            r#"{{"architecture":"{}","os":"linux","rootfs":{{"difftype":"layers","diff_ids":[]}}}}"#,
            host_arch()
        );
        let odd = l.manifest(
            cfg.as_bytes(),
            "application/vnd.example.config+json",
            layers,
            ref_name("odd:1"),
        );
        let path = l.finish();
        let report = f.import(&path, None).expect("the image imports");
        assert_eq!(report.images.len(), 1, "{report:?}");
        let w = report.warnings.join("\n");
        assert!(
            w.contains(&format!("skipped {odd}")) && w.contains("odd:1"),
            "{w}"
        );
        assert!(w.contains("rootfs"), "the reason names the field: {w}");
        let v = f.store.verify(false).expect("verify");
        assert!(v.problems.is_empty() && v.leftovers.is_empty(), "{v:?}");
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
}
