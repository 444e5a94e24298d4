//! `/v1/schedules`: a job template fired on a cron expression or every N
//! seconds (see [`crate::schedules`]). Create, list, get, delete.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::jobs::{body_json, capacities, check_admissible, check_sources};
use super::{ApiError, ApiResult, AppState};
use crate::error::{FieldError, QueueError};
use crate::queue::now_ms;
use crate::schedules::ScheduleRequest;

/// The routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/schedules", post(create).get(list))
        .route("/v1/schedules/{id}", get(show).delete(remove))
}

/// A missing schedule as 404 `no schedule ID`; other failures as usual.
fn not_found(id: &str) -> impl FnOnce(QueueError) -> ApiError + '_ {
    move |e| match e {
        QueueError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, format!("no schedule {id}"))
        }
        e => e.into(),
    }
}

fn to_json(v: impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

async fn create(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let v = body_json(body)?;
    let req: ScheduleRequest = serde_path_to_error::deserialize(v).map_err(|e| {
        let msg = e.inner().to_string();
        let path = e.path().to_string();
        // A missing field is reported at its parent: name the field itself.
        let missing = msg
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next());
        let field = match (path.as_str(), missing) {
            (".", Some(m)) => m.to_string(),
            (".", None) => "body".to_string(),
            (p, Some(m)) => format!("{p}.{m}"),
            (p, None) => p.to_string(),
        };
        ApiError::field(FieldError::new(field, msg))
    })?;
    let v = req.validate(now_ms()).map_err(ApiError::field)?;
    let job = v
        .request
        .job
        .clone()
        .validate()
        .map_err(|e| ApiError::field(FieldError::new(format!("job.{}", e.field), e.message)))?;
    check_admissible(&job, &st, &capacities(&st).await?, "job.")?;
    check_sources(&st, vec![("job.".into(), &job.request)]).await?;
    let s = st.schedules.create(&v).await?;
    Ok((StatusCode::CREATED, Json(to_json(s))).into_response())
}

async fn list(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let all = st.schedules.list().await?;
    Ok(Json(json!({ "schedules": all })))
}

async fn show(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let s = st.schedules.get(&id).await.map_err(not_found(&id))?;
    Ok(Json(to_json(s)))
}

async fn remove(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    st.schedules.delete(&id).await.map_err(not_found(&id))?;
    Ok(Json(json!({ "id": id, "deleted": true })))
}
