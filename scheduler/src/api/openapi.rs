//! `GET /v1/openapi.json`: the API's OpenAPI 3.0 document, kept by hand in
//! `scheduler/openapi.json` and checked against the routes by
//! `tests/serve_openapi.rs`.

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::AppState;

/// The document, as shipped.
pub const SPEC: &str = include_str!("../../openapi.json");

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/v1/openapi.json", get(spec))
}

async fn spec() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], SPEC)
}
