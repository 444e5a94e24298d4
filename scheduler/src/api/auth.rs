//! The bearer token TCP clients must present (`Authorization: Bearer
//! TOKEN`). The unix socket needs none: its mode (0660) is the door.
//! `/healthz` stays open on TCP too, for load balancers and probes, and so
//! do the dashboard's static files (they hold no data).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiError;

/// Why the token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// TCP without a token.
    #[error("listening on TCP needs a token file (--token-file)")]
    Missing,
    /// The file could not be read.
    #[error("read token file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file holds nothing but white space.
    #[error("token file {0} is empty")]
    Empty(PathBuf),
}

/// A bearer token, kept as its SHA-256 digest: comparing digests in
/// constant time leaks neither the token's bytes nor its length.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// The token `s` (trimmed); empty is refused.
    pub fn new(s: &str) -> Option<Token> {
        let s = s.trim();
        (!s.is_empty()).then(|| Token {
            digest: Sha256::digest(s.as_bytes()).into(),
        })
    }

    /// The token in `path` (its contents, trimmed).
    pub fn from_file(path: &Path) -> Result<Token, TokenError> {
        let s = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Token::new(&s).ok_or_else(|| TokenError::Empty(path.to_path_buf()))
    }

    /// Whether `presented` is the token, in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        d.ct_eq(&self.digest).into()
    }
}

/// The bearer token of an `Authorization` header value, if that is one.
fn bearer(v: &HeaderValue) -> Option<&str> {
    let v = v.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn check(State(token): State<Arc<Token>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path == "/healthz" || super::dashboard::PUBLIC.contains(&path) {
        return next.run(req).await;
    }
    let ok = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(bearer)
        .is_some_and(|t| token.matches(t));
    if ok {
        return next.run(req).await;
    }
    let mut resp = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token (Authorization: Bearer TOKEN)",
    )
    .into_response();
    resp.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// `app`, with every request but `/healthz` refused (401) unless it
/// carries `token`.
pub fn require(app: Router, token: Token) -> Router {
    app.layer(axum::middleware::from_fn_with_state(Arc::new(token), check))
}
