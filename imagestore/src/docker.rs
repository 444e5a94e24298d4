//! `docker save` archives: `manifest.json` plus the entries it names.
//!
//! Legacy (before Docker 25): `<id>/layer.tar` layers (uncompressed, or gzip
//! as some tools write them, sometimes symlinked to another image's layer)
//! and a `<hex>.json` config. Docker 25+ writes an OCI layout beside the same
//! `manifest.json`, whose entries then point into `blobs/sha256/`.

use serde::Deserialize;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::images::normalize_reference;
use crate::plan::{
    chain_ids, check_bytes, config_platform, parse_config, ImagePlan, LayerPlan, Plan,
};
use crate::platform::Platform;
use crate::source::Source;

#[derive(Debug, Deserialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// The digest an entry name declares, when it has the form
/// `blobs/sha256/<hex>`, `<hex>.json`, `sha256:<hex>` or `<hex>/layer.tar`-free.
fn declared_digest(name: &str) -> Option<Digest> {
    let base = name.strip_prefix("blobs/sha256/").unwrap_or(name);
    let base = base.strip_suffix(".json").unwrap_or(base);
    let base = base.strip_prefix("sha256:").unwrap_or(base);
    Digest::from_hex(base).ok()
}

/// Read `manifest.json` and plan every image in it.
pub(crate) fn plan(
    source: &Source,
    wanted: Option<&Platform>,
    format: &'static str,
) -> Result<Plan> {
    let data = source.read_small("manifest.json", "docker save manifest")?;
    let value: serde_json::Value = serde_json::from_slice(&data).map_err(|e| Error::BadJson {
        what: "manifest.json".into(),
        detail: e.to_string(),
    })?;
    if !value.is_array() {
        return Err(Error::BadJson {
            what: "manifest.json".into(),
            detail: format!("expected a list of images, found {}", json_kind(&value)),
        });
    }
    let entries: Vec<ManifestEntry> =
        serde_json::from_value(value).map_err(|e| Error::BadJson {
            what: "manifest.json".into(),
            detail: e.to_string(),
        })?;
    if entries.is_empty() {
        return Err(Error::NoImage {
            input: source.input.clone(),
            detail: "manifest.json lists no images".into(),
        });
    }
    let mut plan = Plan::default();
    let mut available = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let img = plan_entry(source, e, i, format)?;
        if let Some(w) = wanted {
            if !w.matches(&img.platform) {
                available.push(img.platform.to_string());
                continue;
            }
        }
        plan.images.push(img);
    }
    if plan.images.is_empty() {
        return Err(Error::PlatformNotFound {
            wanted: wanted.map(|w| w.to_string()).unwrap_or_default(),
            available: available.join(", "),
        });
    }
    Ok(plan)
}

fn plan_entry(
    source: &Source,
    e: &ManifestEntry,
    i: usize,
    format: &'static str,
) -> Result<ImagePlan> {
    let what = format!("image config {} (manifest.json entry {i})", e.config);
    let config_bytes = source.read_small(&e.config, &what)?;
    let config_digest = Digest::of_bytes(&config_bytes);
    if let Some(declared) = declared_digest(&e.config) {
        check_bytes(
            &config_bytes,
            &declared,
            None,
            &format!("{declared} (config entry {})", e.config),
        )?;
    }
    let (cfg, diff_ids) = parse_config(&config_bytes, &what)?;
    if diff_ids.len() != e.layers.len() {
        return Err(Error::Inconsistent {
            image: config_digest.to_string(),
            detail: format!(
                "manifest.json lists {} layers but the config has {} diff_ids",
                e.layers.len(),
                diff_ids.len()
            ),
        });
    }
    let chains = chain_ids(&diff_ids);
    let mut layers = Vec::with_capacity(e.layers.len());
    let parents = std::iter::once(None).chain(chains.iter().cloned().map(Some));
    for (((entry, diff_id), chain_id), parent) in e
        .layers
        .iter()
        .zip(diff_ids)
        .zip(chains.clone())
        .zip(parents)
    {
        let declared = entry
            .strip_prefix("blobs/sha256/")
            .and_then(|h| Digest::from_hex(h).ok());
        layers.push(LayerPlan {
            entry: entry.clone(),
            declared,
            declared_size: None,
            media_type: "application/vnd.docker.image.rootfs.diff.tar".into(),
            diff_id,
            chain_id,
            parent,
        });
    }
    let mut refs = Vec::new();
    for t in e.repo_tags.iter().flatten() {
        refs.push(normalize_reference(t)?);
    }
    Ok(ImagePlan {
        manifest: None,
        config_digest,
        config_bytes,
        platform: config_platform(&cfg),
        layers,
        refs,
        format,
    })
}

/// RepoTags from `manifest.json` by config digest (Docker 25+ archives).
pub(crate) fn repo_tags(source: &Source) -> Vec<(Digest, String)> {
    let Ok(data) = source.read_small("manifest.json", "docker save manifest") else {
        return Vec::new();
    };
    let Ok(entries) = serde_json::from_slice::<Vec<ManifestEntry>>(&data) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries {
        if let Some(d) = declared_digest(&e.config) {
            for t in e.repo_tags.into_iter().flatten() {
                if let Ok(r) = normalize_reference(&t) {
                    out.push((d.clone(), r));
                }
            }
        }
    }
    out
}

pub(crate) fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}
