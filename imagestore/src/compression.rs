//! Compression, detected from a stream's first bytes (media types are only
//! a hint: tools label layers inconsistently).
//!
//! This is the one place that looks at magic bytes: the gzip and zstd
//! headers here, and the tar header's `ustar` magic ([`is_tar_header`]).
//! Archives ([`crate::format::Packaging`]) and layers are both sniffed
//! through it.

use std::io::{self, BufRead, Read};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (one or more members, so eStargz reads as plain gzip).
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// Detect from magic bytes.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The compression's name in messages and reports: `gzip`, `zstd`, or
    /// empty for none.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The OCI media type for a layer so compressed.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// Wrap a buffered reader in the matching decoder, detecting first.
    pub fn decoder<'a, R: BufRead + 'a>(
        mut reader: R,
    ) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
        let c = Compression::detect(reader.fill_buf()?);
        Ok((c, c.wrap(reader)?))
    }

    /// Wrap a buffered reader in this compression's decoder (detected
    /// already).
    pub fn wrap<'a, R: BufRead + 'a>(self, reader: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(reader),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
            Compression::Zstd => Box::new(zstd::Decoder::with_buffer(reader)?),
        })
    }
}

/// The offset of a tar header's `ustar` magic (POSIX and GNU tars).
const TAR_MAGIC_AT: usize = 257;

/// Whether `head` starts with a tar header: its `ustar` magic, and enough
/// bytes after it for the version field.
pub fn is_tar_header(head: &[u8]) -> bool {
    head.len() > TAR_MAGIC_AT + 5 && &head[TAR_MAGIC_AT..TAR_MAGIC_AT + 5] == b"ustar"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_compression_detect_magic() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"plain"), Compression::None);
        assert_eq!(Compression::detect(&[]), Compression::None);
    }

    #[test]
    fn test_is_tar_header_needs_magic_and_length() {
        let mut block = vec![0u8; 512];
        block[257..262].copy_from_slice(b"ustar");
        assert!(is_tar_header(&block));
        assert!(!is_tar_header(&block[..262]));
        assert!(!is_tar_header(&[0u8; 512]));
    }
}
