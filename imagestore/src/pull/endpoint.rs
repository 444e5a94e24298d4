//! One place a repository's content is fetched from: a mirror or the
//! registry itself. A request answered 401 is authenticated once, as the
//! challenge asks (Basic, or a Bearer token from the token service), and the
//! header is kept for the endpoint's later requests.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, RANGE, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};

use super::auth::{parse_challenge, Challenge, Credentials, TokenResponse};
use super::config::is_loopback_url;
use crate::pull_error::PullError;

/// How long to wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request, or one read of a body, may stall.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest token-service answer read.
const MAX_TOKEN_ANSWER: u64 = 1 << 20;

/// Why one request to one endpoint failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The endpoint does not have it (404).
    NotFound(String),
    /// Access refused, or credentials missing.
    Unauthorized(String),
    /// Worth another try: a connection error, a 5xx, 429.
    Retry(String),
    /// Not worth another try at this endpoint.
    Fatal(String),
}

impl Failure {
    pub(crate) fn detail(&self) -> &str {
        match self {
            Failure::NotFound(s)
            | Failure::Unauthorized(s)
            | Failure::Retry(s)
            | Failure::Fatal(s) => s,
        }
    }
}

/// A mirror or the registry, for one repository.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// Base URL, ending in `/`.
    base: Url,
    /// How messages name it (`mirror http://127.0.0.1:5001/`).
    pub label: String,
    client: Client,
    creds: Option<Credentials>,
    /// The Authorization header learnt from a challenge.
    auth: Mutex<Option<HeaderValue>>,
    repo: String,
}

impl Endpoint {
    /// An endpoint at `base` for `repo`. Its client trusts, beyond the
    /// roots built in (Mozilla's, by `webpki-roots`; not the system's
    /// store), every `*.crt` in `certs_dir/HOST[:PORT]/`.
    pub(crate) fn new(
        kind: &str,
        mut base: Url,
        repo: &str,
        creds: Option<Credentials>,
        certs_dir: &Path,
    ) -> Result<Endpoint, PullError> {
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let host = host_port(&base);
        let mut builder = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(STALL_TIMEOUT)
            .user_agent(concat!("skiff/", env!("CARGO_PKG_VERSION")));
        if base.scheme() == "https" {
            for (path, pem) in ca_files(&certs_dir.join(&host), &host)? {
                let cert =
                    reqwest::Certificate::from_pem(&pem).map_err(|e| PullError::Certificate {
                        registry: host.clone(),
                        path: path.clone(),
                        detail: format!("not a PEM certificate: {e}"),
                    })?;
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| PullError::Certificate {
            registry: host.clone(),
            path: certs_dir.join(&host),
            detail: format!("cannot set up TLS: {}", chain(&e)),
        })?;
        Ok(Endpoint {
            label: format!("{kind} {base}"),
            base,
            client,
            creds,
            auth: Mutex::new(None),
            repo: repo.to_string(),
        })
    }

    /// GET `/v2/REPO/PATH`, from byte `from` on when it is not 0.
    pub(crate) fn get(&self, path: &str, accept: &str, from: u64) -> Result<Response, Failure> {
        let url = self
            .base
            .join(&format!("v2/{}/{path}", self.repo))
            .map_err(|e| Failure::Fatal(format!("bad URL: {e}")))?;
        let mut authenticated = false;
        loop {
            let mut req = self.client.get(url.clone());
            if !accept.is_empty() {
                req = req.header(ACCEPT, accept);
            }
            if from > 0 {
                req = req.header(RANGE, format!("bytes={from}-"));
            }
            if let Some(h) = self.auth.lock().ok().and_then(|a| a.clone()) {
                req = req.header(AUTHORIZATION, h);
            }
            let resp = req.send().map_err(|e| Failure::Retry(chain(&e)))?;
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            match status {
                // A redirect target's challenge is not this endpoint's to
                // answer with its credentials.
                StatusCode::UNAUTHORIZED
                    if !authenticated && same_origin(resp.url(), &self.base) =>
                {
                    let challenge = resp
                        .headers()
                        .get_all(WWW_AUTHENTICATE)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .find_map(parse_challenge)
                        .ok_or_else(|| {
                            Failure::Unauthorized(
                                "HTTP 401 with no WWW-Authenticate challenge".into(),
                            )
                        })?;
                    let header = self.answer(&challenge)?;
                    if let Ok(mut a) = self.auth.lock() {
                        *a = Some(header);
                    }
                    authenticated = true;
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    let who = match &self.creds {
                        Some(c) => format!("as user {:?}", c.user),
                        None => "anonymously".to_string(),
                    };
                    return Err(Failure::Unauthorized(format!(
                        "HTTP {} {who}{}",
                        status.as_u16(),
                        error_body(resp)
                    )));
                }
                StatusCode::NOT_FOUND => {
                    return Err(Failure::NotFound(format!("HTTP 404{}", error_body(resp))))
                }
                s if s.is_server_error()
                    || s == StatusCode::TOO_MANY_REQUESTS
                    || s == StatusCode::REQUEST_TIMEOUT =>
                {
                    return Err(Failure::Retry(format!(
                        "HTTP {}{}",
                        s.as_u16(),
                        error_body(resp)
                    )))
                }
                s => {
                    return Err(Failure::Fatal(format!(
                        "HTTP {}{}",
                        s.as_u16(),
                        error_body(resp)
                    )))
                }
            }
        }
    }

    /// The Authorization header that answers a challenge.
    fn answer(&self, challenge: &Challenge) -> Result<HeaderValue, Failure> {
        match challenge.scheme.as_str() {
            "basic" => {
                let c = self.creds.as_ref().ok_or_else(|| {
                    Failure::Unauthorized(
                        "the registry asks for a user name and password (Basic), and the auth \
                         file has none for it"
                            .into(),
                    )
                })?;
                sensitive(&basic(c))
            }
            "bearer" => {
                let token = self.token(challenge)?;
                sensitive(&format!("Bearer {token}"))
            }
            other => Err(Failure::Unauthorized(format!(
                "unsupported authentication scheme {other:?}"
            ))),
        }
    }

    /// Fetch a token from the challenge's token service.
    fn token(&self, challenge: &Challenge) -> Result<String, Failure> {
        let realm = challenge
            .params
            .get("realm")
            .ok_or_else(|| Failure::Unauthorized("Bearer challenge without a realm".into()))?;
        let mut url = Url::parse(realm).map_err(|e| {
            Failure::Unauthorized(format!("token realm {realm:?} is not a URL: {e}"))
        })?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback_url(&url) => {}
            _ => {
                return Err(Failure::Unauthorized(format!(
                    "token realm {realm} is not https; credentials are not sent to it"
                )))
            }
        }
        let scope = challenge
            .params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| format!("repository:{}:pull", self.repo));
        {
            let mut q = url.query_pairs_mut();
            if let Some(service) = challenge.params.get("service") {
                q.append_pair("service", service);
            }
            q.append_pair("scope", &scope);
        }
        let mut req = self.client.get(url);
        if let Some(c) = &self.creds {
            req = req.header(AUTHORIZATION, sensitive(&basic(c))?);
        }
        let resp = req
            .send()
            .map_err(|e| Failure::Retry(format!("token service {realm}: {}", chain(&e))))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let who = match &self.creds {
                Some(c) => format!("the credentials of user {:?}", c.user),
                None => "anonymous access (no credentials in the auth file)".to_string(),
            };
            return Err(Failure::Unauthorized(format!(
                "token service {realm} refused {who}: HTTP {}",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(Failure::Retry(format!(
                "token service {realm}: HTTP {}",
                status.as_u16()
            )));
        }
        let mut data = Vec::new();
        resp.take(MAX_TOKEN_ANSWER + 1)
            .read_to_end(&mut data)
            .map_err(|e| Failure::Retry(format!("token service {realm}: {e}")))?;
        if data.len() as u64 > MAX_TOKEN_ANSWER {
            return Err(Failure::Fatal(format!(
                "token service {realm}: its answer is over {MAX_TOKEN_ANSWER} bytes"
            )));
        }
        let body: TokenResponse = serde_json::from_slice(&data)
            .map_err(|e| Failure::Fatal(format!("token service {realm}: bad answer: {e}")))?;
        body.token
            .or(body.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Failure::Fatal(format!("token service {realm} answered no token")))
    }
}

/// Whether two URLs have the same scheme, host and port.
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// `host[:port]` of a URL.
fn host_port(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// The `*.crt` files of a certs.d host directory, sorted; none when it is absent.
fn ca_files(dir: &Path, host: &str) -> Result<Vec<(std::path::PathBuf, Vec<u8>)>, PullError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(PullError::Certificate {
                registry: host.to_string(),
                path: dir.to_path_buf(),
                detail: format!("cannot list it: {e}"),
            })
        }
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            fs::read(&p)
                .map(|d| (p.clone(), d))
                .map_err(|e| PullError::Certificate {
                    registry: host.to_string(),
                    path: p,
                    detail: format!("cannot read it: {e}"),
                })
        })
        .collect()
}

fn basic(c: &Credentials) -> String {
    let raw = format!("{}:{}", c.user, c.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn sensitive(s: &str) -> Result<HeaderValue, Failure> {
    let mut h = HeaderValue::from_str(s)
        .map_err(|_| Failure::Unauthorized("credentials hold characters a header cannot".into()))?;
    h.set_sensitive(true);
    Ok(h)
}

/// The first line of an error body, for messages (registries explain in
/// JSON: `{"errors":[{"code":"MANIFEST_UNKNOWN",...}]}`).
fn error_body(resp: Response) -> String {
    let mut buf = Vec::new();
    let _ = resp.take(512).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        String::new()
    } else {
        format!(": {line}")
    }
}

/// An error and its causes, joined: reqwest's own message alone is terse.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
