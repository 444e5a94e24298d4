//! What an input is, decided once and then passed along as a value:
//!
//! 1. its [`Packaging`], from being a directory or from its first bytes
//!    (a plain tar, or a tar inside gzip or zstd), when it is opened
//!    ([`crate::source`]);
//! 2. its image [`Format`], from the entries at its top level, before it is
//!    planned ([`crate::import`]): `docker save` (legacy), `docker save` of
//!    Docker 25+ (an OCI layout beside `manifest.json`), or OCI.
//!
//! Nothing is decided from a file name.

use std::fmt;

use crate::compression::{self, Compression};

/// How an input's entries are packaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packaging {
    /// A directory: an OCI layout or an unpacked `docker save`.
    Directory,
    /// An uncompressed tar.
    Tar,
    /// A tar inside a gzip or zstd stream.
    Compressed(Compression),
}

impl Packaging {
    /// Sniff a file's or stream's first bytes (at least its first 512 when
    /// it has them).
    pub fn sniff(head: &[u8]) -> Result<Packaging, Unrecognised> {
        if head.is_empty() {
            return Err(Unrecognised::Empty);
        }
        match Compression::detect(head) {
            Compression::None => {}
            c => return Ok(Packaging::Compressed(c)),
        }
        if compression::is_tar_header(head) {
            return Ok(Packaging::Tar);
        }
        if head.len() >= 512 && head[..512].iter().all(|b| *b == 0) {
            // A tar's end-of-archive block first: a valid tar with no entries
            // (`tar cf x --files-from /dev/null`). Planning then says what it
            // lacks (`manifest.json` or `index.json`).
            return Ok(Packaging::Tar);
        }
        Err(if head.starts_with(b"{") || head.starts_with(b"[") {
            Unrecognised::Json
        } else if head.len() < 263 {
            Unrecognised::TooShort
        } else {
            Unrecognised::Other
        })
    }

    /// The outer compression's name, empty when there is none (for reports).
    pub fn wrapper(self) -> &'static str {
        match self {
            Packaging::Compressed(c) => c.name(),
            Packaging::Directory | Packaging::Tar => "",
        }
    }
}

/// Why an input's first bytes are not an image archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unrecognised {
    /// It has no bytes at all.
    #[error("the input is empty")]
    Empty,
    /// It is a JSON document (an `index.json` given instead of its layout).
    #[error("it is JSON; give the directory that holds an OCI layout instead")]
    Json,
    /// It ends before a tar header would.
    #[error("too short or truncated to be a tar archive")]
    TooShort,
    /// Anything else.
    #[error("not a tar archive, gzip or zstd stream, or OCI layout directory")]
    Other,
}

/// The image format of an input, from its top-level entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `docker save` before Docker 25: `manifest.json`, `<id>/layer.tar`.
    DockerArchive,
    /// `docker save` of Docker 25+: an OCI layout (`index.json`, `blobs/`)
    /// beside a `manifest.json` that carries the tags.
    DockerOciLayout,
    /// An OCI layout (`index.json`), as a directory or an archive.
    Oci,
    /// Pulled from a registry (OCI Distribution API).
    Registry,
}

impl Format {
    /// The name recorded with imported images and shown in reports.
    pub fn name(self) -> &'static str {
        match self {
            Format::DockerArchive => "docker-archive",
            Format::DockerOciLayout => "docker-archive (OCI layout)",
            Format::Oci => "oci",
            Format::Registry => "registry",
        }
    }

    /// Decide from which of the marker entries an input has at its top
    /// level; `None` when it has neither `index.json` nor `manifest.json`.
    pub(crate) fn from_markers(index_json: bool, manifest_json: bool) -> Option<Format> {
        match (index_json, manifest_json) {
            (true, true) => Some(Format::DockerOciLayout),
            (true, false) => Some(Format::Oci),
            (false, true) => Some(Format::DockerArchive),
            (false, false) => None,
        }
    }

    /// Whether the input carries a Docker `manifest.json`.
    pub(crate) fn has_docker_manifest(self) -> bool {
        matches!(self, Format::DockerArchive | Format::DockerOciLayout)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_block() -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[257..262].copy_from_slice(b"ustar");
        b
    }

    #[test]
    fn test_packaging_sniff_kinds() {
        assert_eq!(Packaging::sniff(&tar_block()), Ok(Packaging::Tar));
        assert_eq!(
            Packaging::sniff(&[0x1f, 0x8b, 8, 0]),
            Ok(Packaging::Compressed(Compression::Gzip))
        );
        assert_eq!(
            Packaging::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Ok(Packaging::Compressed(Compression::Zstd))
        );
        assert_eq!(Packaging::sniff(b""), Err(Unrecognised::Empty));
        assert_eq!(Packaging::sniff(b"{\"a\":1}"), Err(Unrecognised::Json));
        assert_eq!(Packaging::sniff(b"hello"), Err(Unrecognised::TooShort));
        assert_eq!(Packaging::sniff(&[b'x'; 600]), Err(Unrecognised::Other));
    }

    #[test]
    fn test_packaging_sniff_empty_tar_is_a_tar() {
        // `tar cf x --files-from /dev/null`: 10240 zero bytes.
        assert_eq!(Packaging::sniff(&[0u8; 10240]), Ok(Packaging::Tar));
        assert_eq!(Packaging::sniff(&[0u8; 512]), Ok(Packaging::Tar));
        assert_eq!(Packaging::sniff(&[0u8; 511]), Err(Unrecognised::Other));
    }

    #[test]
    fn test_format_from_markers() {
        assert_eq!(
            Format::from_markers(true, true),
            Some(Format::DockerOciLayout)
        );
        assert_eq!(Format::from_markers(true, false), Some(Format::Oci));
        assert_eq!(
            Format::from_markers(false, true),
            Some(Format::DockerArchive)
        );
        assert_eq!(Format::from_markers(false, false), None);
        assert_eq!(
            Format::DockerOciLayout.name(),
            "docker-archive (OCI layout)"
        );
    }
}
