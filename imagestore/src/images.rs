//! Image records and tags.
//!
//! An image is keyed by its config digest (its ID, as Docker shows it):
//! `meta/images/<hex>.json`. Each tag is its own small file,
//! `meta/tags/<escaped reference>.json`, replaced atomically, so concurrent
//! imports never lose each other's tags.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::format::Format;
use crate::fsutil::{list_dir, write_atomic};
use crate::reference::{canonical_tag, is_full_hex_id, is_lower_hex, ImageRef};

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
    /// `NAME@DIGEST` references a registry served it by (a pull's), where
    /// the digest may be a multi-platform index's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repo_digests: Vec<String>,
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

    /// The manifest digest a registry knows the image by (Docker's repo
    /// digest): `None` for a legacy `docker save`, which has no manifest
    /// (the one recorded is skiff's own); OCI layouts and archives and
    /// Docker 25+ saves carry theirs.
    pub fn repo_digest(&self) -> Option<&Digest> {
        (self.source_format != Format::DockerArchive.name()).then_some(&self.manifest)
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

/// Normalise a tag reference as Docker does, to its canonical form:
/// `busybox` → `docker.io/library/busybox:latest` (see [`crate::reference`]).
/// A reference with a digest is refused: a tag names no digest.
pub fn normalize_reference(reference: &str) -> Result<String> {
    canonical_tag(reference)
}

/// The name under which a tag record is kept: the canonical form when the
/// reference parses, otherwise (a record from an older store) as written.
fn tag_key(reference: &str) -> String {
    canonical_tag(reference).unwrap_or_else(|_| reference.to_string())
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

/// The longest escaped reference used as a file name as it is; longer ones
/// (file names stop at 255 bytes) are named by their hash.
const MAX_ESCAPED: usize = 200;

/// A tag record's file name. No escaped canonical reference can be
/// `sha256-<hex>`: a canonical reference has a `/`, escaped as `%2F`.
fn tag_file_name(reference: &str) -> String {
    let e = escape(reference);
    if e.len() <= MAX_ESCAPED {
        format!("{e}.json")
    } else {
        format!(
            "sha256-{}.json",
            Digest::of_bytes(reference.as_bytes()).hex()
        )
    }
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

    /// Every tag record on disk, with its file.
    fn records(&self) -> Result<Vec<(PathBuf, TagRecord)>> {
        let mut out = Vec::new();
        for (name, path) in list_dir(&self.tags)? {
            if !name.ends_with(".json") || name.starts_with('.') {
                continue;
            }
            let data = match fs::read(&path) {
                Ok(d) => d,
                // Removed since the listing (an untag or a migration).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).ctx("read", &path),
            };
            let rec: TagRecord =
                serde_json::from_slice(&data).map_err(|e| Error::CorruptMetadata {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            out.push((path, rec));
        }
        Ok(out)
    }

    /// Point a reference at an image. The record is written under the
    /// reference's canonical form; records an older store wrote under
    /// another form of the same name (`busybox:latest`) are removed after
    /// it, so a crash in between leaves both, and the canonical one wins.
    pub(crate) fn tag(&self, reference: &str, id: &Digest) -> Result<()> {
        let key = canonical_tag(reference)?;
        let rec = TagRecord {
            reference: key.clone(),
            id: id.clone(),
        };
        let path = self.tags.join(tag_file_name(&key));
        let json = serde_json::to_vec(&rec).map_err(|e| Error::CorruptMetadata {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        write_atomic(&path, &json)?;
        self.remove_aliases(&key)?;
        Ok(())
    }

    /// Remove the records that spell `key` in another form. Returns whether
    /// there were any.
    fn remove_aliases(&self, key: &str) -> Result<bool> {
        let mut any = false;
        for (path, rec) in self.records()? {
            if rec.reference != key && tag_key(&rec.reference) == key {
                any |= remove_if_present(&path)?;
            }
        }
        Ok(any)
    }

    /// Remove a tag, in whichever form it is recorded. Returns whether it
    /// existed.
    pub(crate) fn untag(&self, reference: &str) -> Result<bool> {
        let key = tag_key(reference);
        let removed = remove_if_present(&self.tags.join(tag_file_name(&key)))?;
        Ok(self.remove_aliases(&key)? || removed)
    }

    /// All tags as (reference, id), sorted, each reference in its canonical
    /// form (`docker.io/library/busybox:latest`). A record an older store
    /// wrote as `busybox:latest` shows as its canonical form; when both
    /// forms are on disk, the canonical record wins.
    pub fn tags(&self) -> Result<Vec<(String, Digest)>> {
        let mut by_key: BTreeMap<String, (Digest, bool)> = BTreeMap::new();
        for (_, rec) in self.records()? {
            let key = tag_key(&rec.reference);
            let exact = key == rec.reference;
            match by_key.get(&key) {
                Some((_, true)) => {}
                Some((_, false)) if !exact => {}
                _ => {
                    by_key.insert(key, (rec.id, exact));
                }
            }
        }
        Ok(by_key.into_iter().map(|(k, (id, _))| (k, id)).collect())
    }

    /// The tags pointing at one image, canonical, sorted.
    pub fn tags_of(&self, id: &Digest) -> Result<Vec<String>> {
        Ok(self
            .tags()?
            .into_iter()
            .filter(|(_, i)| i == id)
            .map(|(r, _)| r)
            .collect())
    }

    /// The image a tag (any form of it) points at.
    fn lookup_tag(&self, key: &str) -> Result<Option<Digest>> {
        let path = self.tags.join(tag_file_name(key));
        match fs::read(&path) {
            Ok(data) => {
                let rec: TagRecord =
                    serde_json::from_slice(&data).map_err(|e| Error::CorruptMetadata {
                        path: path.clone(),
                        detail: e.to_string(),
                    })?;
                return Ok(Some(rec.id));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).ctx("read", &path),
        }
        // A record in an older store's form (`busybox:latest`).
        Ok(self
            .tags()?
            .into_iter()
            .find(|(r, _)| r == key)
            .map(|(_, id)| id))
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

    /// Resolve a reference as Docker does, in this order:
    /// - `sha256:<64 hex>` or 64 bare hex digits: that image id;
    /// - `NAME@sha256:X`: the image that NAME (any form) tags, when X is its
    ///   manifest (repo) digest; a tag beside the digest is ignored, as
    ///   Docker ignores it. X being the image id is no match, as in Docker
    ///   (the error says to use the id alone);
    /// - a tag in any form (`busybox`, `library/busybox:latest`,
    ///   `docker.io/library/busybox:latest` are one);
    /// - a unique prefix of an image id, with or without `sha256:`.
    pub fn resolve(&self, reference: &str) -> Result<ImageRecord> {
        let not_found = || Error::ImageNotFound(reference.to_string());
        if let Some(hex) = reference.strip_prefix("sha256:") {
            if hex.len() == 64 {
                let id = Digest::parse(reference)?;
                return self.get(&id)?.ok_or_else(not_found);
            }
            if !is_lower_hex(hex) {
                return Err(Error::InvalidReference {
                    reference: reference.to_string(),
                    detail: "an image id is sha256: and up to 64 lowercase hex digits".into(),
                });
            }
            return self.by_id_prefix(hex)?.ok_or_else(not_found);
        }
        if is_full_hex_id(reference) {
            let id = Digest::from_hex(reference)?;
            return self.get(&id)?.ok_or_else(not_found);
        }
        let parsed = match ImageRef::parse(reference) {
            Ok(r) => r,
            Err(e) => {
                // A tag an older store kept as written, which Docker's
                // grammar refuses (`MyApp:1`), still resolves as written.
                if let Some(id) = self.lookup_tag(reference)? {
                    return self.get(&id)?.ok_or_else(not_found);
                }
                return Err(e);
            }
        };
        if let Some(digest) = parsed.typed_digest()? {
            if let Some(rec) = self.by_name_and_digest(&parsed, &digest)? {
                return Ok(rec);
            }
            if self.get(&digest)?.is_some() {
                return Err(Error::ImageNotFound(format!(
                    "{reference} ({digest} is an image id, and NAME@ takes a manifest digest, \
                     as in Docker; run the image by its id alone)"
                )));
            }
            return Err(not_found());
        }
        if let Some(id) = self.lookup_tag(&parsed.canonical_tag()?)? {
            return self.get(&id)?.ok_or_else(not_found);
        }
        if is_lower_hex(reference) {
            if let Some(rec) = self.by_id_prefix(reference)? {
                return Ok(rec);
            }
        }
        Err(not_found())
    }

    /// The one image whose id starts with `hex`; an error when several do.
    fn by_id_prefix(&self, hex: &str) -> Result<Option<ImageRecord>> {
        let mut found: Vec<ImageRecord> = self
            .list()?
            .into_iter()
            .filter(|r| r.id.hex().starts_with(hex))
            .collect();
        match found.len() {
            0 => Ok(None),
            1 => Ok(Some(found.remove(0))),
            _ => Err(Error::AmbiguousReference(hex.to_string())),
        }
    }

    /// The image tagged with `name`'s repository whose manifest (repo)
    /// digest is `digest`.
    fn by_name_and_digest(&self, name: &ImageRef, digest: &Digest) -> Result<Option<ImageRecord>> {
        let repo = name.name();
        let tagged: Vec<Digest> = self
            .tags()?
            .into_iter()
            .filter(|(t, _)| ImageRef::parse(t).is_ok_and(|r| r.name() == repo))
            .map(|(_, id)| id)
            .collect();
        for id in tagged {
            let Some(rec) = self.get(&id)? else {
                continue;
            };
            if rec.repo_digest() == Some(digest) {
                return Ok(Some(rec));
            }
        }
        // A pull records the digest it resolved (an index's, perhaps),
        // tagged or not.
        let wanted = format!("{repo}@{digest}");
        Ok(self
            .list()?
            .into_iter()
            .find(|rec| rec.repo_digests.contains(&wanted)))
    }
}

/// Remove a file; whether it was there.
fn remove_if_present(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).ctx("remove", path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_normalize_reference_is_dockers() {
        assert_eq!(
            normalize_reference("busybox").expect("ok"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize_reference("localhost:5000/a/b").expect("ok"),
            "localhost:5000/a/b:latest"
        );
        assert_eq!(
            normalize_reference("a/b:1.0").expect("ok"),
            "docker.io/a/b:1.0"
        );
        assert!(normalize_reference("a b").is_err());
        assert!(normalize_reference("").is_err());
        let digest = format!("busybox@sha256:{}", "a".repeat(64));
        assert!(normalize_reference(&digest).is_err());
    }

    /// An index in a temporary directory with images `n` (distinct ids).
    struct Fixture {
        _dir: tempfile::TempDir,
        index: ImageIndex,
        tags: PathBuf,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().expect("tmp");
            let images = dir.path().join("images");
            let tags = dir.path().join("tags");
            fs::create_dir_all(&images).expect("mkdir");
            fs::create_dir_all(&tags).expect("mkdir");
            Fixture {
                index: ImageIndex::new(images, tags.clone()),
                tags,
                _dir: dir,
            }
        }

        /// Store image `n`, recorded as coming from `format` with manifest
        /// digest `manifest`.
        fn image(&self, n: u8, format: Format) -> ImageRecord {
            let id = Digest::of_bytes(&[n]);
            let rec = ImageRecord {
                id: id.clone(),
                manifest: Digest::of_bytes(&[n, n]),
                config: id,
                platform: "linux/amd64".into(),
                layers: Vec::new(),
                source_format: format.name().into(),
                repo_digests: Vec::new(),
                imported_at: 0,
            };
            self.index.put(&rec).expect("put");
            rec
        }

        /// A tag file exactly as the store before Docker's normalisation
        /// wrote it: the reference as given, `:latest` added.
        fn old_tag(&self, reference: &str, id: &Digest) {
            let json = serde_json::json!({"reference": reference, "id": id});
            fs::write(
                self.tags.join(format!("{}.json", escape(reference))),
                json.to_string(),
            )
            .expect("write");
        }

        fn files(&self) -> Vec<String> {
            let mut v: Vec<String> = list_dir(&self.tags)
                .expect("list")
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            v.sort();
            v
        }
    }

    #[test]
    fn test_every_form_of_a_name_resolves() {
        let f = Fixture::new();
        let rec = f.image(1, Format::Oci);
        f.index
            .tag(&normalize_reference("hello-world").expect("ok"), &rec.id)
            .expect("tag");
        let org = f.image(2, Format::DockerArchive);
        f.index.tag("docker.io/org/app:v1", &org.id).expect("tag");
        for r in [
            "hello-world",
            "hello-world:latest",
            "library/hello-world",
            "docker.io/library/hello-world:latest",
            "index.docker.io/library/hello-world",
        ] {
            assert_eq!(f.index.resolve(r).expect(r).id, rec.id, "{r}");
        }
        for r in ["org/app:v1", "docker.io/org/app:v1"] {
            assert_eq!(f.index.resolve(r).expect(r).id, org.id, "{r}");
        }
        assert!(matches!(
            f.index.resolve("org/app"),
            Err(Error::ImageNotFound(_))
        ));
        // One record per name, whichever form tagged it.
        f.index.tag("hello-world:latest", &rec.id).expect("again");
        assert_eq!(
            f.index.tags().expect("tags"),
            vec![
                (
                    "docker.io/library/hello-world:latest".to_string(),
                    rec.id.clone()
                ),
                ("docker.io/org/app:v1".to_string(), org.id.clone()),
            ]
        );
        // Ids, bare or prefixed, and unique prefixes of any length.
        let hex = rec.id.hex().to_string();
        for r in [
            rec.id.to_string(),
            hex.clone(),
            hex[..12].to_string(),
            format!("sha256:{}", &hex[..5]),
        ] {
            assert_eq!(f.index.resolve(&r).expect(&r).id, rec.id, "{r}");
        }
    }

    #[test]
    fn test_name_at_digest() {
        let f = Fixture::new();
        let oci = f.image(1, Format::Oci);
        let legacy = f.image(2, Format::DockerArchive);
        f.index.tag("busybox", &oci.id).expect("tag");
        f.index.tag("org/app:v1", &legacy.id).expect("tag");
        // The manifest digest, when the source had a manifest.
        for r in [
            format!("busybox@{}", oci.manifest),
            format!("docker.io/library/busybox:other@{}", oci.manifest),
        ] {
            assert_eq!(f.index.resolve(&r).expect(&r).id, oci.id, "{r}");
        }
        // Not: skiff's own manifest for a legacy save, another name's image,
        // a name that does not tag it, nor (as in Docker) the image id.
        for r in [
            format!("org/app@{}", legacy.manifest),
            format!("busybox@{}", legacy.id),
            format!("alpine@{}", oci.manifest),
            format!("busybox@{}", oci.id),
            format!("org/app@{}", legacy.id),
        ] {
            let e = f.index.resolve(&r).expect_err(&r);
            assert!(matches!(e, Error::ImageNotFound(_)), "{r}: {e:?}");
        }
        let e = f
            .index
            .resolve(&format!("busybox@{}", oci.id))
            .expect_err("an id");
        assert!(e.to_string().contains("by its id alone"), "{e}");
    }

    #[test]
    fn test_old_form_tags_resolve_show_and_migrate() {
        let f = Fixture::new();
        let a = f.image(1, Format::DockerArchive);
        let b = f.image(2, Format::DockerArchive);
        let c = f.image(3, Format::DockerArchive);
        f.old_tag("busybox:latest", &a.id);
        f.old_tag("skiff-vendor/busybox:latest", &b.id);
        f.old_tag("MyApp:1", &c.id);
        for (r, id) in [
            ("busybox", &a.id),
            ("docker.io/library/busybox:latest", &a.id),
            ("skiff-vendor/busybox", &b.id),
            ("docker.io/skiff-vendor/busybox:latest", &b.id),
            ("MyApp:1", &c.id),
        ] {
            assert_eq!(&f.index.resolve(r).expect(r).id, id, "{r}");
        }
        assert_eq!(
            f.index.tags().expect("tags"),
            vec![
                ("MyApp:1".to_string(), c.id.clone()),
                ("docker.io/library/busybox:latest".to_string(), a.id.clone()),
                (
                    "docker.io/skiff-vendor/busybox:latest".to_string(),
                    b.id.clone()
                ),
            ]
        );
        // Re-tagging migrates: the canonical record replaces the old one.
        f.index.tag("busybox", &b.id).expect("tag");
        assert_eq!(f.index.resolve("busybox:latest").expect("r").id, b.id);
        assert!(!f.files().contains(&"busybox%3Alatest.json".to_string()));
        // A crash between writing the new record and removing the old one
        // leaves both: the canonical record wins.
        f.old_tag("busybox:latest", &a.id);
        assert_eq!(f.index.resolve("busybox").expect("r").id, b.id);
        assert_eq!(f.index.tags_of(&a.id).expect("tags"), Vec::<String>::new());
        // Untagging removes every form.
        assert!(f.index.untag("busybox").expect("untag"));
        assert!(f.index.untag("skiff-vendor/busybox:latest").expect("untag"));
        assert!(f.index.untag("MyApp:1").expect("untag"));
        assert!(f.files().is_empty(), "{:?}", f.files());
        assert!(!f.index.untag("busybox").expect("untag"));
    }

    #[test]
    fn test_ambiguous_and_bad_references() {
        let f = Fixture::new();
        let mut n = 0u8;
        let (a, b) = loop {
            // Two ids sharing a first hex digit.
            let a = f.image(n, Format::Oci);
            let b = f.image(n + 1, Format::Oci);
            if a.id.hex()[..1] == b.id.hex()[..1] {
                break (a, b);
            }
            f.index.remove(&a.id).expect("rm");
            f.index.remove(&b.id).expect("rm");
            n += 2;
        };
        assert_ne!(a.id, b.id);
        let e = f.index.resolve(&a.id.hex()[..1]).expect_err("ambiguous");
        assert!(matches!(e, Error::AmbiguousReference(_)), "{e:?}");
        let e = f.index.resolve("Busybox").expect_err("bad").to_string();
        assert!(e.contains("\"Busybox\"") && e.contains("lowercase"), "{e}");
        let e = f.index.resolve("sha256:xyz").expect_err("bad").to_string();
        assert!(e.contains("sha256:xyz"), "{e}");
    }

    #[test]
    fn test_long_references_fit_a_file_name() {
        let f = Fixture::new();
        let rec = f.image(1, Format::Oci);
        let long = format!("{}/app:v1", ["abcdefghij"; 20].join("/"));
        f.index.tag(&long, &rec.id).expect("tag");
        assert_eq!(f.index.resolve(&long).expect("resolves").id, rec.id);
        assert!(f.files().iter().all(|n| n.len() <= 255));
        assert!(f.index.untag(&long).expect("untag"));
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
