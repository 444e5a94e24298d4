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

use crate::digest::Digest;
use crate::docker::{self, DockerManifest};
use crate::error::{Error, Result};
use crate::format::Format;
use crate::images::normalize_reference;
use crate::plan::{
    chain_ids, compute_diff_id, config_platform, is_layer_media_type, parse_config, read_blob,
    ImagePlan, LayerPlan, Plan,
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
    let value: serde_json::Value = serde_json::from_slice(&data).map_err(|e| Error::BadJson {
        what: "index.json".into(),
        detail: e.to_string(),
    })?;
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
    let index: ImageIndex = ImageIndex::from_reader(&data[..]).map_err(|e| Error::BadJson {
        what: "index.json".into(),
        detail: e.to_string(),
    })?;
    let mut walk = Walk {
        source,
        wanted,
        plan: Plan::default(),
        seen: HashSet::new(),
        skipped: Vec::new(),
        single_fallback: false,
        format,
    };
    let extra_tags = match docker_manifest {
        Some(m) => m.repo_tags()?,
        None => Vec::new(),
    };
    walk.index(&index, None, 0)?;
    for img in &mut walk.plan.images {
        for (cfg, r) in &extra_tags {
            if cfg == &img.config_digest && !img.refs.contains(r) {
                img.refs.push(r.clone());
            }
        }
    }
    if walk.plan.images.is_empty() {
        let detail = if walk.skipped.is_empty() {
            "no image manifests found".to_string()
        } else {
            format!("only non-image content: {}", walk.skipped.join("; "))
        };
        return Err(Error::NoImage {
            input: source.input.clone(),
            detail,
        });
    }
    let mut plan = walk.plan;
    for s in walk.skipped {
        plan.warnings.push(format!("skipped {s}"));
    }
    Ok(plan)
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
    source: &'a Source,
    wanted: Option<&'a Platform>,
    plan: Plan,
    seen: HashSet<Digest>,
    skipped: Vec<String>,
    single_fallback: bool,
    format: Format,
}

impl Walk<'_> {
    fn descriptor(
        &mut self,
        d: &Descriptor,
        refs: Vec<String>,
        depth: usize,
        siblings: usize,
    ) -> Result<()> {
        let mt = d.media_type().to_string();
        let digest = Digest::parse(d.digest().as_ref())?;
        if depth > MAX_DEPTH {
            return Err(Error::Inconsistent {
                image: digest.to_string(),
                detail: format!("indexes nested deeper than {MAX_DEPTH}"),
            });
        }
        if is_attestation(d) {
            self.skipped.push(format!("{digest}: attestation manifest"));
            return Ok(());
        }
        if INDEX_TYPES.contains(&mt.as_str()) {
            let data = read_blob(self.source, &digest, Some(d.size()), "image index")?;
            let index = ImageIndex::from_reader(&data[..]).map_err(|e| Error::BadJson {
                what: format!("image index {digest}"),
                detail: e.to_string(),
            })?;
            return self.index(&index, Some(refs), depth + 1);
        }
        if MANIFEST_TYPES.contains(&mt.as_str()) {
            if d.artifact_type().is_some() {
                if self.seen.insert(digest.clone()) {
                    self.skipped.push(format!("{digest}: artifact manifest"));
                }
                return Ok(());
            }
            return self.manifest(d, &digest, refs, siblings);
        }
        self.skipped
            .push(format!("{digest}: media type {mt} is not an image"));
        Ok(())
    }

    /// Walk an index. `inherited` names the images below a nested index;
    /// at the top level each descriptor's own annotations name it.
    fn index(
        &mut self,
        index: &ImageIndex,
        inherited: Option<Vec<String>>,
        depth: usize,
    ) -> Result<()> {
        let input = self.source.input.clone();
        let refs_of = |d: &Descriptor| {
            inherited
                .clone()
                .unwrap_or_else(|| descriptor_refs(d, &input))
        };
        let kids: Vec<&Descriptor> = index.manifests().iter().collect();
        let with_platform: Vec<&Descriptor> = kids
            .iter()
            .copied()
            .filter(|d| d.platform().is_some() && !is_attestation(d))
            .collect();
        if with_platform.is_empty() {
            for d in kids {
                self.descriptor(d, refs_of(d), depth, index.manifests().len())?;
            }
            return Ok(());
        }
        let want = self.wanted.cloned().unwrap_or_else(Platform::host);
        let mut chosen: Option<&Descriptor> = with_platform
            .iter()
            .copied()
            .find(|d| descriptor_platform(d).is_some_and(|p| want.matches(&p)));
        if chosen.is_none() && self.wanted.is_none() && with_platform.len() == 1 {
            chosen = Some(with_platform[0]);
            self.single_fallback = true;
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
        self.descriptor(chosen, refs_of(chosen), depth, 1)?;
        // Entries without a platform in a platform index are other images.
        for d in kids.iter().filter(|d| d.platform().is_none()) {
            self.descriptor(d, refs_of(d), depth, index.manifests().len())?;
        }
        Ok(())
    }

    fn manifest(
        &mut self,
        d: &Descriptor,
        digest: &Digest,
        refs: Vec<String>,
        siblings: usize,
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
        let data = read_blob(self.source, digest, Some(d.size()), &what)?;
        let manifest = ImageManifest::from_reader(&data[..]).map_err(|e| Error::BadJson {
            what: format!("image manifest {digest}"),
            detail: e.to_string(),
        })?;
        let cfg_mt = manifest.config().media_type().to_string();
        let image_config = CONFIG_TYPES.contains(&cfg_mt.as_str());
        let tar_layers = !manifest.layers().is_empty()
            && manifest
                .layers()
                .iter()
                .all(|l| is_layer_media_type(l.media_type().as_ref()));
        if manifest.artifact_type().is_some() || (!image_config && !tar_layers) {
            self.skipped
                .push(format!("{digest}: artifact (config media type {cfg_mt})"));
            return Ok(());
        }
        let cfg_digest = Digest::parse(manifest.config().digest().as_ref())?;
        let what = format!("image config of manifest {digest}");
        let config_bytes = read_blob(
            self.source,
            &cfg_digest,
            Some(manifest.config().size()),
            &what,
        )?;
        let parsed = parse_config(&config_bytes, &format!("{what} ({cfg_digest})"));
        let (platform, diff_ids) = match parsed {
            Ok((cfg, diff_ids)) => (config_platform(&cfg), diff_ids),
            Err(e) if image_config => return Err(e),
            Err(_) => {
                // Not an image config, but tar layers: an image all the
                // same. Learn the diff_ids from the layers themselves.
                self.plan.warnings.push(format!(
                    "manifest {digest}: config media type {cfg_mt} is not an image config; \
                     layers imported, diff_ids computed from them"
                ));
                let mut ids = Vec::new();
                for l in manifest.layers() {
                    let ld = Digest::parse(l.digest().as_ref())?;
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
                    .push(format!("{digest}: platform {platform}, not {w}"));
                return Ok(());
            }
        } else if platform != Platform::host() && (siblings == 1 || self.single_fallback) {
            self.plan.warnings.push(format!(
                "image {cfg_digest} is for {platform}, not this host's {}; it is imported but will not run here",
                Platform::host()
            ));
        }
        let chains = chain_ids(&diff_ids);
        let mut layers = Vec::new();
        let parents = std::iter::once(None).chain(chains.iter().cloned().map(Some));
        for (((l, diff_id), chain_id), parent) in manifest
            .layers()
            .iter()
            .zip(diff_ids)
            .zip(chains.clone())
            .zip(parents)
        {
            let lmt = l.media_type().to_string();
            let ld = Digest::parse(l.digest().as_ref())?;
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
