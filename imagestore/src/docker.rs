//! `docker save` archives: `manifest.json` plus the entries it names.
//!
//! Legacy (before Docker 25): `<id>/layer.tar` layers (uncompressed, or gzip
//! as some tools write them, sometimes symlinked to another image's layer)
//! and a `<hex>.json` config. Docker 25+ writes an OCI layout beside the same
//! `manifest.json`, whose entries then point into `blobs/sha256/`.

use serde_json::Value;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::format::Format;
use crate::images::normalize_reference;
use crate::plan::{
    chain_ids, check_bytes, classify_config, config_platform, json_kind, parse_json, ConfigKind,
    ImagePlan, LayerPlan, Plan,
};
use crate::platform::Platform;
use crate::source::Source;

/// The file this module reads.
const MANIFEST: &str = "manifest.json";

/// One image in `manifest.json`.
#[derive(Debug)]
struct ManifestEntry {
    /// `Config`: the config's entry name.
    config: String,
    /// `RepoTags` (absent or null: none).
    repo_tags: Vec<String>,
    /// `Layers`: the layers' entry names, bottom first (absent: none).
    layers: Vec<String>,
}

/// A `docker save` archive's `manifest.json`, read and parsed once. A
/// document that does not parse is an error naming the file and the field.
#[derive(Debug)]
pub(crate) struct DockerManifest {
    entries: Vec<ManifestEntry>,
}

impl DockerManifest {
    /// Read and parse the input's `manifest.json`.
    pub(crate) fn read(source: &Source) -> Result<DockerManifest> {
        let data = source.read_small(MANIFEST, "docker save manifest")?;
        DockerManifest::parse(&data)
    }

    fn parse(data: &[u8]) -> Result<DockerManifest> {
        let value: Value = parse_json(data, MANIFEST)?;
        let Value::Array(items) = value else {
            return Err(Error::BadJson {
                what: MANIFEST.into(),
                detail: format!("expected a list of images, found {}", json_kind(&value)),
            });
        };
        let entries = items
            .iter()
            .enumerate()
            .map(|(i, v)| ManifestEntry::parse(i, v))
            .collect::<Result<_>>()?;
        Ok(DockerManifest { entries })
    }

    /// RepoTags by config digest, for the images of a Docker 25+ archive
    /// (planned from its OCI layout, whose index may not name them).
    pub(crate) fn repo_tags(&self) -> Result<Vec<(Digest, String)>> {
        let mut out = Vec::new();
        for e in &self.entries {
            if let Some(d) = declared_digest(&e.config) {
                for t in &e.repo_tags {
                    out.push((d.clone(), normalize_reference(t)?));
                }
            }
        }
        Ok(out)
    }
}

impl ManifestEntry {
    /// Parse entry `i`, naming the field that is wrong.
    fn parse(i: usize, v: &Value) -> Result<ManifestEntry> {
        let Value::Object(map) = v else {
            return Err(Error::BadJson {
                what: format!("{MANIFEST} entry {i}"),
                detail: format!("expected an object, found {}", json_kind(v)),
            });
        };
        let bad = |field: &str, detail: String| Error::BadJson {
            what: format!("{MANIFEST} entry {i}, field {field:?}"),
            detail,
        };
        let config = match map.get("Config") {
            Some(Value::String(s)) => s.clone(),
            None => return Err(bad("Config", "it is missing".into())),
            Some(other) => {
                return Err(bad(
                    "Config",
                    format!("expected a string, found {}", json_kind(other)),
                ))
            }
        };
        let strings = |field: &str, v: &Value| -> Result<Vec<String>> {
            let Value::Array(items) = v else {
                return Err(bad(
                    field,
                    format!("expected a list of strings, found {}", json_kind(v)),
                ));
            };
            items
                .iter()
                .enumerate()
                .map(|(j, item)| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(bad(
                        field,
                        format!("item {j}: expected a string, found {}", json_kind(other)),
                    )),
                })
                .collect()
        };
        let repo_tags = match map.get("RepoTags") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => strings("RepoTags", v)?,
        };
        let layers = match map.get("Layers") {
            None => Vec::new(),
            Some(v) => strings("Layers", v)?,
        };
        Ok(ManifestEntry {
            config,
            repo_tags,
            layers,
        })
    }
}

/// The digest an entry name declares, when it has the form
/// `blobs/sha256/<hex>`, `<hex>.json`, `sha256:<hex>` or `<hex>/layer.tar`-free.
fn declared_digest(name: &str) -> Option<Digest> {
    let base = name.strip_prefix("blobs/sha256/").unwrap_or(name);
    let base = base.strip_suffix(".json").unwrap_or(base);
    let base = base.strip_prefix("sha256:").unwrap_or(base);
    Digest::from_hex(base).ok()
}

/// Plan every image `manifest.json` lists.
pub(crate) fn plan(
    source: &Source,
    manifest: &DockerManifest,
    wanted: Option<&Platform>,
    format: Format,
) -> Result<Plan> {
    let entries = &manifest.entries;
    if entries.is_empty() {
        return Err(Error::NoImage {
            input: source.input.clone(),
            detail: "manifest.json lists no images".into(),
        });
    }
    let mut plan = Plan::default();
    let mut available = Vec::new();
    let mut skipped = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let img = match plan_entry(source, e, i, format)? {
            Entry::Image(img) => img,
            Entry::NotImage(why) => {
                let tags = if e.repo_tags.is_empty() {
                    String::new()
                } else {
                    format!(", {}", e.repo_tags.join(", "))
                };
                skipped.push(format!(
                    "{MANIFEST} entry {i} ({}{tags}): not an image: its config {why}",
                    e.config
                ));
                continue;
            }
        };
        if let Some(w) = wanted {
            if !w.matches(&img.platform) {
                available.push(img.platform.to_string());
                continue;
            }
        }
        plan.images.push(img);
    }
    if plan.images.is_empty() && available.is_empty() {
        return Err(Error::NoImage {
            input: source.input.clone(),
            detail: format!(
                "{MANIFEST} lists only non-image entries: {}",
                skipped.join("; ")
            ),
        });
    }
    plan.warnings
        .extend(skipped.into_iter().map(|s| format!("skipped {s}")));
    if plan.images.is_empty() {
        return Err(Error::PlatformNotFound {
            wanted: wanted.map(|w| w.to_string()).unwrap_or_default(),
            available: available.join(", "),
        });
    }
    Ok(plan)
}

/// What a `manifest.json` entry turned out to be.
enum Entry {
    Image(ImagePlan),
    /// Its config is no image config: why not.
    NotImage(String),
}

fn plan_entry(source: &Source, e: &ManifestEntry, i: usize, format: Format) -> Result<Entry> {
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
    let (cfg, diff_ids) = match classify_config(&config_bytes, &what)? {
        ConfigKind::Image(cfg, diff_ids) => (cfg, diff_ids),
        ConfigKind::NotImage(why) => return Ok(Entry::NotImage(why)),
    };
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
    for t in &e.repo_tags {
        refs.push(normalize_reference(t)?);
    }
    Ok(Entry::Image(ImagePlan {
        manifest: None,
        config_digest,
        config_bytes,
        platform: config_platform(&cfg),
        layers,
        refs,
        format,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(json: &str) -> String {
        DockerManifest::parse(json.as_bytes())
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn test_docker_manifest_parse_accepts_optional_fields() {
        let m = DockerManifest::parse(
            br#"[{"Config":"a.json","RepoTags":null},{"Config":"b.json","RepoTags":["x"],"Layers":["l/layer.tar"],"Extra":1}]"#,
        )
        .expect("parses");
        assert_eq!(m.entries.len(), 2);
        assert!(m.entries[0].repo_tags.is_empty() && m.entries[0].layers.is_empty());
        assert_eq!(m.entries[1].repo_tags, ["x"]);
        assert_eq!(m.entries[1].layers, ["l/layer.tar"]);
    }

    #[test]
    fn test_docker_manifest_parse_errors_name_file_and_field() {
        let e = parse_err(r#"[{"Config":7,"Layers":[]}]"#);
        assert!(e.contains("manifest.json entry 0, field \"Config\""), "{e}");
        assert!(e.contains("expected a string, found a number"), "{e}");
        let e = parse_err(r#"[{"Config":"c"},{"Config":"c","Layers":[1]}]"#);
        assert!(e.contains("entry 1, field \"Layers\""), "{e}");
        assert!(e.contains("item 0"), "{e}");
        let e = parse_err(r#"[{"Layers":[]}]"#);
        assert!(
            e.contains("field \"Config\"") && e.contains("missing"),
            "{e}"
        );
        let e = parse_err(r#"[{"Config":"c","RepoTags":"x"}]"#);
        assert!(e.contains("field \"RepoTags\""), "{e}");
        let e = parse_err("null");
        assert!(e.contains("manifest.json") && e.contains("null"), "{e}");
        let e = parse_err("[3]");
        assert!(e.contains("manifest.json entry 0"), "{e}");
        assert!(parse_err("{").contains("manifest.json"));
    }

    #[test]
    fn test_docker_manifest_repo_tags_surface_bad_tags() {
        let hex = "a".repeat(64);
        let ok = DockerManifest::parse(
            format!(r#"[{{"Config":"blobs/sha256/{hex}","RepoTags":["busybox"]}}]"#).as_bytes(),
        )
        .expect("parses");
        let tags = ok.repo_tags().expect("tags");
        assert_eq!(tags.len(), 1);
        assert_eq!(tags[0].1, "docker.io/library/busybox:latest");
        let bad = DockerManifest::parse(
            format!(r#"[{{"Config":"blobs/sha256/{hex}","RepoTags":["a b"]}}]"#).as_bytes(),
        )
        .expect("parses");
        assert!(bad.repo_tags().is_err());
    }
}
