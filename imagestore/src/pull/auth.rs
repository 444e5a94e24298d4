//! Credentials and challenges: Docker's `config.json` `auths` file, and the
//! `WWW-Authenticate` challenges a registry answers 401 with (Basic, or
//! Bearer with a token service).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

use super::config::canonical_host;
use crate::pull_error::PullError;

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.user)
    }
}

/// Credentials by registry host, from a Docker-style `config.json`.
#[derive(Debug, Clone, Default)]
pub struct AuthFile {
    by_host: BTreeMap<String, Credentials>,
    /// The file read, for messages.
    pub path: Option<PathBuf>,
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl AuthFile {
    /// `~/.docker/config.json`, the default.
    pub fn default_path() -> Option<PathBuf> {
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
    }

    /// Read an auth file. A missing file is empty when `required` is false
    /// (the default path); anything unreadable or invalid is an error
    /// naming the file and the entry.
    pub fn load(path: &Path, required: bool) -> Result<AuthFile, PullError> {
        let bad = |detail: String| PullError::AuthFile {
            path: path.to_path_buf(),
            detail,
        };
        let data = match fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !required => {
                return Ok(AuthFile::default())
            }
            Err(e) => return Err(bad(format!("cannot read it: {e}"))),
        };
        let de = &mut serde_json::Deserializer::from_slice(&data);
        let cfg: DockerConfig = serde_path_to_error::deserialize(de)
            .map_err(|e| bad(format!("at {}: {}", e.path(), e.inner())))?;
        let mut by_host = BTreeMap::new();
        for (key, entry) in cfg.auths {
            let creds = match (&entry.auth, &entry.username, &entry.password) {
                (Some(a), _, _) if !a.is_empty() => decode_auth(a).ok_or_else(|| {
                    bad(format!("auths.{key}.auth is not base64 of USER:PASSWORD"))
                })?,
                (_, Some(u), Some(p)) => Credentials {
                    user: u.clone(),
                    password: p.clone(),
                },
                // An entry kept by a credential helper holds no secret.
                _ => continue,
            };
            by_host.insert(canonical_host(&host_of_key(&key)).to_string(), creds);
        }
        Ok(AuthFile {
            by_host,
            path: Some(path.to_path_buf()),
        })
    }

    /// The credentials for a registry host (`host[:port]`).
    pub(crate) fn credentials(&self, host: &str) -> Option<&Credentials> {
        self.by_host.get(canonical_host(host))
    }
}

/// `https://index.docker.io/v1/` → `index.docker.io`; `host:port` as is.
fn host_of_key(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest).to_string()
}

fn decode_auth(a: &str) -> Option<Credentials> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(a.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (user, password) = s.split_once(':')?;
    Some(Credentials {
        user: user.to_string(),
        password: password.to_string(),
    })
}

/// One `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// `basic` or `bearer`, lowercased.
    pub scheme: String,
    /// Its parameters (`realm`, `service`, `scope`), names lowercased.
    pub params: BTreeMap<String, String>,
}

/// Parse a `WWW-Authenticate` value holding one challenge:
/// `Bearer realm="https://auth/token",service="reg",scope="repository:a:pull"`.
pub(crate) fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = match value.split_once(char::is_whitespace) {
        Some((s, r)) => (s, r.trim_start()),
        None => (value, ""),
    };
    if scheme.is_empty() {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut s = rest;
    while !s.is_empty() {
        let (name, after) = s.split_once('=')?;
        let name = name.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (val, tail) = if let Some(q) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => out.push(chars.next()?.1),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => out.push(c),
                }
            }
            (out, &q[end?..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(name, val);
        s = tail.trim_start();
        s = s.strip_prefix(',').unwrap_or(s).trim_start();
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// A token service's answer.
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_bearer_challenge_with_quoted_commas() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/a:pull,push""#,
        )
        .expect("parses");
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:library/a:pull,push");
        let b = parse_challenge(r#"Basic realm="x""#).expect("basic");
        assert_eq!(b.scheme, "basic");
        assert!(parse_challenge(r#"Bearer realm="unterminated"#).is_none());
    }

    #[test]
    fn test_auth_file_reads_auth_and_user_password_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("config.json");
        let b64 = base64::engine::general_purpose::STANDARD.encode("alice:s3:cret");
        fs::write(
            &p,
            format!(
                r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{b64}"}},
                    "127.0.0.1:5000": {{"username": "bob", "password": "pw"}},
                    "helper.example": {{}}}}, "credsStore": "desktop"}}"#
            ),
        )
        .expect("write");
        let a = AuthFile::load(&p, true).expect("loads");
        let hub = a.credentials("docker.io").expect("hub");
        assert_eq!(
            (hub.user.as_str(), hub.password.as_str()),
            ("alice", "s3:cret")
        );
        assert_eq!(a.credentials("127.0.0.1:5000").expect("local").user, "bob");
        assert!(a.credentials("helper.example").is_none());
        assert!(!format!("{hub:?}").contains("s3:cret"));
    }

    #[test]
    fn test_auth_file_bad_entry_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("config.json");
        fs::write(&p, r#"{"auths": {"r:1": {"auth": "%%%"}}}"#).expect("write");
        let e = AuthFile::load(&p, true).expect_err("bad base64");
        assert!(e.to_string().contains("auths.r:1.auth"), "{e}");
    }
}
