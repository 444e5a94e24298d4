//! Helpers for building image archives in tests, hostile ones included.
//!
//! [`TarBuilder`] writes raw 512-byte GNU headers with the name and link
//! fields set byte for byte, so entries such as `../../etc/passwd` or
//! `/etc/shadow` can be made: `tar::Builder`'s path setters refuse them.
//! [`DockerSave`] assembles a legacy `docker save` archive around raw layers
//! and [`write_oci_layout`] an OCI layout directory with gzip layers; both
//! compute correct configs (`rootfs.diff_ids`) unless a test overrides them.

#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// Hex sha256 of some bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `sha256:<hex>` of some bytes.
pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// Gzip bytes (header mtime 0, so the output is reproducible).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

/// The uncompressed form of a layer blob (gunzipped when it is gzip).
pub fn uncompressed(data: &[u8]) -> Vec<u8> {
    if data.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(data)
            .read_to_end(&mut out)
            .expect("test layer is valid gzip");
        out
    } else {
        data.to_vec()
    }
}

/// The diff_id of a layer blob as stored.
pub fn diff_id_of(stored: &[u8]) -> String {
    digest_of(&uncompressed(stored))
}

/// This host's platform architecture, in OCI naming.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        a => a,
    }
}

/// Owner, mode and mtime of a tar entry.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
        }
    }
}

impl Meta {
    pub fn mode(mode: u32) -> Meta {
        Meta {
            mode,
            ..Meta::default()
        }
    }
}

/// A tar stream written header by header, with no checks on names.
#[derive(Debug, Clone, Default)]
pub struct TarBuilder {
    buf: Vec<u8>,
}

impl TarBuilder {
    pub fn new() -> TarBuilder {
        TarBuilder::default()
    }

    /// Append one entry. `name` and `link` go into the header verbatim
    /// (at most 100 bytes each); `data` follows, padded to 512 bytes.
    pub fn raw(
        &mut self,
        kind: tar::EntryType,
        name: &[u8],
        link: Option<&[u8]>,
        data: &[u8],
        meta: Meta,
        device: Option<(u32, u32)>,
    ) -> &mut Self {
        assert!(name.len() <= 100, "test entry name too long: {name:?}");
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        if let Some(link) = link {
            assert!(link.len() <= 100, "test link name too long: {link:?}");
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(meta.mode);
        h.set_uid(meta.uid);
        h.set_gid(meta.gid);
        h.set_mtime(meta.mtime);
        if let Some((major, minor)) = device {
            h.set_device_major(major)
                .expect("gnu header has device fields");
            h.set_device_minor(minor)
                .expect("gnu header has device fields");
        }
        h.set_cksum();
        self.buf.extend_from_slice(h.as_bytes());
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.dir_meta(name, Meta::mode(0o755))
    }

    pub fn dir_meta(&mut self, name: &str, meta: Meta) -> &mut Self {
        self.raw(
            tar::EntryType::Directory,
            name.as_bytes(),
            None,
            b"",
            meta,
            None,
        )
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.file_meta(name, data, Meta::default())
    }

    pub fn file_meta(&mut self, name: &str, data: &[u8], meta: Meta) -> &mut Self {
        self.raw(
            tar::EntryType::Regular,
            name.as_bytes(),
            None,
            data,
            meta,
            None,
        )
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.symlink_meta(name, target, Meta::mode(0o777))
    }

    pub fn symlink_meta(&mut self, name: &str, target: &str, meta: Meta) -> &mut Self {
        self.raw(
            tar::EntryType::Symlink,
            name.as_bytes(),
            Some(target.as_bytes()),
            b"",
            meta,
            None,
        )
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(
            tar::EntryType::Link,
            name.as_bytes(),
            Some(target.as_bytes()),
            b"",
            Meta::default(),
            None,
        )
    }

    pub fn char_dev(&mut self, name: &str, major: u32, minor: u32) -> &mut Self {
        self.raw(
            tar::EntryType::Char,
            name.as_bytes(),
            None,
            b"",
            Meta::mode(0o666),
            Some((major, minor)),
        )
    }

    pub fn block_dev(&mut self, name: &str, major: u32, minor: u32) -> &mut Self {
        self.raw(
            tar::EntryType::Block,
            name.as_bytes(),
            None,
            b"",
            Meta::mode(0o660),
            Some((major, minor)),
        )
    }

    /// A PAX extended header (`x`) that applies to the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut body = Vec::new();
        for (key, value) in records {
            // "<len> <key>=<value>\n", where <len> counts itself.
            let rest = key.len() + value.len() + 3;
            let mut len = rest + rest.to_string().len();
            if len.to_string().len() != (len - rest) {
                len = rest + len.to_string().len();
            }
            body.extend_from_slice(format!("{len} {key}=").as_bytes());
            body.extend_from_slice(value);
            body.push(b'\n');
        }
        self.raw(
            tar::EntryType::XHeader,
            b"./PaxHeaders/entry",
            None,
            &body,
            Meta::default(),
            None,
        )
    }

    /// The stream so far plus the two zero blocks that end an archive.
    pub fn finish(&self) -> Vec<u8> {
        let mut out = self.buf.clone();
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
    }
}

/// A tar stream of named regular files (for outer archives).
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut t = TarBuilder::new();
    for (name, data) in files {
        t.file(name, data);
    }
    t.finish()
}

/// An image config for the host's platform with the given diff_ids.
pub fn config_json(diff_ids: &[String]) -> Vec<u8> {
    let history: Vec<serde_json::Value> = diff_ids
        .iter()
        .map(|_| serde_json::json!({"created_by": "skiff test"}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": host_arch(),
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }))
    .expect("config serialises")
}

/// What [`DockerSave::image`] put into the archive.
#[derive(Debug, Clone)]
pub struct SavedImage {
    /// `sha256:<hex>` of the config (the image id).
    pub config_digest: String,
    /// The config's entry name, `<hex>.json`.
    pub config_entry: String,
    /// `<id>/layer.tar` entry names, bottom first.
    pub layer_entries: Vec<String>,
    /// The diff_ids the config declares.
    pub diff_ids: Vec<String>,
}

/// A legacy `docker save` archive: `manifest.json`, `<hex>.json` configs
/// and `<id>/layer.tar` layers.
#[derive(Debug, Clone, Default)]
pub struct DockerSave {
    /// The entries so far; tests may append hostile ones.
    pub tar: TarBuilder,
    /// `manifest.json` entries so far.
    pub manifest: Vec<serde_json::Value>,
    count: usize,
}

impl DockerSave {
    pub fn new() -> DockerSave {
        DockerSave::default()
    }

    /// Add an image made of `layers` (each as stored: a plain or gzip tar),
    /// with a correct config.
    pub fn image(&mut self, layers: &[Vec<u8>], tags: &[&str]) -> SavedImage {
        self.image_with(layers, tags, None)
    }

    /// Add an image whose config declares `diff_ids` instead of the real ones.
    pub fn image_with(
        &mut self,
        layers: &[Vec<u8>],
        tags: &[&str],
        diff_ids: Option<Vec<String>>,
    ) -> SavedImage {
        let diff_ids = diff_ids.unwrap_or_else(|| layers.iter().map(|l| diff_id_of(l)).collect());
        let config = config_json(&diff_ids);
        let config_hex = sha256_hex(&config);
        let config_entry = format!("{config_hex}.json");
        self.tar.file(&config_entry, &config);
        let mut layer_entries = Vec::new();
        for (i, layer) in layers.iter().enumerate() {
            self.count += 1;
            let id = sha256_hex(format!("{}-{}-{i}", self.count, sha256_hex(layer)).as_bytes());
            let entry = format!("{id}/layer.tar");
            self.tar.dir(&format!("{id}/"));
            self.tar.file(&entry, layer);
            layer_entries.push(entry);
        }
        self.manifest.push(serde_json::json!({
            "Config": config_entry,
            "RepoTags": tags,
            "Layers": layer_entries,
        }));
        SavedImage {
            config_digest: format!("sha256:{config_hex}"),
            config_entry,
            layer_entries,
            diff_ids,
        }
    }

    /// The archive with `manifest.json` listing every image added.
    pub fn bytes(&self) -> Vec<u8> {
        let manifest = serde_json::to_vec(&self.manifest).expect("manifest serialises");
        self.bytes_with_manifest(&manifest)
    }

    /// The archive with the given bytes as `manifest.json`.
    pub fn bytes_with_manifest(&self, manifest: &[u8]) -> Vec<u8> {
        let mut t = self.tar.clone();
        t.file("manifest.json", manifest);
        t.finish()
    }
}

/// An OCI image layout directory written by [`write_oci_layout`].
#[derive(Debug, Clone)]
pub struct OciLayout {
    pub dir: PathBuf,
    /// `sha256:<hex>` of the image manifest.
    pub manifest_digest: String,
    /// `sha256:<hex>` of the config.
    pub config_digest: String,
    /// `sha256:<hex>` of each (gzip) layer blob, bottom first.
    pub layer_digests: Vec<String>,
    /// The diff_ids the config declares.
    pub diff_ids: Vec<String>,
}

impl OciLayout {
    /// The file holding a blob.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join("blobs/sha256").join(hex)
    }
}

fn put_blob(dir: &Path, data: &[u8]) -> String {
    let d = digest_of(data);
    fs::write(dir.join("blobs/sha256").join(sha256_hex(data)), data).expect("write test blob");
    d
}

/// Write an OCI layout at `dir` holding one image whose layers are the
/// given tars, gzip-compressed. The index entry carries `ref_name` as
/// `org.opencontainers.image.ref.name` when given.
pub fn write_oci_layout(dir: &Path, layer_tars: &[Vec<u8>], ref_name: Option<&str>) -> OciLayout {
    write_oci_layout_with(dir, layer_tars, ref_name, None)
}

/// Like [`write_oci_layout`], with the config declaring `diff_ids` instead
/// of the real ones.
pub fn write_oci_layout_with(
    dir: &Path,
    layer_tars: &[Vec<u8>],
    ref_name: Option<&str>,
    diff_ids: Option<Vec<String>>,
) -> OciLayout {
    fs::create_dir_all(dir.join("blobs/sha256")).expect("create test layout");
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("write oci-layout");
    let real: Vec<String> = layer_tars.iter().map(|t| digest_of(t)).collect();
    let diff_ids = diff_ids.unwrap_or(real);
    let mut layers = Vec::new();
    let mut layer_digests = Vec::new();
    for t in layer_tars {
        let gz = gzip(t);
        let d = put_blob(dir, &gz);
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d,
            "size": gz.len(),
        }));
        layer_digests.push(d);
    }
    let config = config_json(&diff_ids);
    let config_digest = put_blob(dir, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": layers,
    }))
    .expect("manifest serialises");
    let manifest_digest = put_blob(dir, &manifest);
    let mut desc = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest,
        "size": manifest.len(),
    });
    if let Some(r) = ref_name {
        desc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": r});
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [desc],
    }))
    .expect("index serialises");
    fs::write(dir.join("index.json"), index).expect("write index.json");
    OciLayout {
        dir: dir.to_path_buf(),
        manifest_digest,
        config_digest,
        layer_digests,
        diff_ids,
    }
}
