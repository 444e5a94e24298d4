//! `/v1/jobs`: submit (one or a batch), list, get, wait, log, cancel, retry.

use std::path::PathBuf;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiError, ApiResult, AppState};
use crate::dispatch::Capacity;
use crate::error::FieldError;
use crate::launchers::output_names;
use crate::queue::ListFilter;
use crate::request::{JobRequest, ValidJob};
use crate::state::JobState;

/// Largest batch.
pub const MAX_BATCH: usize = 10_000;

/// The routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/jobs", post(submit).get(list))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/jobs/{id}/wait", get(wait_job))
        .route("/v1/jobs/{id}/log", get(log))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/jobs/{id}/retry", post(retry))
}

pub(crate) fn body_json(body: Result<Bytes, BytesRejection>) -> ApiResult<Value> {
    let body = body.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")))
}

pub(crate) fn parse_job(v: Value, prefix: &str) -> ApiResult<ValidJob> {
    let req: JobRequest = serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            prefix.trim_end_matches('.').to_string()
        } else {
            format!("{prefix}{path}")
        };
        ApiError::field(FieldError::new(field, e.inner().to_string()))
    })?;
    req.validate()
        .map_err(|e| ApiError::field(FieldError::new(format!("{prefix}{}", e.field), e.message)))
}

/// Whether `v` could ever run: its limits fit one of `caps` (this
/// worker's, and on a fleet each live worker's) and its volumes lie
/// beneath the directories the worker allows.
pub(crate) fn check_admissible(
    v: &ValidJob,
    st: &AppState,
    caps: &[Capacity],
    prefix: &str,
) -> ApiResult<()> {
    for (i, vol) in v.volumes.iter().enumerate() {
        st.volumes
            .open(vol)
            .map_err(|m| ApiError::field(FieldError::new(format!("{prefix}volumes[{i}]"), m)))?;
    }
    let mem_fits = |c: &Capacity| v.memory_bytes.is_none_or(|m| m <= c.memory_bytes);
    let cpu_fits = |c: &Capacity| v.request.cpus.is_none_or(|n| n <= c.cpus);
    if caps.iter().any(|c| mem_fits(c) && cpu_fits(c)) {
        return Ok(());
    }
    let most_mem = caps.iter().map(|c| c.memory_bytes).max().unwrap_or(0);
    let most_cpus = caps.iter().map(|c| c.cpus).fold(0.0, f64::max);
    let (field, why) = match (v.memory_bytes, v.request.cpus) {
        (Some(m), _) if !caps.iter().any(mem_fits) => (
            "memory",
            format!("{m} bytes can never fit: the largest worker's capacity is {most_mem} bytes"),
        ),
        (_, Some(n)) if !caps.iter().any(cpu_fits) => (
            "cpus",
            format!("{n} CPUs can never fit: the largest worker's capacity is {most_cpus}"),
        ),
        (m, n) => (
            "memory",
            format!(
                "{} bytes with {} CPUs can never fit: no worker has both",
                m.unwrap_or(0),
                n.unwrap_or(0.0)
            ),
        ),
    };
    Err(ApiError::field(FieldError::new(
        format!("{prefix}{field}"),
        why,
    )))
}

/// Whether this worker's store resolves each image: `(field, image)`.
pub(crate) async fn check_images(root: PathBuf, jobs: Vec<(String, String)>) -> ApiResult<()> {
    match unresolved(root, jobs, false).await?.into_iter().next() {
        Some((field, _, e)) => Err(ApiError::field(FieldError::new(field, e))),
        None => Ok(()),
    }
}

/// The images of `jobs` (`(field, image)`) this worker's store does not
/// resolve, with why: `(field, image, error)`. With `pulls`, a registry
/// reference the store lacks is no problem: the worker pulls it.
async fn unresolved(
    root: PathBuf,
    jobs: Vec<(String, String)>,
    pulls: bool,
) -> ApiResult<Vec<(String, String, String)>> {
    tokio::task::spawn_blocking(move || {
        let store = imagestore::Store::open(&root).map_err(|e| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("image store: {e}"))
        })?;
        Ok(jobs
            .into_iter()
            .filter_map(|(field, image)| {
                let e = store.resolve(&image).err()?;
                let pullable = matches!(e, imagestore::Error::ImageNotFound(_))
                    && imagestore::ImageRef::parse(&image).is_ok();
                if pulls && pullable {
                    return None;
                }
                Some((field, image, e.to_string()))
            })
            .collect())
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?
}

/// On a fleet, an image this worker's store lacks is accepted when a live
/// worker's store holds it (placement sends the job there).
pub(super) async fn check_images_in_fleet(
    st: &AppState,
    jobs: Vec<(String, String)>,
) -> ApiResult<()> {
    let missing = unresolved(st.store_root.clone(), jobs, st.pulls).await?;
    let Some((field, _, e)) = missing.first() else {
        return Ok(());
    };
    let Some(fleet) = &st.fleet else {
        return Err(ApiError::field(FieldError::new(field.clone(), e.clone())));
    };
    let held = fleet.fleet_images().await?;
    for (field, image, e) in missing {
        if !held.contains(&crate::submit::placement_key(&image)) {
            return Err(ApiError::field(FieldError::new(
                field,
                format!("{e}; and no live worker of the fleet holds it"),
            )));
        }
    }
    Ok(())
}

/// Check that each job (`(field prefix, request)`) can run somewhere: its
/// image is in this worker's store or, on a fleet, a live worker's; its
/// code package exists (on a fleet every worker can make its image).
pub(super) async fn check_sources(
    st: &AppState,
    jobs: Vec<(String, &crate::request::JobRequest)>,
) -> ApiResult<()> {
    let mut images: Vec<(String, String)> = Vec::new();
    let mut packages = std::collections::HashSet::new();
    for (prefix, r) in jobs {
        match (&r.code, &st.fleet) {
            (Some(c), Some(_)) => {
                if packages.insert(c.clone()) && st.codes.package(c).await?.is_none() {
                    return Err(ApiError::field(FieldError::new(
                        format!("{prefix}code"),
                        format!("no code package {c}"),
                    )));
                }
            }
            (code, _) => {
                let field = if code.is_some() { "code" } else { "image" };
                let image = r.image_ref();
                if !images.iter().any(|(_, im)| im == &image) {
                    images.push((format!("{prefix}{field}"), image));
                }
            }
        }
    }
    check_images_in_fleet(st, images).await
}

/// The capacities a job may fit: this worker's and, on a fleet, each
/// live worker's.
pub(super) async fn capacities(st: &AppState) -> ApiResult<Vec<Capacity>> {
    let mut caps = vec![st.capacity];
    if let Some(fleet) = &st.fleet {
        caps.extend(
            fleet
                .live_capacities()
                .await?
                .into_iter()
                .map(|(memory, cpus)| Capacity {
                    memory_bytes: memory.max(0) as u64,
                    cpus,
                }),
        );
    }
    Ok(caps)
}

async fn submit(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let v = body_json(body)?;
    let batch = v
        .as_object()
        .is_some_and(|o| o.len() == 1 && o.contains_key("jobs"));
    let mut jobs = Vec::new();
    if batch {
        let Some(Value::Array(items)) = v.get("jobs").cloned() else {
            return Err(ApiError::field(FieldError::new(
                "jobs",
                "must be an array of jobs",
            )));
        };
        if items.is_empty() || items.len() > MAX_BATCH {
            return Err(ApiError::field(FieldError::new(
                "jobs",
                format!("must hold 1–{MAX_BATCH} jobs, not {}", items.len()),
            )));
        }
        for (i, item) in items.into_iter().enumerate() {
            jobs.push(parse_job(item, &format!("jobs[{i}]."))?);
        }
    } else {
        jobs.push(parse_job(v, "")?);
    }
    let mut images = Vec::new();
    let caps = capacities(&st).await?;
    for (i, j) in jobs.iter().enumerate() {
        let prefix = if batch {
            format!("jobs[{i}].")
        } else {
            String::new()
        };
        check_admissible(j, &st, &caps, &prefix)?;
        images.push((prefix, &j.request));
    }
    check_sources(&st, images).await?;
    let accepted = st.store.submit(jobs).await?;
    st.wake.notify_one();
    let any_new = accepted.iter().any(|(_, created)| *created);
    let status = if any_new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = if batch {
        json!({ "jobs": accepted.into_iter().map(|(j, _)| j).collect::<Vec<_>>() })
    } else {
        serde_json::to_value(&accepted[0].0).unwrap_or(Value::Null)
    };
    Ok((status, Json(body)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    queue: Option<String>,
    label: Option<String>,
    limit: Option<i64>,
    after: Option<String>,
    order: Option<String>,
}

async fn list(
    State(st): State<AppState>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let state = match &q.state {
        None => None,
        Some(s) => Some(JobState::parse(s).ok_or_else(|| {
            ApiError::field(FieldError::new("state", format!("unknown state {s:?}")))
        })?),
    };
    if let Some(l) = q.limit {
        if !(1..=1000).contains(&l) {
            return Err(ApiError::field(FieldError::new("limit", "must be 1–1000")));
        }
    }
    let newest_first = match q.order.as_deref() {
        None | Some("oldest") => false,
        Some("newest") => true,
        Some(o) => {
            return Err(ApiError::field(FieldError::new(
                "order",
                format!("{o:?} is neither \"oldest\" nor \"newest\""),
            )))
        }
    };
    let f = ListFilter {
        newest_first,
        state,
        queue: q.queue,
        label: q.label,
        limit: q.limit,
        after: q.after,
    };
    let jobs = st.store.list(&f).await?;
    let next = if jobs.len() as i64 == f.limit.unwrap_or(100) {
        jobs.last().map(|j| j.id.clone())
    } else {
        None
    };
    Ok(Json(json!({ "jobs": jobs, "next": next })))
}

async fn get_job(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let job = st.store.get(&id).await?;
    let has_webhook = job.request.webhook.is_some();
    let mut v = serde_json::to_value(job).unwrap_or(Value::Null);
    if has_webhook {
        let d = st.webhooks.deliveries(&id).await?;
        v["webhook_deliveries"] = d
            .into_iter()
            .map(|(state, attempts, error)| {
                json!({ "state": state, "attempts": attempts, "last_error": error })
            })
            .collect();
    }
    Ok(Json(v))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    timeout: Option<u64>,
}

/// Long poll: the job once it is in a terminal state, or as it is after
/// `timeout` seconds (default 30, at most 300).
async fn wait_job(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<WaitQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let timeout = Duration::from_secs(q.timeout.unwrap_or(30).min(300));
    let deadline = tokio::time::Instant::now() + timeout;
    let mut rx = st.changed.subscribe();
    loop {
        let job = st.store.get(&id).await?;
        if job.state.is_terminal() {
            return Ok(Json(serde_json::to_value(job).unwrap_or(Value::Null)));
        }
        tokio::select! {
            r = rx.recv() => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r {
                    return Ok(Json(serde_json::to_value(job).unwrap_or(Value::Null)));
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Ok(Json(serde_json::to_value(job).unwrap_or(Value::Null)));
            }
            // Lagged receivers and missed events: look again now and then.
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    stream: Option<String>,
    attempt: Option<i64>,
    /// Keep the response open and send output as it is written, until the
    /// attempt ends.
    follow: Option<bool>,
}

/// Output followed as it grows, until attempt `n` of the job is over.
struct Follow {
    queue: std::sync::Arc<dyn crate::db::Storage>,
    id: String,
    n: i64,
    path: PathBuf,
    offset: u64,
    last_look: bool,
    /// On a fleet: where an attempt that ran elsewhere left its output.
    fleet: Option<crate::db::postgres::PgStore>,
    stream: &'static str,
}

impl Follow {
    async fn read_more(&mut self) -> std::io::Result<Vec<u8>> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut f = match tokio::fs::File::open(&self.path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        f.seek(std::io::SeekFrom::Start(self.offset)).await?;
        let mut buf = Vec::new();
        (&mut f).take(1 << 16).read_to_end(&mut buf).await?;
        self.offset += buf.len() as u64;
        Ok(buf)
    }

    async fn attempt_over(&self) -> bool {
        match self.queue.get(&self.id).await {
            Ok(j) => j.attempts != self.n || j.state != JobState::Running,
            Err(_) => true,
        }
    }

    /// The output of an attempt that ran on another worker of the fleet,
    /// as it stored it when the attempt ended.
    async fn stored(&self) -> Option<Vec<u8>> {
        let fleet = self.fleet.as_ref()?;
        if self.offset > 0 || tokio::fs::try_exists(&self.path).await.unwrap_or(true) {
            return None;
        }
        let b = fleet.output(&self.id, self.n, self.stream).await.ok()??;
        (!b.is_empty()).then_some(b)
    }

    /// The next chunk, or `None` at the end.
    async fn next(mut self) -> Option<(std::io::Result<Vec<u8>>, Follow)> {
        loop {
            match self.read_more().await {
                Err(e) => {
                    return Some((
                        Err(e),
                        Follow {
                            last_look: true,
                            ..self
                        },
                    ))
                }
                Ok(b) if !b.is_empty() => return Some((Ok(b), self)),
                Ok(_) if self.last_look => return None,
                Ok(_) => {}
            }
            if self.attempt_over().await {
                if let Some(b) = self.stored().await {
                    return Some((
                        Ok(b),
                        Follow {
                            last_look: true,
                            fleet: None,
                            ..self
                        },
                    ));
                }
                // One more read for what was written before the end.
                self.last_look = true;
                continue;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn log(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let job = st.store.get(&id).await?;
    let n = match q.attempt {
        Some(n) if n < 1 || n > job.attempts => {
            return Err(ApiError::field(FieldError::new(
                "attempt",
                format!("job {id} has {} attempt(s)", job.attempts),
            )))
        }
        Some(n) => n,
        None if job.attempts == 0 => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("job {id} has not started"),
            ))
        }
        None => job.attempts,
    };
    let (out, err) = output_names(&id, n);
    let (name, stream) = match q.stream.as_deref() {
        None | Some("stdout") => (out, "stdout"),
        Some("stderr") => (err, "stderr"),
        Some(s) => {
            return Err(ApiError::field(FieldError::new(
                "stream",
                format!("{s:?} is not stdout or stderr"),
            )))
        }
    };
    let path = st.output_dir.join(name);
    if q.follow.unwrap_or(false) {
        let follow = Follow {
            queue: st.store.clone(),
            id: id.clone(),
            n,
            path,
            offset: 0,
            last_look: false,
            fleet: st.fleet.clone(),
            stream,
        };
        let stream = futures_util::stream::unfold(follow, Follow::next);
        return Ok((
            [(header::CONTENT_TYPE, "application/octet-stream")],
            axum::body::Body::from_stream(stream),
        )
            .into_response());
    }
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => b,
        // On a fleet, an attempt that ran elsewhere: what its worker stored.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match &st.fleet {
            Some(f) => f.output(&id, n, stream).await?.unwrap_or_default(),
            None => Vec::new(),
        },
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("read {}: {e}", path.display()),
            ))
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

async fn cancel(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    if st.store.cancel(&id).await? {
        let job = st.store.get(&id).await?;
        let name = crate::launchers::job_name(&id, job.attempts);
        let run_root = st.run_root.clone();
        // SIGTERM now; SIGKILL after the stop timeout if it still runs.
        crate::launchers::signal_job(&run_root, &name, nix::sys::signal::Signal::SIGTERM);
        tokio::spawn(async move {
            tokio::time::sleep(runtime::job::DEFAULT_STOP_TIMEOUT).await;
            crate::launchers::signal_job(&run_root, &name, nix::sys::signal::Signal::SIGKILL);
        });
    } else {
        let _ = st.changed.send((id.clone(), JobState::Cancelled));
    }
    get_job(State(st), Path(id)).await
}

async fn retry(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    st.store.retry(&id).await?;
    st.wake.notify_one();
    get_job(State(st), Path(id)).await
}
