//! A small HTTP proxy in front of a test registry, to make it misbehave on
//! purpose: throttle blob bodies (so a registry can be killed mid-pull),
//! corrupt one blob, or demand a Bearer token from its own token service (the
//! flow Docker Hub uses, which a `docker-registry` with htpasswd does not).
//! It logs each request it forwards.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;

/// The token the proxy's token service hands out.
pub const TOKEN: &str = "skiff-test-token";

/// What the proxy does, changeable while it runs.
#[derive(Debug, Default)]
pub struct Behaviour {
    /// Blob bodies at most this fast (bytes/s); 0: as fast as they come.
    pub bytes_per_sec: AtomicU64,
    /// Flip byte 4 of the body of blobs whose path holds this digest.
    pub corrupt: Mutex<Option<String>>,
    /// Demand `Bearer TOKEN`, issued to this `user:password` by `/token`.
    pub bearer: Mutex<Option<(String, String)>>,
    /// `METHOD PATH [Range]` of every request, in order.
    pub log: Mutex<Vec<String>>,
}

struct Shared {
    upstream: String,
    port: u16,
    client: reqwest::Client,
    behaviour: Arc<Behaviour>,
}

/// A running proxy; stopped on drop.
#[derive(Debug)]
pub struct Proxy {
    pub port: u16,
    pub behaviour: Arc<Behaviour>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Proxy `http://127.0.0.1:PORT/` to `upstream` (a base URL).
    pub fn start(upstream: &str) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let behaviour = Arc::new(Behaviour::default());
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            port,
            client: reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("proxy client"),
            behaviour: Arc::clone(&behaviour),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("proxy runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new().fallback(handle).with_state(shared);
                let _ = axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        });
        Proxy {
            port,
            behaviour,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The requests so far.
    pub fn log(&self) -> Vec<String> {
        self.behaviour
            .log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn basic_ok(headers: &HeaderMap, user: &str, password: &str) -> bool {
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(want.as_str())
}

async fn handle(State(st): State<Arc<Shared>>, req: Request) -> Response {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|r| format!(" {r}"))
        .unwrap_or_default();
    if let Ok(mut log) = st.behaviour.log.lock() {
        log.push(format!("{} {path}{range}", req.method()));
    }
    let bearer = st.behaviour.bearer.lock().ok().and_then(|b| b.clone());
    if let Some((user, password)) = &bearer {
        if path.starts_with("/token") {
            if !basic_ok(req.headers(), user, password) {
                return (StatusCode::UNAUTHORIZED, "bad credentials").into_response();
            }
            return axum::Json(serde_json::json!({ "token": TOKEN })).into_response();
        }
        let ok = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            == Some(format!("Bearer {TOKEN}").as_str());
        if !ok {
            let challenge = format!(
                "Bearer realm=\"http://127.0.0.1:{}/token\",service=\"skiff-test\"",
                st.port
            );
            let mut resp = (StatusCode::UNAUTHORIZED, "token needed").into_response();
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            return resp;
        }
    }
    let mut up = st
        .client
        .request(req.method().clone(), format!("{}{path}", st.upstream));
    for h in [header::ACCEPT, header::RANGE] {
        if let Some(v) = req.headers().get(&h) {
            up = up.header(h, v);
        }
    }
    if bearer.is_none() {
        if let Some(v) = req.headers().get(header::AUTHORIZATION) {
            up = up.header(header::AUTHORIZATION, v);
        }
    }
    let resp = match up.send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("upstream: {e}")).into_response(),
    };
    let status = resp.status();
    let mut headers = HeaderMap::new();
    for h in [
        header::CONTENT_TYPE,
        header::CONTENT_LENGTH,
        header::CONTENT_RANGE,
        header::ACCEPT_RANGES,
        header::WWW_AUTHENTICATE,
        header::LOCATION,
    ] {
        if let Some(v) = resp.headers().get(&h) {
            headers.insert(h, v.clone());
        }
    }
    if let Some(v) = resp.headers().get("docker-content-digest") {
        headers.insert("docker-content-digest", v.clone());
    }
    let is_blob = path.contains("/blobs/");
    let corrupt = is_blob
        && st
            .behaviour
            .corrupt
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .is_some_and(|d| path.contains(&d));
    let behaviour = Arc::clone(&st.behaviour);
    let stream = futures_util::stream::unfold(
        (resp, corrupt, behaviour),
        move |(mut resp, mut corrupt, behaviour)| async move {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    let mut data = chunk.to_vec();
                    if corrupt && data.len() > 4 {
                        // Byte 4 of a gzip stream is in its header's MTIME:
                        // the layer still decompresses to the same tar, so
                        // only the blob's digest can tell.
                        data[4] ^= 0xff;
                        corrupt = false;
                    }
                    let bps = behaviour.bytes_per_sec.load(Ordering::SeqCst);
                    if is_blob && bps > 0 {
                        let wait = data.len() as f64 / bps as f64;
                        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
                    }
                    Some((
                        Ok::<Bytes, std::io::Error>(Bytes::from(data)),
                        (resp, corrupt, behaviour),
                    ))
                }
                Ok(None) => None,
                Err(e) => Some((
                    Err(std::io::Error::other(format!("upstream broke: {e}"))),
                    (resp, false, behaviour),
                )),
            }
        },
    );
    let mut out = Response::new(Body::from_stream(stream));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}
