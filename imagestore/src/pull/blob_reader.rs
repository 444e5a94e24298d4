//! A layer blob read from a registry as one stream, whatever the network
//! does: when the connection breaks, the download resumes from the byte it
//! reached, with an HTTP Range request, at the first endpoint that answers
//! (a mirror that died mid-blob gives way to the next). An endpoint that
//! ignores Range sends the whole blob again, and the part already read is
//! skipped. The bytes are checked against the digest by the caller.

use std::io::{self, Read};
use std::sync::Arc;

use reqwest::blocking::Response;
use reqwest::header::CONTENT_RANGE;
use reqwest::StatusCode;

use super::retry::Retry;
use crate::digest::Digest;
use crate::pull_error::PullError;

/// Where a blob reader (re)opens its blob: the registry's endpoints.
pub(crate) trait Fetch: Send + Sync {
    /// GET the blob from byte `from` on, at the first endpoint serving it:
    /// the response and that endpoint's label.
    fn open(&self, digest: &Digest, what: &str, from: u64)
        -> Result<(Response, String), PullError>;
    /// Note that `label` served (part of) the blob.
    fn served(&self, digest: &Digest, label: &str);
    /// The retry policy.
    fn retry(&self) -> Retry;
}

/// Why a blob could not be reopened.
enum Reopen {
    /// No endpoint served it, after every round.
    Final(io::Error),
    /// One answered, but broke off or did not fit: another break.
    Broke(String),
}

/// The blob `digest`, `size` bytes when the manifest says so.
pub(crate) struct BlobReader {
    registry: Arc<dyn Fetch>,
    digest: Digest,
    size: Option<u64>,
    what: String,
    offset: u64,
    body: Option<Response>,
    /// Breaks since the last byte arrived.
    breaks: u32,
}

impl BlobReader {
    pub(crate) fn new(
        registry: Arc<dyn Fetch>,
        digest: Digest,
        size: Option<u64>,
        what: String,
    ) -> Self {
        BlobReader {
            registry,
            digest,
            size,
            what,
            offset: 0,
            body: None,
            breaks: 0,
        }
    }

    /// Open the blob from `self.offset` on. Every endpoint failing is
    /// final (the fetch retried already); an answer that breaks off or
    /// does not fit is one more break.
    fn open(&mut self) -> Result<Response, Reopen> {
        let what = format!("{} ({})", self.digest, self.what);
        let (mut resp, ep) = self
            .registry
            .open(&self.digest, &what, self.offset)
            .map_err(|e| Reopen::Final(io::Error::other(e)))?;
        self.registry.served(&self.digest, &ep);
        if self.offset == 0 {
            return Ok(resp);
        }
        if resp.status() == StatusCode::PARTIAL_CONTENT {
            let range = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let want = format!("bytes {}-", self.offset);
            if !range.starts_with(&want) {
                return Err(Reopen::Broke(format!(
                    "{ep} answered a request for {want} of blob {} with Content-Range {range:?}",
                    self.digest
                )));
            }
            tracing::info!(
                "blob {}: resumed at byte {} from {ep}",
                self.digest,
                self.offset
            );
            return Ok(resp);
        }
        // No Range support: skip what was read already.
        let skipped = io::copy(&mut (&mut resp).take(self.offset), &mut io::sink())
            .map_err(|e| Reopen::Broke(format!("{ep}: skipping to byte {}: {e}", self.offset)))?;
        if skipped != self.offset {
            return Err(Reopen::Broke(format!(
                "{ep} sent blob {} shorter ({skipped} bytes) than the part already read",
                self.digest
            )));
        }
        tracing::info!(
            "blob {}: {ep} ignores Range; read again up to byte {}",
            self.digest,
            self.offset
        );
        Ok(resp)
    }

    /// Count a break; give up once every round has been used without progress.
    fn broke(&mut self, why: String) -> io::Result<()> {
        self.body = None;
        self.breaks += 1;
        let retry = self.registry.retry();
        if self.breaks >= retry.rounds.max(1) {
            return Err(io::Error::other(format!(
                "blob {} ({}): download broke at byte {} {} times in a row, last: {why}",
                self.digest, self.what, self.offset, self.breaks
            )));
        }
        tracing::warn!(
            "blob {}: download broke at byte {}: {why}; resuming",
            self.digest,
            self.offset
        );
        std::thread::sleep(retry.pause(self.breaks));
        Ok(())
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.size.map(|s| s.saturating_sub(self.offset));
        if left == Some(0) || buf.is_empty() {
            return Ok(0);
        }
        let cap = left.map_or(buf.len(), |l| {
            buf.len().min(l.min(usize::MAX as u64) as usize)
        });
        loop {
            if self.body.is_none() {
                match self.open() {
                    Ok(b) => self.body = Some(b),
                    Err(Reopen::Final(e)) => return Err(e),
                    Err(Reopen::Broke(why)) => {
                        self.broke(why)?;
                        continue;
                    }
                }
            }
            let Some(body) = self.body.as_mut() else {
                continue;
            };
            match body.read(&mut buf[..cap]) {
                Ok(0) if self.size.is_none() => return Ok(0),
                Ok(0) => {
                    let size = self.size.unwrap_or_default();
                    self.broke(format!(
                        "the connection ended at byte {} of {size}",
                        self.offset
                    ))?;
                }
                Ok(n) => {
                    self.offset += n as u64;
                    self.breaks = 0;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.broke(super::endpoint::chain(&e))?,
            }
        }
    }
}
