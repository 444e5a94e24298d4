//! Layer compression, detected from the stream's first bytes (media types
//! are only a hint: tools label layers inconsistently).

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
        let dec: Box<dyn Read + 'a> = match c {
            Compression::None => Box::new(reader),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
            Compression::Zstd => Box::new(zstd::Decoder::with_buffer(reader)?),
        };
        Ok((c, dec))
    }
}
