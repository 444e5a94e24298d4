//! `skiff image pull`: an image from a registry, over the OCI Distribution
//! API, into the store.
//!
//! - [`config`]: mirrors per registry and the certs directory.
//! - [`auth`]: credentials from a Docker-style auth file; challenges.
//! - [`endpoint`]: one mirror or registry: TLS, authentication, status codes.
//! - [`registry`]: endpoints in order with retries, as the [`Blobs`] the
//!   import walk reads: a pull is planned, verified and unpacked by the same
//!   code as an import, and is as crash-safe (the image is recorded last).
//! - [`blob_reader`]: a layer streamed into the unpacker, resumed with HTTP
//!   Range when the connection breaks.

pub mod auth;
mod blob_reader;
pub mod config;
mod endpoint;
mod registry;
mod retry;

use indicatif::ProgressBar;
use reqwest::Url;
use serde::Serialize;

use crate::blobs::Blobs;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::import::ImportedImage;
use crate::oci::plan_pulled;
use crate::plan::LayerPlan;
use crate::platform::{import_mismatch_warning, Platform};
use crate::reference::ImageRef;
use crate::store::Store;

pub use crate::pull_error::PullError;
pub use auth::AuthFile;
pub use config::{RegistryConfig, DEFAULT_CONFIG};
pub use retry::Retry;

use config::is_loopback_url;
use endpoint::Endpoint;

/// Docker Hub's API endpoint.
const DOCKER_HUB_API: &str = "https://registry-1.docker.io/";

/// Pull options.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Platform to pick from a multi-platform index (default: the host's).
    pub platform: Option<Platform>,
    /// Mirrors per registry, and the certs directory.
    pub config: RegistryConfig,
    /// Mirrors given on the command line, tried before the configured ones.
    pub mirrors: Vec<String>,
    /// Credentials.
    pub auth: AuthFile,
    /// Plain HTTP to the registry (loopback only).
    pub insecure: bool,
    /// Retries.
    pub retry: Retry,
    /// Progress display; hidden by default.
    pub progress: ProgressBar,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: None,
            config: RegistryConfig::default(),
            mirrors: Vec::new(),
            auth: AuthFile::default(),
            insecure: false,
            retry: Retry::default(),
            progress: ProgressBar::hidden(),
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    /// The reference as given.
    pub reference: String,
    /// The digest the reference resolved to at the registry (an index's,
    /// for a multi-platform image).
    pub digest: Digest,
    /// The image now in the store.
    pub image: ImportedImage,
    /// Layers downloaded and unpacked.
    pub layers_downloaded: usize,
    /// Layers the store had already.
    pub layers_reused: usize,
    /// The endpoints that served it, in order (`mirror URL`, `registry URL`).
    pub served_by: Vec<String>,
    /// Platform mismatches, skipped manifests, skipped device nodes.
    pub warnings: Vec<String>,
}

impl Store {
    /// Pull `reference` from its registry (through its mirrors) into the store.
    pub fn pull(&self, reference: &str, opts: &PullOptions) -> Result<PullReport> {
        let parsed = ImageRef::parse(reference)?;
        let registry =
            registry::Registry::new(parsed.to_string(), endpoints(&parsed, opts)?, opts.retry);
        self.clean_temp_if_idle()?;
        let _shared = self.lock_shared()?;
        let session = self.new_session()?;
        let pinned = parsed.typed_digest()?;
        let top = match (&pinned, parsed.tag()) {
            (Some(d), _) => registry.top(&d.to_string(), Some(d))?,
            (None, Some(tag)) => registry.top(tag, None)?,
            (None, None) => registry.top("latest", None)?,
        };
        let top_digest = Digest::parse(top.digest().as_ref())?;
        let refs = match pinned {
            Some(_) => Vec::new(),
            None => vec![parsed.canonical_tag()?],
        };
        let mut plan = plan_pulled(&registry, &top, refs, opts.platform.as_ref())?;
        if plan.images.len() != 1 {
            let names: Vec<String> = plan.images.iter().map(|i| i.describe()).collect();
            return Err(Error::NoImage {
                input: registry.input().to_string(),
                detail: format!(
                    "it names {} images with no platform to choose between them: {}",
                    plan.images.len(),
                    names.join("; ")
                ),
            });
        }
        let img = plan.images.remove(0);
        let mut warnings = plan.warnings;
        if let Some(w) = import_mismatch_warning(reference, &img.platform, opts.platform.as_ref()) {
            warnings.push(w);
        }
        let layers: Vec<LayerPlan> = img.layers.iter().fold(Vec::new(), |mut acc, l| {
            if !acc.iter().any(|x: &LayerPlan| x.chain_id == l.chain_id) {
                acc.push(l.clone());
            }
            acc
        });
        // Downloads wait on the network as much as on the CPU.
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .max(3);
        let (snaps, downloaded, reports) =
            self.ensure_layers(&registry, &session, &layers, workers, &opts.progress)?;
        warnings.extend(reports);
        let repo_digest = format!("{}@{top_digest}", parsed.name());
        let image = self.record_image(&img, &snaps, &[repo_digest])?;
        opts.progress.finish_and_clear();
        Ok(PullReport {
            reference: reference.to_string(),
            digest: top_digest,
            image,
            layers_downloaded: downloaded,
            layers_reused: layers.len() - downloaded,
            served_by: registry.used(),
            warnings,
        })
    }
}

/// The endpoints for a reference: mirrors given, mirrors configured, then
/// the registry itself.
fn endpoints(r: &ImageRef, opts: &PullOptions) -> Result<Vec<Endpoint>> {
    let host = r.registry();
    let repo = r.repository();
    let certs = opts.config.certs_dir();
    let mut out = Vec::new();
    let mut mirrors = Vec::new();
    for m in &opts.mirrors {
        mirrors.push(config::mirror_url(m).map_err(|why| PullError::Config {
            path: "--mirror".into(),
            detail: format!("{m:?}: {why}"),
        })?);
    }
    mirrors.extend(opts.config.mirrors(host));
    for m in mirrors {
        let creds = opts.auth.credentials(&endpoint_host(&m)).cloned();
        out.push(Endpoint::new("mirror", m, repo, creds, &certs)?);
    }
    let origin = if config::canonical_host(host) == "docker.io" {
        Url::parse(DOCKER_HUB_API)
    } else {
        Url::parse(&format!("https://{host}/"))
    }
    .map_err(|e| Error::InvalidReference {
        reference: r.to_string(),
        detail: format!("registry {host} makes no URL: {e}"),
    })?;
    let origin = if opts.insecure {
        let mut plain = origin.clone();
        let _ = plain.set_scheme("http");
        if !is_loopback_url(&plain) {
            return Err(PullError::InsecureNotLoopback {
                registry: host.to_string(),
            }
            .into());
        }
        plain
    } else {
        origin
    };
    let creds = opts.auth.credentials(host).cloned();
    out.push(Endpoint::new("registry", origin, repo, creds, &certs)?);
    Ok(out)
}

/// `host[:port]` of a mirror URL, as auth files key it.
fn endpoint_host(url: &Url) -> String {
    match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    }
}
