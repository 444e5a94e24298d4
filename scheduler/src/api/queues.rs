//! `/v1/queues`: per-queue settings (`max_concurrency`); on a fleet a cap
//! holds across every worker.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::jobs::body_json;
use super::{ApiError, ApiResult, AppState};
use crate::error::FieldError;

/// The routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/queues", get(list))
        .route("/v1/queues/{name}", put(set))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    max_concurrency: Option<i64>,
}

async fn set(
    State(st): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    crate::request::JobRequest {
        image: "x".into(),
        queue: Some(name.clone()),
        ..Default::default()
    }
    .validate()
    .map_err(|e| ApiError::field(FieldError::new("name", e.message)))?;
    let s: Settings = serde_path_to_error::deserialize(body_json(body)?).map_err(|e| {
        ApiError::field(FieldError::new(e.path().to_string(), e.inner().to_string()))
    })?;
    if let Some(m) = s.max_concurrency {
        if m < 1 {
            return Err(ApiError::field(FieldError::new(
                "max_concurrency",
                format!("{m} is not a positive count (null removes the cap)"),
            )));
        }
    }
    st.queue_settings
        .set_queue_cap(&name, s.max_concurrency)
        .await?;
    st.wake.notify_one();
    Ok(Json(
        json!({ "name": name, "max_concurrency": s.max_concurrency }),
    ))
}

async fn list(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let q: Vec<Value> = st
        .queue_settings
        .queue_caps()
        .await?
        .into_iter()
        .map(|(name, max)| json!({ "name": name, "max_concurrency": max }))
        .collect();
    Ok(Json(json!({ "queues": q })))
}
