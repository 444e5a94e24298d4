//! `GET /`: the dashboard, a static page whose script reads this same API
//! (`/v1/fleet`, `/v1/stats`, `/v1/jobs`, `/v1/schedules`). The files are
//! built in; they hold no data, so TCP serves them without the token (the
//! page asks for it, see `dashboard.js`). The content security policy lets
//! only these files run, and only this origin be fetched.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::http::HeaderName;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::AppState;

const INDEX: &str = include_str!("../../dashboard/index.html");
const SCRIPT: &str = include_str!("../../dashboard/dashboard.js");
const STYLE: &str = include_str!("../../dashboard/dashboard.css");

/// The paths served without a token on TCP.
pub(crate) const PUBLIC: [&str; 3] = ["/", "/dashboard.js", "/dashboard.css"];

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      connect-src 'self'; img-src 'self'; base-uri 'none'; \
                      form-action 'none'; frame-ancestors 'none'";

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| file("text/html; charset=utf-8", INDEX)))
        .route(
            "/dashboard.js",
            get(|| file("text/javascript; charset=utf-8", SCRIPT)),
        )
        .route(
            "/dashboard.css",
            get(|| file("text/css; charset=utf-8", STYLE)),
        )
}

async fn file(kind: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, kind),
            (CACHE_CONTROL, "no-cache"),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (HeaderName::from_static("content-security-policy"), POLICY),
        ],
        body,
    )
}
