//! A derived image: a stored base image plus one more layer (a code
//! package's files), without a rebuild. The new image is written as an OCI
//! layout whose base layer blobs are hard links into the content store, then
//! imported like any layout: the base's snapshots are reused, and only the
//! new layer is unpacked, by the same hostile-input-safe applier.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::import::{ImportOptions, ImportReport};
use crate::source::Input;
use crate::store::Store;

const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// What to add on top of the base.
#[derive(Debug, Clone, Default)]
pub struct Derivation {
    /// The base image's reference in the store.
    pub base: String,
    /// The tag of the new image.
    pub tag: String,
    /// The image's default command (replacing the base's `Cmd`), if given.
    pub cmd: Option<Vec<String>>,
    /// A line for the image's history.
    pub created_by: String,
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { op, path, source }
}

/// Copy `layer` (a tar, plain or gzip) into `blobs` as a plain tar; its
/// digest (which is also its diff id) and size.
fn store_layer(layer: &Path, blobs: &Path) -> Result<(Digest, u64)> {
    let mut f = fs::File::open(layer).map_err(io_err("open", layer))?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).map_err(io_err("read", layer))?;
    let f = fs::File::open(layer).map_err(io_err("open", layer))?;
    let mut input: Box<dyn Read> = if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(flate2::read::GzDecoder::new(io::BufReader::new(f)))
    } else {
        Box::new(io::BufReader::new(f))
    };
    let tmp = blobs.join("layer.partial");
    let mut out = fs::File::create(&tmp).map_err(io_err("create", &tmp))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = input.read(&mut buf).map_err(|source| Error::ReadArchive {
            what: format!("code layer {}", layer.display()),
            source,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io_err("write", &tmp))?;
        size += n as u64;
    }
    // An empty or non-tar layer is refused by the applier at import, with
    // the entry named; here only its framing is checked.
    if size == 0 {
        return Err(Error::ReadArchive {
            what: format!("code layer {}", layer.display()),
            source: io::Error::new(io::ErrorKind::UnexpectedEof, "empty"),
        });
    }
    let digest = Digest::from_hex(&hex::encode(hasher.finalize()))?;
    let dest = blobs.join(digest.hex());
    fs::rename(&tmp, &dest).map_err(io_err("rename", &dest))?;
    Ok((digest, size))
}

fn write_blob(blobs: &Path, data: &[u8]) -> Result<(Digest, u64)> {
    let d = Digest::of_bytes(data);
    let p = blobs.join(d.hex());
    fs::write(&p, data).map_err(io_err("write", &p))?;
    Ok((d, data.len() as u64))
}

impl Store {
    /// Make `d.tag` the base image plus `layer` (a tar or gzip'd tar).
    pub fn derive(&self, d: &Derivation, layer: &Path) -> Result<ImportReport> {
        let base = self.resolve(&d.base)?;
        let config = self.content().read(&base.config)?;
        let mut config: Value = serde_json::from_slice(&config).map_err(|e| Error::BadJson {
            what: format!("config of image {}", base.id),
            detail: e.to_string(),
        })?;
        let session = self.new_session()?;
        let dir = session.temp_path("derive");
        let blobs = dir.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(io_err("create", &blobs))?;

        let mut layers = Vec::new();
        for l in &base.layers {
            // The base's layers are unpacked already, so the import never
            // reads them; a plain layer's blob is not kept at all.
            let src = self.content().path(&l.digest);
            let dst = blobs.join(l.digest.hex());
            if src.exists() && fs::hard_link(&src, &dst).is_err() {
                fs::copy(&src, &dst).map_err(io_err("copy", &src))?;
            }
            layers.push(json!({ "mediaType": l.media_type, "digest": l.digest.to_string(), "size": l.size }));
        }
        let (layer_digest, layer_size) = store_layer(layer, &blobs)?;
        layers.push(json!({ "mediaType": OCI_LAYER, "digest": layer_digest.to_string(), "size": layer_size }));

        let diff_ids = config
            .pointer_mut("/rootfs/diff_ids")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| Error::BadJson {
                what: format!("config of image {}", base.id),
                detail: "no rootfs.diff_ids".into(),
            })?;
        diff_ids.push(Value::String(layer_digest.to_string()));
        if let Some(cmd) = &d.cmd {
            if !config["config"].is_object() {
                config["config"] = json!({});
            }
            config["config"]["Cmd"] = json!(cmd);
        }
        if !config["history"].is_array() {
            config["history"] = json!([]);
        }
        if let Some(h) = config["history"].as_array_mut() {
            h.push(json!({ "created_by": d.created_by }));
        }
        let config = serde_json::to_vec(&config).map_err(|e| Error::BadJson {
            what: "derived config".into(),
            detail: e.to_string(),
        })?;
        let (config_digest, config_size) = write_blob(&blobs, &config)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config_size },
            "layers": layers,
        });
        let manifest = serde_json::to_vec(&manifest).map_err(|e| Error::BadJson {
            what: "derived manifest".into(),
            detail: e.to_string(),
        })?;
        let (manifest_digest, manifest_size) = write_blob(&blobs, &manifest)?;
        let index = json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": OCI_MANIFEST,
                "digest": manifest_digest.to_string(),
                "size": manifest_size,
            }],
        });
        for (name, body) in [
            ("oci-layout", json!({ "imageLayoutVersion": "1.0.0" })),
            ("index.json", index),
        ] {
            let p = dir.join(name);
            fs::write(&p, body.to_string()).map_err(io_err("write", &p))?;
        }
        let report = self.import(
            &Input::Path(dir.clone()),
            &ImportOptions {
                tag: Some(d.tag.clone()),
                ..Default::default()
            },
        );
        let _ = fs::remove_dir_all(&dir);
        report
    }
}
