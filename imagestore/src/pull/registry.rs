//! A repository at a registry, reached through its endpoints (mirrors in
//! order, then the registry), as the [`Blobs`] an import walks. Each
//! request goes to the first endpoint that serves it; when none does, and
//! some failure was worth another try, the round is repeated after a
//! backoff. Every failure is kept for the message.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use oci_spec::image::{Descriptor, DescriptorBuilder, MediaType};
use reqwest::blocking::Response;
use reqwest::header::CONTENT_TYPE;

use super::blob_reader::{BlobReader, Fetch};
use super::endpoint::{Endpoint, Failure};
use super::retry::Retry;
use crate::blobs::check_bytes;
use crate::blobs::Blobs;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::pull_error::PullError;
use crate::source::{Entry, MAX_JSON};

/// The largest manifest or index accepted (distribution's own limit).
const MAX_MANIFEST: u64 = 4 << 20;
/// What a manifest request accepts.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// A repository's endpoints and what has been fetched from them.
#[derive(Debug, Clone)]
pub(crate) struct Registry {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    /// The reference pulled, as errors name it.
    pub(crate) input: String,
    endpoints: Vec<Endpoint>,
    pub(crate) retry: Retry,
    manifests: Mutex<HashMap<Digest, Vec<u8>>>,
    /// Which endpoints served each layer blob, for errors about its bytes.
    served: Mutex<HashMap<Digest, Vec<String>>>,
    /// Every endpoint that served something, in order.
    used: Mutex<Vec<String>>,
}

impl Registry {
    pub(crate) fn new(input: String, endpoints: Vec<Endpoint>, retry: Retry) -> Registry {
        Registry {
            inner: Arc::new(Inner {
                input,
                endpoints,
                retry,
                manifests: Mutex::new(HashMap::new()),
                served: Mutex::new(HashMap::new()),
                used: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Every endpoint that served something so far, in order.
    pub(crate) fn used(&self) -> Vec<String> {
        self.inner
            .used
            .lock()
            .map(|u| u.clone())
            .unwrap_or_default()
    }

    /// Fetch the index or manifest `reference` (a tag or a digest) names,
    /// and describe it. Its bytes are kept for the walk.
    pub(crate) fn top(&self, reference: &str, pinned: Option<&Digest>) -> Result<Descriptor> {
        let what = format!("manifest {}", self.inner.input);
        let (resp, ep) =
            self.inner
                .fetch(&what, &format!("manifests/{reference}"), MANIFEST_ACCEPT, 0)?;
        let header_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let content_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let data = read_limited(resp, MAX_MANIFEST, &what, &ep)?;
        let digest = Digest::of_bytes(&data);
        if let Some(pinned) = pinned {
            check_bytes(&data, pinned, None, &format!("{what} from {ep}"))?;
        } else if let Some(claimed) = content_digest {
            if claimed != digest.to_string() {
                return Err(bad(
                    &ep,
                    &what,
                    format!(
                        "its Docker-Content-Digest header says {claimed}, its content is {digest}"
                    ),
                ));
            }
        }
        let body_type = serde_json::from_slice::<serde_json::Value>(&data)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            });
        let media_type = body_type.or(header_type).ok_or_else(|| {
            bad(
                &ep,
                &what,
                "neither a Content-Type nor a mediaType says what it is".into(),
            )
        })?;
        let d = DescriptorBuilder::default()
            .media_type(MediaType::from(media_type.as_str()))
            .digest(
                digest
                    .to_string()
                    .parse::<oci_spec::image::Digest>()
                    .map_err(|e| bad(&ep, &what, e.to_string()))?,
            )
            .size(data.len() as u64)
            .build()
            .map_err(|e| bad(&ep, &what, e.to_string()))?;
        if let Ok(mut m) = self.inner.manifests.lock() {
            m.insert(digest, data);
        }
        Ok(d)
    }
}

impl Inner {
    /// GET `path` from the first endpoint that serves it, over up to
    /// `retry.rounds` rounds.
    pub(crate) fn fetch(
        &self,
        what: &str,
        path: &str,
        accept: &str,
        from: u64,
    ) -> Result<(Response, String), PullError> {
        let mut failures: Vec<(String, Failure)> = Vec::new();
        let mut rounds = 0;
        for round in 0..self.retry.rounds.max(1) {
            if round > 0 {
                let pause = self.retry.pause(round);
                tracing::warn!(
                    "{what}: no endpoint served it ({}); trying again in {pause:?}",
                    failures
                        .iter()
                        .map(|(ep, f): &(String, Failure)| format!("{ep}: {}", f.detail()))
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                std::thread::sleep(pause);
            }
            rounds += 1;
            failures.clear();
            for ep in &self.endpoints {
                match ep.get(path, accept, from) {
                    Ok(resp) => {
                        if !failures.is_empty() {
                            tracing::info!("{what}: served by {}", ep.label);
                        }
                        if let Ok(mut used) = self.used.lock() {
                            if !used.contains(&ep.label) {
                                used.push(ep.label.clone());
                            }
                        }
                        return Ok((resp, ep.label.clone()));
                    }
                    Err(f) => {
                        tracing::debug!("{what}: {}: {}", ep.label, f.detail());
                        failures.push((ep.label.clone(), f));
                    }
                }
            }
            // The registry itself answered for good (not found, refused):
            // no mirror will change that by waiting.
            let origin_final = failures
                .last()
                .is_some_and(|(_, f)| !matches!(f, Failure::Retry(_)));
            let any_retry = failures.iter().any(|(_, f)| matches!(f, Failure::Retry(_)));
            if origin_final || !any_retry {
                break;
            }
        }
        let list = || {
            failures
                .iter()
                .map(|(ep, f)| format!("{ep}: {}", f.detail()))
                .collect::<Vec<_>>()
                .join("; ")
        };
        if failures
            .iter()
            .all(|(_, f)| matches!(f, Failure::NotFound(_)))
        {
            return Err(PullError::NotFound {
                what: what.to_string(),
                tried: list(),
            });
        }
        if let Some((ep, f)) = failures
            .iter()
            .rev()
            .find(|(_, f)| matches!(f, Failure::Unauthorized(_)))
        {
            if failures
                .iter()
                .all(|(_, f)| !matches!(f, Failure::Retry(_)))
            {
                return Err(PullError::Unauthorized {
                    endpoint: ep.clone(),
                    what: what.to_string(),
                    detail: f.detail().to_string(),
                });
            }
        }
        Err(PullError::Unreachable {
            what: what.to_string(),
            rounds,
            failures: list(),
        })
    }

    /// Note that `label` served (part of) a layer blob.
    pub(crate) fn served(&self, digest: &Digest, label: &str) {
        if let Ok(mut s) = self.served.lock() {
            let list = s.entry(digest.clone()).or_default();
            if !list.iter().any(|l| l == label) {
                list.push(label.to_string());
            }
        }
    }

    /// A small blob (config) from the first endpoint serving it, checked.
    fn small_blob(&self, digest: &Digest, size: Option<u64>, what: &str) -> Result<Vec<u8>> {
        let what = format!("{what} {digest} of {}", self.input);
        let (resp, ep) = self.fetch(&what, &format!("blobs/{digest}"), "", 0)?;
        let data = read_limited(resp, MAX_JSON, &what, &ep)?;
        check_bytes(&data, digest, size, &format!("{digest} ({what}) from {ep}"))?;
        Ok(data)
    }
}

impl Fetch for Inner {
    fn open(
        &self,
        digest: &Digest,
        what: &str,
        from: u64,
    ) -> Result<(Response, String), PullError> {
        self.fetch(what, &format!("blobs/{digest}"), "", from)
    }

    fn served(&self, digest: &Digest, label: &str) {
        Inner::served(self, digest, label);
    }

    fn retry(&self) -> Retry {
        self.retry
    }
}

impl Blobs for Registry {
    fn input(&self) -> &str {
        &self.inner.input
    }

    fn manifest(&self, digest: &Digest, size: Option<u64>, what: &str) -> Result<Vec<u8>> {
        let cached = self
            .inner
            .manifests
            .lock()
            .ok()
            .and_then(|m| m.get(digest).cloned());
        if let Some(data) = cached {
            check_bytes(&data, digest, size, &format!("{digest} ({what})"))?;
            return Ok(data);
        }
        let what = format!("{what} {digest} of {}", self.inner.input);
        let (resp, ep) =
            self.inner
                .fetch(&what, &format!("manifests/{digest}"), MANIFEST_ACCEPT, 0)?;
        let data = read_limited(resp, MAX_MANIFEST, &what, &ep)?;
        check_bytes(&data, digest, size, &format!("{digest} ({what}) from {ep}"))?;
        Ok(data)
    }

    fn config(&self, digest: &Digest, size: Option<u64>, what: &str) -> Result<Vec<u8>> {
        self.inner.small_blob(digest, size, what)
    }

    fn layer(&self, entry: &str, size: Option<u64>, what: &str) -> Result<Entry> {
        let hex = entry.strip_prefix("blobs/sha256/").unwrap_or(entry);
        let digest = Digest::from_hex(hex)?;
        let inner: Arc<dyn Fetch> = self.inner.clone();
        let what = what.to_string();
        Ok(Entry::remote(
            size.unwrap_or(0),
            Box::new(move || Ok(Box::new(BlobReader::new(inner, digest, size, what)))),
        ))
    }

    fn place(&self, entry: &str) -> String {
        let hex = entry.strip_prefix("blobs/sha256/").unwrap_or(entry);
        let by = Digest::from_hex(hex)
            .ok()
            .and_then(|d| self.inner.served.lock().ok()?.get(&d).cloned())
            .unwrap_or_default();
        if by.is_empty() {
            format!("from {}", self.inner.input)
        } else {
            format!("from {}, served by {}", self.inner.input, by.join(" then "))
        }
    }
}

fn bad(ep: &str, what: &str, detail: String) -> Error {
    Error::Pull(PullError::BadResponse {
        endpoint: ep.to_string(),
        what: what.to_string(),
        detail,
    })
}

/// Read a small body whole, refusing one over `limit` bytes.
fn read_limited(resp: Response, limit: u64, what: &str, ep: &str) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    resp.take(limit + 1)
        .read_to_end(&mut data)
        .map_err(|e| bad(ep, what, format!("reading it failed: {e}")))?;
    if data.len() as u64 > limit {
        return Err(bad(
            ep,
            what,
            format!("it is larger than the {limit}-byte limit"),
        ));
    }
    Ok(data)
}
