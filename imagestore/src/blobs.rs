//! Where an import's blobs come from: an archive or layout directory
//! ([`Source`]), or a registry ([`crate::pull`]). The OCI walk (index →
//! manifest → config) and the layer path read through this seam, so a pull
//! is planned, checked and unpacked by the same code as an import.

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::source::{Entry, Source};

/// Blobs by digest, and layers by entry name (`blobs/sha256/HEX`).
pub(crate) trait Blobs: Sync {
    /// The input as errors name it: a path, `-`, or a registry reference.
    fn input(&self) -> &str;

    /// An index or manifest, checked against its digest and size.
    fn manifest(&self, digest: &Digest, size: Option<u64>, what: &str) -> Result<Vec<u8>>;

    /// A config blob, checked against its digest and size.
    fn config(&self, digest: &Digest, size: Option<u64>, what: &str) -> Result<Vec<u8>>;

    /// A layer blob (of `size` bytes, when the manifest says), found and
    /// not yet read.
    fn layer(&self, entry: &str, size: Option<u64>, what: &str) -> Result<Entry>;

    /// Where a layer's bytes came from, for errors found after reading it.
    fn place(&self, entry: &str) -> String {
        format!("archive entry {entry}")
    }
}

impl Blobs for Source {
    fn input(&self) -> &str {
        &self.input
    }

    fn manifest(&self, digest: &Digest, size: Option<u64>, what: &str) -> Result<Vec<u8>> {
        read_blob(self, digest, size, what)
    }

    fn config(&self, digest: &Digest, size: Option<u64>, what: &str) -> Result<Vec<u8>> {
        read_blob(self, digest, size, what)
    }

    fn layer(&self, entry: &str, _size: Option<u64>, what: &str) -> Result<Entry> {
        self.entry(entry, what)
    }
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
