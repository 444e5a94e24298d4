//! Image records and tags.
//!
//! An image is keyed by its config digest (its ID, as Docker shows it):
//! `meta/images/<hex>.json`. Each tag is its own small file,
//! `meta/tags/<escaped reference>.json`, replaced atomically, so concurrent
//! imports never lose each other's tags.

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{list_dir, write_atomic};

/// An image's id: its config digest, as Docker shows it. Once an image
/// reference or archive argument is resolved, the image travels as this,
/// and is looked up with [`crate::Store::image`] without parsing anything.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ImageId(Digest);

impl ImageId {
    /// The id of the image whose config has this digest.
    pub fn from_config(config: Digest) -> ImageId {
        ImageId(config)
    }

    /// The config digest.
    pub fn digest(&self) -> &Digest {
        &self.0
    }
}

impl std::fmt::Display for ImageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One layer of a stored image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerRecord {
    /// Digest of the layer blob as imported.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Chain ID: the snapshot that holds this layer.
    pub chain_id: Digest,
}

/// A stored image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    /// Image ID: the config digest.
    pub id: Digest,
    /// Manifest digest.
    pub manifest: Digest,
    /// Config digest (same as `id`).
    pub config: Digest,
    /// `os/arch[/variant]` from the config.
    pub platform: String,
    /// Layers, bottom first.
    pub layers: Vec<LayerRecord>,
    /// The archive format it came from.
    pub source_format: String,
    /// Seconds since the epoch when it was (last) imported.
    pub imported_at: u64,
}

impl ImageRecord {
    /// Its id, typed.
    pub fn image_id(&self) -> ImageId {
        ImageId(self.id.clone())
    }

    /// Chain IDs, bottom first.
    pub fn chain(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.chain_id.clone()).collect()
    }

    /// Sum of the layer blob sizes.
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct TagRecord {
    reference: String,
    id: Digest,
}

/// Normalise `name[:tag]`: the tag defaults to `latest`.
pub fn normalize_reference(reference: &str) -> Result<String> {
    let bad = |detail| Error::InvalidReference {
        reference: reference.to_string(),
        detail,
    };
    if reference.is_empty() || reference.len() > 255 {
        return Err(bad("must be 1 to 255 characters"));
    }
    if reference
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '@')
    {
        return Err(bad(
            "must not contain whitespace, control characters or '@'",
        ));
    }
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if reference.starts_with('/') || reference.ends_with('/') || reference.ends_with(':') {
        return Err(bad("has an empty name component or tag"));
    }
    if last.contains(':') {
        Ok(reference.to_string())
    } else {
        Ok(format!("{reference}:latest"))
    }
}

/// Escape a reference into a file name: anything outside `[A-Za-z0-9._-]`
/// becomes `%XX`, so no reference can form a path.
fn escape(reference: &str) -> String {
    let mut out = String::with_capacity(reference.len());
    for b in reference.bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.starts_with('.') {
        out.replace_range(0..1, "%2E");
    }
    out
}

/// Image and tag metadata on disk.
#[derive(Debug, Clone)]
pub struct ImageIndex {
    images: PathBuf,
    tags: PathBuf,
}

impl ImageIndex {
    pub(crate) fn new(images: PathBuf, tags: PathBuf) -> Self {
        ImageIndex { images, tags }
    }

    fn image_path(&self, id: &Digest) -> PathBuf {
        self.images.join(format!("{}.json", id.hex()))
    }

    /// Write (or replace) an image record.
    pub(crate) fn put(&self, rec: &ImageRecord) -> Result<()> {
        let path = self.image_path(&rec.id);
        let json = serde_json::to_vec_pretty(rec).map_err(|e| Error::CorruptMetadata {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        write_atomic(&path, &json)
    }

    /// Read an image record by id.
    pub fn get(&self, id: &Digest) -> Result<Option<ImageRecord>> {
        let path = self.image_path(id);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).ctx("read", &path),
        };
        serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| Error::CorruptMetadata {
                path,
                detail: e.to_string(),
            })
    }

    /// All image records.
    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        let mut out = Vec::new();
        for (name, _) in list_dir(&self.images)? {
            let Some(hex) = name.strip_suffix(".json") else {
                continue;
            };
            if let Ok(id) = Digest::from_hex(hex) {
                if let Some(rec) = self.get(&id)? {
                    out.push(rec);
                }
            }
        }
        Ok(out)
    }

    /// Point a (normalised) reference at an image.
    pub(crate) fn tag(&self, reference: &str, id: &Digest) -> Result<()> {
        let rec = TagRecord {
            reference: reference.to_string(),
            id: id.clone(),
        };
        let path = self.tags.join(format!("{}.json", escape(reference)));
        let json = serde_json::to_vec(&rec).map_err(|e| Error::CorruptMetadata {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        write_atomic(&path, &json)
    }

    /// Remove a tag. Returns whether it existed.
    pub(crate) fn untag(&self, reference: &str) -> Result<bool> {
        let path = self.tags.join(format!("{}.json", escape(reference)));
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).ctx("remove", &path),
        }
    }

    /// All tags as (reference, id).
    pub fn tags(&self) -> Result<Vec<(String, Digest)>> {
        let mut out = Vec::new();
        for (name, path) in list_dir(&self.tags)? {
            if !name.ends_with(".json") || name.starts_with('.') {
                continue;
            }
            let data = fs::read(&path).ctx("read", &path)?;
            let rec: TagRecord =
                serde_json::from_slice(&data).map_err(|e| Error::CorruptMetadata {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            out.push((rec.reference, rec.id));
        }
        Ok(out)
    }

    /// The tags pointing at one image.
    pub fn tags_of(&self, id: &Digest) -> Result<Vec<String>> {
        Ok(self
            .tags()?
            .into_iter()
            .filter(|(_, i)| i == id)
            .map(|(r, _)| r)
            .collect())
    }

    /// Remove an image record (its tags are the caller's business).
    pub(crate) fn remove(&self, id: &Digest) -> Result<()> {
        let path = self.image_path(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx("remove", &path),
        }
    }

    /// Resolve a reference: a full `sha256:` id, a tag (`name` means
    /// `name:latest`), or an unambiguous id prefix of at least 4 hex digits.
    pub fn resolve(&self, reference: &str) -> Result<ImageRecord> {
        if reference.starts_with("sha256:") {
            let id = Digest::parse(reference)?;
            return self
                .get(&id)?
                .ok_or_else(|| Error::ImageNotFound(reference.to_string()));
        }
        if let Ok(norm) = normalize_reference(reference) {
            let path = self.tags.join(format!("{}.json", escape(&norm)));
            if let Ok(data) = fs::read(&path) {
                let rec: TagRecord =
                    serde_json::from_slice(&data).map_err(|e| Error::CorruptMetadata {
                        path: path.clone(),
                        detail: e.to_string(),
                    })?;
                return self
                    .get(&rec.id)?
                    .ok_or_else(|| Error::ImageNotFound(reference.to_string()));
            }
        }
        let is_hex = reference.len() >= 4
            && reference.len() <= 64
            && reference
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if is_hex {
            let mut found: Vec<ImageRecord> = self
                .list()?
                .into_iter()
                .filter(|r| r.id.hex().starts_with(reference))
                .collect();
            match found.len() {
                0 => {}
                1 => return Ok(found.remove(0)),
                _ => return Err(Error::AmbiguousReference(reference.to_string())),
            }
        }
        Err(Error::ImageNotFound(reference.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_normalize_reference_adds_latest() {
        assert_eq!(
            normalize_reference("busybox").expect("ok"),
            "busybox:latest"
        );
        assert_eq!(
            normalize_reference("localhost:5000/a/b").expect("ok"),
            "localhost:5000/a/b:latest"
        );
        assert_eq!(normalize_reference("a/b:1.0").expect("ok"), "a/b:1.0");
        assert!(normalize_reference("a b").is_err());
        assert!(normalize_reference("").is_err());
    }

    #[test]
    fn test_escape_never_forms_a_path() {
        for r in ["../../etc/passwd:latest", "a/b:c", ".hidden"] {
            let e = escape(r);
            assert!(!e.contains('/'), "{e}");
            assert!(!e.starts_with('.'), "{e}");
        }
    }
}
