//! Import plans: what an archive holds, read and verified down to the
//! configs, before any layer is unpacked. Built by [`crate::docker`] and
//! [`crate::oci`], carried out by [`crate::import`].

use oci_spec::image::ImageConfiguration;
use serde::de::DeserializeOwned;

use std::io::BufReader;

pub(crate) use crate::blobs::check_bytes;
use crate::blobs::Blobs;
use crate::compression::Compression;
use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use crate::format::Format;
use crate::images::normalize_reference;
use crate::platform::Platform;

/// One layer to bring into the store.
#[derive(Debug, Clone)]
pub(crate) struct LayerPlan {
    /// Archive entry holding the layer blob.
    pub entry: String,
    /// Digest the manifest declares for the blob (OCI); `None` for legacy `docker save`.
    pub declared: Option<Digest>,
    /// Size the manifest declares.
    pub declared_size: Option<u64>,
    /// Declared media type.
    pub media_type: String,
    /// The config's diff_id for it.
    pub diff_id: Digest,
    /// Its chain ID.
    pub chain_id: Digest,
    /// The chain ID below it.
    pub parent: Option<Digest>,
}

/// One image to bring into the store.
#[derive(Debug, Clone)]
pub(crate) struct ImagePlan {
    /// The manifest as found (digest, bytes); `None` means one is written
    /// (legacy `docker save` has none).
    pub manifest: Option<(Digest, Vec<u8>)>,
    pub config_digest: Digest,
    pub config_bytes: Vec<u8>,
    pub platform: Platform,
    pub layers: Vec<LayerPlan>,
    pub refs: Vec<String>,
    pub format: Format,
}

/// Everything an archive holds that will be imported.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub images: Vec<ImagePlan>,
    pub warnings: Vec<String>,
}

impl ImagePlan {
    /// How a listing names the image: its references, id, manifest and platform.
    pub(crate) fn describe(&self) -> String {
        let names = if self.refs.is_empty() {
            "<untagged>".to_string()
        } else {
            self.refs.join(", ")
        };
        let manifest = match &self.manifest {
            Some((d, _)) => format!(", manifest {d}"),
            None => String::new(),
        };
        format!(
            "{names} (id {}{manifest}, {})",
            self.config_digest, self.platform
        )
    }

    /// Whether `selector` names this image by one of its references (as
    /// given, normalised, or just the tag).
    fn named_by(&self, selector: &str) -> bool {
        let normal = normalize_reference(selector).ok();
        self.refs.iter().any(|r| {
            r == selector
                || normal.as_deref() == Some(r.as_str())
                || r.rsplit_once(':')
                    .is_some_and(|(repo, tag)| !repo.ends_with('/') && tag == selector)
        })
    }

    /// Whether `selector` is this image's manifest digest or image id
    /// (`sha256:` optional, a prefix allowed).
    fn has_digest(&self, selector: &str) -> bool {
        let hex = selector.strip_prefix("sha256:").unwrap_or(selector);
        let is_hex = !hex.is_empty() && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        is_hex
            && (self.config_digest.hex().starts_with(hex)
                || self
                    .manifest
                    .as_ref()
                    .is_some_and(|(d, _)| d.hex().starts_with(hex)))
    }
}

impl Plan {
    /// Keep only the one image `selector` names: by reference first (as
    /// `docker` resolves names before ids), else by digest or id prefix. No
    /// match, or several, is an error that lists what the input holds.
    pub(crate) fn select(&mut self, selector: &str, input: &str) -> Result<()> {
        let find = |pred: &dyn Fn(&ImagePlan) -> bool| -> Vec<usize> {
            (0..self.images.len())
                .filter(|&i| pred(&self.images[i]))
                .collect()
        };
        let mut matches = find(&|img| img.named_by(selector));
        if matches.is_empty() {
            matches = find(&|img| img.has_digest(selector));
        }
        let list = |idx: &mut dyn Iterator<Item = usize>| -> String {
            idx.map(|i| self.images[i].describe())
                .collect::<Vec<_>>()
                .join("; ")
        };
        match matches.as_slice() {
            [one] => {
                let img = self.images.swap_remove(*one);
                self.images = vec![img];
                Ok(())
            }
            [] => Err(Error::SelectorNotFound {
                selector: selector.to_string(),
                input: input.to_string(),
                available: list(&mut (0..self.images.len())),
            }),
            several => Err(Error::AmbiguousSelector {
                selector: selector.to_string(),
                input: input.to_string(),
                matches: list(&mut several.iter().copied()),
            }),
        }
    }
}

/// Layer media types skiff unpacks (compression is detected from content).
pub(crate) fn is_layer_media_type(mt: &str) -> bool {
    matches!(
        mt,
        "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
            | "application/tar"
            | "application/tar+gzip"
            | "application/x-tar"
    )
}

/// Parse a JSON document. An error names `what` (the blob or archive entry)
/// and the JSON path of the field that failed (`rootfs.diff_ids[2]`).
pub(crate) fn parse_json<T: DeserializeOwned>(data: &[u8], what: &str) -> Result<T> {
    let bad = |detail: String| Error::BadJson {
        what: what.to_string(),
        detail,
    };
    let mut de = serde_json::Deserializer::from_slice(data);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || inner.is_syntax() || inner.is_eof() {
            bad(inner.to_string())
        } else {
            bad(format!("{path}: {inner}"))
        }
    })?;
    de.end().map_err(|e| bad(e.to_string()))?;
    Ok(value)
}

/// What a blob in an image config's place turned out to be.
pub(crate) enum ConfigKind {
    /// An image config, with its diff_ids.
    Image(Box<ImageConfiguration>, Vec<Digest>),
    /// Not an image config (an artifact's, such as `{}`): why not.
    NotImage(String),
}

/// The fields without which a config is no image config.
const IMAGE_CONFIG_FIELDS: [&str; 3] = ["architecture", "os", "rootfs"];

/// Parse a blob in an image config's place. A JSON object without
/// `architecture`, `os` or `rootfs` (an artifact's `{}`) is
/// [`ConfigKind::NotImage`]; any other error names `what` and the field.
pub(crate) fn classify_config(data: &[u8], what: &str) -> Result<ConfigKind> {
    let value: serde_json::Value = parse_json(data, what)?;
    let Some(map) = value.as_object() else {
        return Ok(ConfigKind::NotImage(format!(
            "is {}, not an object",
            json_kind(&value)
        )));
    };
    let missing: Vec<&str> = IMAGE_CONFIG_FIELDS
        .into_iter()
        .filter(|f| map.get(*f).is_none_or(|v| v.is_null()))
        .collect();
    if !missing.is_empty() {
        return Ok(ConfigKind::NotImage(format!(
            "has no {}",
            missing.join(", ")
        )));
    }
    let cfg: ImageConfiguration = parse_json(data, what)?;
    let diff_ids = cfg
        .rootfs()
        .diff_ids()
        .iter()
        .enumerate()
        .map(|(i, d)| {
            Digest::parse(d).map_err(|e| Error::BadJson {
                what: what.to_string(),
                detail: format!("rootfs.diff_ids[{i}]: {e}"),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ConfigKind::Image(Box::new(cfg), diff_ids))
}

/// What kind of JSON value `v` is, for messages.
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

/// The platform an image config declares.
pub(crate) fn config_platform(cfg: &ImageConfiguration) -> Platform {
    Platform::new(
        &cfg.os().to_string(),
        &cfg.architecture().to_string(),
        cfg.variant().as_deref(),
    )
}

/// Chain IDs for a list of diff_ids, bottom first.
pub(crate) fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let c = Digest::chain(out.last(), d);
        out.push(c);
    }
    out
}

/// Compute a layer's diff_id by decompressing it, checking the blob digest
/// on the way. Only for images whose config does not list diff_ids.
pub(crate) fn compute_diff_id(
    source: &dyn Blobs,
    entry: &str,
    declared: &Digest,
) -> Result<Digest> {
    let raw = source
        .layer(entry, None, &format!("layer {declared}"))?
        .into_reader()?;
    let mut hashed = HashingReader::new(raw);
    let diff = {
        let (_, dec) = Compression::decoder(BufReader::new(&mut hashed)).map_err(|source| {
            Error::ReadArchive {
                what: format!("layer {declared}"),
                source,
            }
        })?;
        let mut diff = HashingReader::new(dec);
        diff.drain().map_err(|source| Error::ReadArchive {
            what: format!("layer {declared}: decompressing"),
            source,
        })?;
        diff.finish().0
    };
    hashed.drain().map_err(|source| Error::ReadArchive {
        what: format!("layer {declared}"),
        source,
    })?;
    let (actual, _, _) = hashed.finish();
    if &actual != declared {
        return Err(Error::DigestMismatch {
            what: format!("layer {declared} ({})", source.place(entry)),
            expected: declared.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(diff)
}
