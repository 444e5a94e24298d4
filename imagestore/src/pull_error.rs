//! Why a pull failed. Every variant names the reference, registry, endpoint,
//! file or blob concerned.

use std::path::PathBuf;

/// Errors from `skiff image pull`.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The registry configuration file is unreadable or invalid.
    #[error("registry config {path}: {detail}")]
    Config { path: PathBuf, detail: String },
    /// The Docker-style credentials file is unreadable or invalid.
    #[error("auth file {path}: {detail}")]
    AuthFile { path: PathBuf, detail: String },
    /// A CA certificate for a registry cannot be loaded.
    #[error("CA certificate {path} for registry {registry}: {detail}")]
    Certificate {
        registry: String,
        path: PathBuf,
        detail: String,
    },
    /// `--insecure` was asked for a registry that is not on loopback.
    #[error(
        "--insecure (plain HTTP) is only allowed for a registry on loopback, not {registry}; \
         give it TLS, with its CA under the certs directory"
    )]
    InsecureNotLoopback { registry: String },
    /// The registry refused the credentials (or asked for some and none were found).
    #[error("registry {endpoint} refused access to {what}: {detail}")]
    Unauthorized {
        endpoint: String,
        what: String,
        detail: String,
    },
    /// No endpoint has what was asked for.
    #[error("{what} not found: {tried}")]
    NotFound { what: String, tried: String },
    /// Every endpoint failed, after retries; each failure is listed.
    #[error("cannot fetch {what} after {rounds} round(s) over every endpoint: {failures}")]
    Unreachable {
        what: String,
        rounds: u32,
        failures: String,
    },
    /// A registry answered with something that is not what was asked for.
    #[error("{endpoint} served a bad {what}: {detail}")]
    BadResponse {
        endpoint: String,
        what: String,
        detail: String,
    },
}
