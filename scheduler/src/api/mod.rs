//! The REST API under `/v1`: JSON in and out, and every refusal a 4xx with
//! a JSON body naming the field. One file per resource.

pub mod auth;
mod code;
mod dashboard;
mod fleet;
mod hooks;
mod images;
mod jobs;
mod metrics;
mod openapi;
mod queues;
mod schedules;
mod upload;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::db::Storage;
use crate::dispatch::{Capacity, Changed};
use crate::error::{FieldError, QueueError};
use crate::volumes::AllowedVolumes;

/// Largest request body (a batch of jobs with payloads), bytes.
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The queue, on either engine.
    pub store: Arc<dyn Storage>,
    /// The fleet's queue when it is PostgreSQL (workers, their images).
    pub fleet: Option<crate::db::postgres::PgStore>,
    /// Wakes the dispatcher.
    pub wake: Arc<Notify>,
    /// Job state changes.
    pub changed: Changed,
    /// Store root (images are resolved at submit).
    pub store_root: PathBuf,
    /// Captured output.
    pub output_dir: PathBuf,
    /// The store's run directory (running jobs' records).
    pub run_root: PathBuf,
    /// The worker's capacity (a job that could never fit is refused).
    pub capacity: Capacity,
    /// The Prometheus recorder's handle (`GET /metrics`).
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Where API jobs may mount host paths (`--allow-volume`).
    pub volumes: Arc<AllowedVolumes>,
    /// This worker's launcher slots (the fleet view on one host).
    pub slots: i64,
    /// The schedules, on the queue's engine.
    pub schedules: crate::schedules::Schedules,
    /// Webhook triggers' templates, on the queue's engine.
    pub hooks: Arc<dyn crate::db::hook_store::HookStorage>,
    /// Webhook deliveries, on the queue's engine.
    pub webhooks: Arc<dyn crate::db::webhook_store::WebhookStorage>,
    /// Per-queue settings, on the queue's engine.
    pub queue_settings: Arc<dyn crate::db::queue_store::QueueSettings>,
    /// Code packages, on the queue's engine.
    pub codes: Arc<dyn crate::db::code_store::CodeStorage>,
    /// Whether the worker pulls images the store lacks (a registry is configured).
    pub pulls: bool,
}

/// An API error: status, message, and the field at fault.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: None,
        }
    }

    pub(crate) fn field(e: FieldError) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: e.to_string(),
            field: Some(e.field),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(f) = self.field {
            body["field"] = Value::String(f);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> ApiError {
        match e {
            QueueError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            QueueError::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            // PostgreSQL refuses a NUL byte in text (an id, a label, a
            // filter): the request's fault, not the worker's.
            QueueError::Db(sqlx::Error::Database(d))
                if matches!(d.code().as_deref(), Some("22021" | "22P05")) =>
            {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("a request field holds a byte the database refuses: {d}"),
                )
            }
            e => {
                tracing::error!("{e}");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
        }
    }
}

/// A 503: the worker's own database, store or disk failed (not the request).
pub(crate) fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .merge(jobs::routes())
        .merge(metrics::routes())
        .merge(schedules::routes())
        .merge(hooks::routes())
        .merge(code::routes())
        .merge(images::routes())
        .merge(queues::routes())
        .merge(openapi::routes())
        .merge(fleet::routes())
        .merge(dashboard::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn healthz() -> Json<Value> {
    Json(json!({ "ok": true }))
}
