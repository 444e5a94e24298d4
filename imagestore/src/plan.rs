//! Import plans: what an archive holds, read and verified down to the
//! configs, before any layer is unpacked. Built by [`crate::docker`] and
//! [`crate::oci`], carried out by [`crate::import`].

use oci_spec::image::ImageConfiguration;

use std::io::BufReader;

use crate::compression::Compression;
use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use crate::format::Format;
use crate::platform::Platform;
use crate::source::Source;

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

/// Read a blob by digest from `blobs/sha256/<hex>`, checking digest and size.
pub(crate) fn read_blob(
    source: &Source,
    digest: &Digest,
    size: Option<u64>,
    what: &str,
) -> Result<Vec<u8>> {
    let entry = format!("blobs/sha256/{}", digest.hex());
    if !source.has(&entry) {
        return Err(Error::MissingBlob {
            digest: digest.to_string(),
            what: what.to_string(),
        });
    }
    let data = source.read_small(&entry, what)?;
    check_bytes(&data, digest, size, &format!("{digest} ({what})"))?;
    Ok(data)
}

/// Check bytes against a declared digest and size.
pub(crate) fn check_bytes(
    data: &[u8],
    digest: &Digest,
    size: Option<u64>,
    what: &str,
) -> Result<()> {
    let actual = Digest::of_bytes(data);
    if &actual != digest {
        return Err(Error::DigestMismatch {
            what: what.to_string(),
            expected: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    if let Some(size) = size {
        if size != data.len() as u64 {
            return Err(Error::SizeMismatch {
                what: what.to_string(),
                expected: size,
                actual: data.len() as u64,
            });
        }
    }
    Ok(())
}

/// Parse an image config and return it with its diff_ids.
pub(crate) fn parse_config(data: &[u8], what: &str) -> Result<(ImageConfiguration, Vec<Digest>)> {
    // Check it is JSON at all first, for a clearer message.
    serde_json::from_slice::<serde_json::Value>(data).map_err(|e| Error::BadJson {
        what: what.to_string(),
        detail: e.to_string(),
    })?;
    let cfg = ImageConfiguration::from_reader(data).map_err(|e| Error::BadJson {
        what: what.to_string(),
        detail: e.to_string(),
    })?;
    let diff_ids = cfg
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<Result<Vec<_>>>()?;
    Ok((cfg, diff_ids))
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
pub(crate) fn compute_diff_id(source: &Source, entry: &str, declared: &Digest) -> Result<Digest> {
    let (raw, _) = source.open(entry, &format!("layer {declared}"))?;
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
            what: format!("layer {declared} (archive entry {entry})"),
            expected: declared.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(diff)
}
