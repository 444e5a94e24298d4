//! sha256 digests: parsing, validation and streaming computation.
//!
//! A [`Digest`] always holds 64 lowercase hex characters, so joining it to a
//! path can never escape the directory it is joined to.

use std::fmt;
use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// A validated `sha256:<64 hex>` content digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parse `sha256:<hex>`. Other algorithms are refused.
    pub fn parse(s: &str) -> Result<Self> {
        let Some((algo, hex)) = s.split_once(':') else {
            return Err(Error::InvalidDigest {
                digest: s.to_string(),
                detail: "expected ALGORITHM:HEX",
            });
        };
        if algo != "sha256" {
            return Err(Error::InvalidDigest {
                digest: s.to_string(),
                detail: "only sha256 is supported",
            });
        }
        Self::from_hex(hex).map_err(|_| Error::InvalidDigest {
            digest: s.to_string(),
            detail: "expected 64 lowercase hex characters",
        })
    }

    /// Build from 64 lowercase hex characters.
    pub fn from_hex(hex: &str) -> Result<Self> {
        let ok = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !ok {
            return Err(Error::InvalidDigest {
                digest: hex.to_string(),
                detail: "expected 64 lowercase hex characters",
            });
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }

    /// Digest of a byte slice.
    pub fn of_bytes(data: &[u8]) -> Self {
        Digest {
            hex: hex::encode(Sha256::digest(data)),
        }
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex characters, as `docker images` shows ids.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }

    /// Chain ID of a layer stacked on `parent` (OCI image spec).
    pub fn chain(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
        match parent {
            None => diff_id.clone(),
            Some(p) => Digest::of_bytes(format!("{p} {diff_id}").as_bytes()),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A writer that hashes and counts everything written through it.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wrap `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The digest and byte count of what was written, and the writer.
    pub fn finish(self) -> (Digest, u64, W) {
        let hex = hex::encode(self.hasher.finalize());
        (Digest { hex }, self.count, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts everything read through it.
#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wrap `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Read the rest of the stream, so the digest covers all of it.
    pub fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(drop)
    }

    /// The wrapped reader (reads through it are not hashed).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The digest and byte count of what was read so far.
    pub fn finish(self) -> (Digest, u64, R) {
        let hex = hex::encode(self.hasher.finalize());
        (Digest { hex }, self.count, self.inner)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A reader that copies everything read through it into a writer.
///
/// A failure of the *writer* (a full disk) is kept aside, so that the
/// caller can report it as the write failure it is rather than as a bad
/// input stream: see [`TeeReader::take_write_error`].
#[derive(Debug)]
pub struct TeeReader<R, W> {
    inner: R,
    out: Option<W>,
    write_error: Option<io::Error>,
}

impl<R: Read, W: Write> TeeReader<R, W> {
    /// Copy what `inner` yields into `out` (when given).
    pub fn new(inner: R, out: Option<W>) -> Self {
        TeeReader {
            inner,
            out,
            write_error: None,
        }
    }

    /// The error of a failed write into the copy, if one failed.
    pub fn take_write_error(&mut self) -> Option<io::Error> {
        self.write_error.take()
    }

    /// Give back the writer.
    pub fn into_writer(self) -> Option<W> {
        self.out
    }
}

impl<R: Read, W: Write> Read for TeeReader<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.write_error.is_some() {
            return Err(io::Error::other("the copy of this stream failed to write"));
        }
        let n = self.inner.read(buf)?;
        if let Some(out) = self.out.as_mut() {
            if let Err(e) = out.write_all(&buf[..n]) {
                let msg = format!("the copy of this stream failed to write: {e}");
                self.write_error = Some(e);
                return Err(io::Error::other(msg));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_digest_parse_rejects_traversal_and_other_algorithms() {
        assert!(Digest::parse("sha256:../../etc/passwd").is_err());
        assert!(Digest::parse("sha512:abcd").is_err());
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
        let d = Digest::parse(&format!("sha256:{}", "a".repeat(64))).expect("valid");
        assert_eq!(d.hex(), "a".repeat(64));
    }

    #[test]
    fn test_digest_chain_matches_spec_formula() {
        let a = Digest::of_bytes(b"a");
        let b = Digest::of_bytes(b"b");
        assert_eq!(Digest::chain(None, &a), a);
        let expect = Digest::of_bytes(format!("{a} {b}").as_bytes());
        assert_eq!(Digest::chain(Some(&a), &b), expect);
    }

    /// A writer that is always full.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn test_tee_reader_keeps_the_write_error_apart() {
        let mut t = TeeReader::new(&b"data"[..], Some(Full));
        let mut buf = [0u8; 8];
        assert!(t.read(&mut buf).is_err());
        let e = t.take_write_error().expect("the write error is kept");
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    }

    #[test]
    fn test_hashing_reader_counts_and_hashes() {
        let mut r = HashingReader::new(&b"hello"[..]);
        r.drain().expect("drain");
        let (d, n, _) = r.finish();
        assert_eq!(n, 5);
        assert_eq!(d, Digest::of_bytes(b"hello"));
    }
}
