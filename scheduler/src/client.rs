//! A small HTTP/1 client for the worker's API over its unix socket (or over
//! TCP with a bearer token), used by the CLI (`skiff submit`, `skiff jobs`).

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;

/// Why a call to the worker failed (before any HTTP status).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("connect to the worker at {path}: {source} (is `skiff serve` running?)")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The TCP address could not be reached.
    #[error("connect to the worker at {addr}: {source} (is `skiff serve --listen` running?)")]
    ConnectTcp {
        /// The address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// HTTP failed.
    #[error("talk to the worker: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("build the request: {0}")]
    Request(#[from] hyper::http::Error),
}

/// A response: status and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON, or null.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The API's error message, when the status is not 2xx.
    pub fn error_message(&self) -> String {
        let v = self.json();
        match v.get("error").and_then(|e| e.as_str()) {
            Some(m) => m.to_string(),
            None => String::from_utf8_lossy(&self.body).into_owned(),
        }
    }
}

/// A client of one worker: its socket, or its TCP address and token.
#[derive(Clone)]
pub struct Client {
    socket: PathBuf,
    tcp: Option<String>,
    token: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("socket", &self.socket)
            .field("tcp", &self.tcp)
            .field("token", &self.token.as_ref().map(|_| ".."))
            .finish()
    }
}

impl Client {
    /// The worker listening on `socket`.
    pub fn unix(socket: &Path) -> Client {
        Client {
            socket: socket.to_path_buf(),
            tcp: None,
            token: None,
        }
    }

    /// The worker listening on TCP `addr` (`HOST:PORT`), sending `token`
    /// as `Authorization: Bearer` when there is one.
    pub fn tcp(addr: impl Into<String>, token: Option<String>) -> Client {
        Client {
            socket: PathBuf::new(),
            tcp: Some(addr.into()),
            token,
        }
    }

    /// Send one request (a new connection each time).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response, ClientError> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes().to_vec();
        Ok(Response { status, body })
    }

    /// A GET whose body is written to `out` as it arrives (a followed log);
    /// the status, and the body only when it is not 2xx.
    pub async fn stream(
        &self,
        path: &str,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<Response, ClientError> {
        let resp = self.send("GET", path, None).await?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let body = resp.into_body().collect().await?.to_bytes().to_vec();
            return Ok(Response { status, body });
        }
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                let _ = out.write_all(&data);
                let _ = out.flush();
            }
        }
        Ok(Response {
            status,
            body: Vec::new(),
        })
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let mut sender = match &self.tcp {
            None => {
                let stream = tokio::net::UnixStream::connect(&self.socket)
                    .await
                    .map_err(|source| ClientError::Connect {
                        path: self.socket.clone(),
                        source,
                    })?;
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                sender
            }
            Some(addr) => {
                let stream = tokio::net::TcpStream::connect(addr.as_str())
                    .await
                    .map_err(|source| ClientError::ConnectTcp {
                        addr: addr.clone(),
                        source,
                    })?;
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                sender
            }
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.tcp.as_deref().unwrap_or("skiff"));
        if let Some(t) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        Ok(sender.send_request(req).await?)
    }
}
