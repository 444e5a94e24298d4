//! `GET /metrics`: the worker's Prometheus metrics (text format). The jobs
//! gauge is refreshed from the queue at each scrape.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::{ApiResult, AppState};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(render))
}

async fn render(State(s): State<AppState>) -> ApiResult<Response> {
    let counts = s.store.counts().await?;
    crate::metrics::set_job_counts(&counts);
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        s.metrics.render(),
    )
        .into_response())
}
