//! Registry settings: mirrors per registry and where CA certificates live,
//! from a JSON file (`/etc/skiff/registries.json` by default):
//!
//! ```json
//! {
//!   "certs_dir": "/etc/skiff/certs.d",
//!   "registries": {
//!     "docker.io": { "mirrors": ["https://mirror.internal:5000"] },
//!     "registry.internal:5443": { "mirrors": ["http://127.0.0.1:5001"] }
//!   }
//! }
//! ```
//!
//! Mirrors are tried in order, then the registry itself, as Docker's
//! `registry-mirrors` are. A mirror serves the same repository names under
//! `/v2/` as the registry it mirrors. Plain `http://` mirrors are accepted
//! only on loopback.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use reqwest::Url;
use serde::Deserialize;

use crate::pull_error::PullError;

/// Where the registry config is read from unless another is given.
pub const DEFAULT_CONFIG: &str = "/etc/skiff/registries.json";
/// Where per-registry CA certificates live unless the config says otherwise:
/// `DIR/HOST[:PORT]/*.crt`, as Docker's `certs.d`.
pub const DEFAULT_CERTS_DIR: &str = "/etc/skiff/certs.d";

/// The parsed registry config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// The `certs.d`-style directory of CA certificates.
    #[serde(default)]
    pub certs_dir: Option<PathBuf>,
    /// Settings by registry host (`docker.io`, `host:port`).
    #[serde(default)]
    pub registries: BTreeMap<String, RegistrySettings>,
}

/// One registry's settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    /// Mirror base URLs, tried in order before the registry.
    #[serde(default)]
    pub mirrors: Vec<String>,
}

impl RegistryConfig {
    /// Read a config file. A missing file is `None` when `required` is
    /// false (the default path); every other problem is an error naming it.
    pub fn load(path: &Path, required: bool) -> Result<Option<RegistryConfig>, PullError> {
        let bad = |detail: String| PullError::Config {
            path: path.to_path_buf(),
            detail,
        };
        let data = match fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !required => return Ok(None),
            Err(e) => return Err(bad(format!("cannot read it: {e}"))),
        };
        let de = &mut serde_json::Deserializer::from_slice(&data);
        let cfg: RegistryConfig = serde_path_to_error::deserialize(de)
            .map_err(|e| bad(format!("at {}: {}", e.path(), e.inner())))?;
        for (host, settings) in &cfg.registries {
            if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
                return Err(bad(format!(
                    "registries key {host:?} is not a registry host (HOST or HOST:PORT)"
                )));
            }
            for (i, m) in settings.mirrors.iter().enumerate() {
                mirror_url(m)
                    .map_err(|why| bad(format!("registries.{host}.mirrors[{i}] {m:?}: {why}")))?;
            }
        }
        Ok(Some(cfg))
    }

    /// The mirrors configured for `registry` (`docker.io` also answers to
    /// `index.docker.io` and `registry-1.docker.io`), as URLs.
    pub fn mirrors(&self, registry: &str) -> Vec<Url> {
        let key = canonical_host(registry);
        self.registries
            .iter()
            .filter(|(k, _)| canonical_host(k) == key)
            .flat_map(|(_, s)| s.mirrors.iter().filter_map(|m| mirror_url(m).ok()))
            .collect()
    }

    /// The certs directory in effect.
    pub fn certs_dir(&self) -> PathBuf {
        self.certs_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CERTS_DIR))
    }
}

/// Docker Hub's several names, as one.
pub(crate) fn canonical_host(host: &str) -> &str {
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        h => h,
    }
}

/// Parse a mirror's base URL: http(s), a host, no query or fragment; plain
/// HTTP only on loopback.
pub(crate) fn mirror_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("not a URL ({e})"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_url(&url) => {}
        "http" => return Err("plain http:// is only allowed for a mirror on loopback".into()),
        other => return Err(format!("scheme {other}: is not http or https")),
    }
    if url.host().is_none() {
        return Err("it names no host".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a mirror URL takes no query or fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("put credentials in the auth file, not in the URL".into());
    }
    Ok(url)
}

/// Whether a URL's host is a loopback address or `localhost`.
pub(crate) fn is_loopback_url(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(json: &str) -> Result<Option<RegistryConfig>, PullError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("registries.json");
        fs::write(&p, json).expect("write");
        RegistryConfig::load(&p, true)
    }

    #[test]
    fn test_registry_config_mirrors_in_order_and_hub_aliases() {
        let cfg = load(
            r#"{"registries": {"docker.io": {"mirrors": ["https://a.example", "http://127.0.0.1:5001/"]}}}"#,
        )
        .expect("ok")
        .expect("some");
        let m: Vec<String> = cfg
            .mirrors("index.docker.io")
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(m, ["https://a.example/", "http://127.0.0.1:5001/"]);
        assert!(cfg.mirrors("quay.io").is_empty());
    }

    #[test]
    fn test_registry_config_errors_name_the_entry() {
        let e = load(r#"{"registries": {"r:1": {"mirrors": ["http://10.0.0.5:5000"]}}}"#)
            .expect_err("plain http off loopback");
        let msg = e.to_string();
        assert!(msg.contains("registries.r:1.mirrors[0]"), "{msg}");
        assert!(msg.contains("loopback"), "{msg}");
        let e = load(r#"{"registries": {"r": {"mirors": []}}}"#).expect_err("unknown field");
        assert!(e.to_string().contains("mirors"), "{e}");
        let e = load(r#"{"registries": {"a/b": {}}}"#).expect_err("bad key");
        assert!(e.to_string().contains("\"a/b\""), "{e}");
    }

    #[test]
    fn test_registry_config_missing_default_is_none_but_named_file_is_an_error() {
        let p = Path::new("/nonexistent/registries.json");
        assert!(RegistryConfig::load(p, false).expect("ok").is_none());
        let e = RegistryConfig::load(p, true).expect_err("required");
        assert!(
            e.to_string().contains("/nonexistent/registries.json"),
            "{e}"
        );
    }
}
