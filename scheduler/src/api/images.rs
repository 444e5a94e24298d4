//! `/v1/images`: the store's images, and imports of an uploaded archive
//! (`docker save`, OCI archive; plain, gzip or zstd), streamed to disk
//! first and imported by the store's importer.

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{unavailable, ApiError, ApiResult, AppState};
use crate::error::FieldError;

/// Largest archive, bytes.
pub const MAX_ARCHIVE_BYTES: usize = 8 << 30;

/// The routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new().route(
        "/v1/images",
        get(list)
            .post(import)
            .layer(DefaultBodyLimit::max(MAX_ARCHIVE_BYTES)),
    )
}

async fn list(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let root = st.store_root.clone();
    let images = tokio::task::spawn_blocking(move || -> Result<Vec<Value>, imagestore::Error> {
        let store = imagestore::Store::open(&root)?;
        let mut out = Vec::new();
        for rec in store.images().list()? {
            let tags = store.images().tags_of(&rec.id)?;
            out.push(json!({
                "id": rec.id.to_string(),
                "tags": tags,
                "platform": rec.platform,
                "layers": rec.layers.len(),
                "size": rec.size(),
                "imported_at": rec.imported_at,
            }));
        }
        Ok(out)
    })
    .await
    .map_err(unavailable)?
    .map_err(|e| unavailable(runtime::error::error_chain(&e)))?;
    Ok(Json(json!({ "images": images })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    tag: Option<String>,
}

async fn import(
    State(st): State<AppState>,
    q: Result<Query<ImportQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> ApiResult<Response> {
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    if let Some(t) = &q.tag {
        imagestore::images::normalize_reference(t)
            .map_err(|e| ApiError::field(FieldError::new("tag", e.to_string())))?;
    }
    let upload =
        super::upload::receive(&st.store_root, body, MAX_ARCHIVE_BYTES, "an image archive").await?;
    let root = st.store_root.clone();
    let path = upload.path.clone();
    let report = tokio::task::spawn_blocking(move || {
        imagestore::Store::open(&root).and_then(|s| {
            s.import(
                &imagestore::source::Input::Path(path),
                &imagestore::import::ImportOptions {
                    tag: q.tag,
                    ..Default::default()
                },
            )
        })
    })
    .await
    .map_err(unavailable)?
    .map_err(|e| {
        let msg = runtime::error::error_chain(&e);
        match e {
            imagestore::Error::Io { .. } => unavailable(msg),
            _ => ApiError::field(FieldError::new("body", msg)),
        }
    })?;
    drop(upload);
    Ok((StatusCode::CREATED, Json(json!(report))).into_response())
}
