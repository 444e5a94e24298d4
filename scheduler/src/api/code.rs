//! `/v1/code`: code packages. `POST /v1/code/{name}?image=BASE[&command=JSON]`
//! with a tar (plain or gzip) as the body, streamed to disk; the package is
//! the base image plus that tar as one more layer.

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{unavailable, ApiError, ApiResult, AppState};
use crate::code::{self, Package};
use crate::error::FieldError;

/// Largest upload, bytes.
pub const MAX_UPLOAD_BYTES: usize = 1 << 30;

/// The routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/v1/code", get(list)).route(
        "/v1/code/{name}",
        post(push)
            .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
            .get(show)
            .delete(remove),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushQuery {
    image: Option<String>,
    command: Option<String>,
    max_concurrency: Option<i64>,
}

async fn push(
    State(st): State<AppState>,
    Path(name): Path<String>,
    q: Result<Query<PushQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> ApiResult<Response> {
    code::check_name("name", &name).map_err(ApiError::field)?;
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let base = q
        .image
        .filter(|i| !i.trim().is_empty())
        .ok_or_else(|| ApiError::field(FieldError::new("image", "the base image is required")))?;
    let command: Option<Vec<String>> = match q.command {
        None => None,
        Some(c) => Some(serde_json::from_str(&c).map_err(|e| {
            ApiError::field(FieldError::new(
                "command",
                format!("must be a JSON array of strings: {e}"),
            ))
        })?),
    };
    if let Some(m) = q.max_concurrency {
        if m < 1 {
            return Err(ApiError::field(FieldError::new(
                "max_concurrency",
                format!("{m} is not a positive count"),
            )));
        }
    }
    super::jobs::check_images(st.store_root.clone(), vec![("image".into(), base.clone())]).await?;

    let upload =
        super::upload::receive(&st.store_root, body, MAX_UPLOAD_BYTES, "a tar of the code").await?;
    let size = upload.size;

    let root = st.store_root.clone();
    let d = code::derivation(&name, &base, command.clone());
    let path = upload.path.clone();
    let report = tokio::task::spawn_blocking(move || {
        imagestore::Store::open(&root).and_then(|s| s.derive(&d, &path))
    })
    .await
    .map_err(unavailable)?
    .map_err(|e| {
        // A bad tar is the client's; anything else is the worker's.
        let msg = runtime::error::error_chain(&e);
        match e {
            imagestore::Error::Io { .. } => unavailable(msg),
            _ => ApiError::field(FieldError::new("body", msg)),
        }
    })?;
    let image_id = report
        .images
        .first()
        .map(|i| i.id.to_string())
        .unwrap_or_default();
    let p = Package {
        name: name.clone(),
        base_image: base,
        image_id,
        command,
        layer_bytes: size as i64,
        layer_digest: None,
        max_concurrency: q.max_concurrency,
        created_at: 0,
        updated_at: 0,
    };
    // On a fleet the layer goes to the database too, for other workers.
    st.codes.put_package(&p, &upload.path).await?;
    // The dispatcher reads caps again when woken.
    st.wake.notify_one();
    let p = package(&st, &name).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "package": p, "layers_unpacked": report.layers_unpacked, "layers_reused": report.layers_reused })),
    )
        .into_response())
}

/// The package `name`, or a 404.
async fn package(st: &AppState, name: &str) -> ApiResult<Package> {
    st.codes
        .package(name)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no code package {name}")))
}

async fn list(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "packages": st.codes.packages().await? })))
}

async fn show(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    code::check_name("name", &name).map_err(ApiError::field)?;
    Ok(Json(json!(package(&st, &name).await?)))
}

/// Forget the package and remove its image from this worker's store. On
/// a fleet other workers keep their copy, but never run it again: a
/// worker checks the package before each of its jobs.
async fn remove(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    code::check_name("name", &name).map_err(ApiError::field)?;
    package(&st, &name).await?;
    let root = st.store_root.clone();
    let tag = code::image_tag(&name);
    tokio::task::spawn_blocking(move || {
        imagestore::Store::open(&root).and_then(|s| match s.remove_image(&tag) {
            Err(imagestore::Error::ImageNotFound(_)) => Ok(()),
            r => r.map(drop),
        })
    })
    .await
    .map_err(unavailable)?
    .map_err(|e| unavailable(runtime::error::error_chain(&e)))?;
    if !st.codes.remove_package(&name).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no code package {name}"),
        ));
    }
    Ok(Json(json!({ "name": name, "removed": true })))
}
