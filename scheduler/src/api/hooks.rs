//! `/v1/hooks`: webhook triggers. `PUT /v1/hooks/{name}` stores a job
//! template; `POST /v1/hooks/{name}` turns the request body (UTF-8, at most
//! 1 MB) into the payload of a new job from it.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::jobs::{body_json, capacities, check_admissible, check_sources, parse_job};
use super::{ApiError, ApiResult, AppState};
use crate::error::FieldError;
use crate::hooks;
use crate::request::MAX_PAYLOAD_BYTES;

/// The routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/v1/hooks", get(list)).route(
        "/v1/hooks/{name}",
        put(define).post(trigger).get(show).delete(remove),
    )
}

fn name_ok(name: &str) -> ApiResult<()> {
    hooks::check_name(name).map_err(ApiError::field)
}

async fn define(
    State(st): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    name_ok(&name)?;
    let v = parse_job(body_json(body)?, "")?;
    if v.request.payload.is_some() {
        return Err(ApiError::field(FieldError::new(
            "payload",
            "a trigger's payload is the request body; leave it out of the template",
        )));
    }
    if v.request.idempotency_key.is_some() {
        return Err(ApiError::field(FieldError::new(
            "idempotency_key",
            "a template cannot carry one: every trigger makes a new job",
        )));
    }
    check_admissible(&v, &st, &capacities(&st).await?, "")?;
    check_sources(&st, vec![(String::new(), &v.request)]).await?;
    let created = hooks::put(&*st.hooks, &name, &v.request).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({ "name": name, "template": v.request }))).into_response())
}

async fn show(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    name_ok(&name)?;
    let t = hooks::get(&*st.hooks, &name).await?;
    Ok(Json(json!({ "name": name, "template": t })))
}

async fn list(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let hooks: Vec<Value> = hooks::list(&*st.hooks)
        .await?
        .into_iter()
        .map(|(name, t)| json!({ "name": name, "template": t }))
        .collect();
    Ok(Json(json!({ "hooks": hooks })))
}

async fn remove(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    name_ok(&name)?;
    hooks::remove(&*st.hooks, &name).await?;
    Ok(Json(json!({ "name": name, "removed": true })))
}

async fn trigger(
    State(st): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    name_ok(&name)?;
    let body = body.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
    if body.len() > MAX_PAYLOAD_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} bytes; a payload is at most {MAX_PAYLOAD_BYTES}",
                body.len()
            ),
        ));
    }
    let payload = String::from_utf8(body.to_vec()).map_err(|_| {
        ApiError::field(FieldError::new(
            "body",
            "a trigger's body must be UTF-8 text",
        ))
    })?;
    let mut t = hooks::get(&*st.hooks, &name).await?;
    t.payload = Some(payload);
    let v = t.validate().map_err(ApiError::field)?;
    let job = st.store.submit(vec![v]).await?.remove(0).0;
    st.wake.notify_one();
    Ok((StatusCode::CREATED, Json(job)).into_response())
}
