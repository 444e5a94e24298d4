//! `GET /v1/fleet` and `GET /v1/stats`: the workers, and the queue's
//! depth and throughput. The dashboard draws these; scripts read them too.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::{ApiResult, AppState};
use crate::queue::now_ms;
use crate::state::JobState;

/// The throughput chart's bucket, and how many of them (the last hour).
const MINUTE_MS: i64 = 60_000;
const MINUTES: i64 = 60;

/// The outcomes an ended attempt can have, as the chart's series.
const OUTCOMES: [JobState; 5] = [
    JobState::Complete,
    JobState::Error,
    JobState::Timeout,
    JobState::Killed,
    JobState::Cancelled,
];

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/fleet", get(fleet))
        .route("/v1/stats", get(stats))
}

/// Every worker with its capacity, load, images and heartbeat. On
/// PostgreSQL, the fleet's workers table (a silent one is `lost`); on
/// SQLite, this worker alone.
async fn fleet(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let now = now_ms();
    if let Some(pg) = &st.fleet {
        let lost_after = pg.lost_after();
        let workers: Vec<Value> = pg
            .workers()
            .await?
            .into_iter()
            .map(|w| {
                let images: Value = serde_json::from_str(&w.images).unwrap_or(json!([]));
                json!({
                    "id": w.id,
                    "host": w.host,
                    "address": w.address,
                    "slots": w.slots,
                    "memory_bytes": w.memory_bytes,
                    "cpus": w.cpus,
                    "running": w.running,
                    "images": images,
                    "version": w.version,
                    "started_at": w.started_at,
                    "heartbeat_at": w.heartbeat_at,
                    "lost": w.is_lost(now, lost_after),
                })
            })
            .collect();
        return Ok(Json(json!({
            "engine": "postgres",
            "worker": pg.worker(),
            "lost_after_ms": lost_after.as_millis() as i64,
            "workers": workers,
        })));
    }
    let running: i64 = st
        .store
        .counts()
        .await?
        .iter()
        .filter(|(s, _, _)| *s == JobState::Running)
        .map(|(_, _, n)| n)
        .sum();
    let root = st.store_root.clone();
    let images = tokio::task::spawn_blocking(move || crate::fleet::store_images(&root))
        .await
        .unwrap_or_default();
    Ok(Json(json!({
        "engine": "sqlite",
        "worker": "local",
        "lost_after_ms": null,
        "workers": [{
            "id": "local",
            "host": crate::fleet::host_name(),
            "address": null,
            "slots": st.slots,
            "memory_bytes": st.capacity.memory_bytes,
            "cpus": st.capacity.cpus,
            "running": running,
            "images": images,
            "version": env!("CARGO_PKG_VERSION"),
            "started_at": null,
            "heartbeat_at": now,
            "lost": false,
        }],
    })))
}

/// Jobs per state and queue, and attempts ended per minute and outcome
/// over the last hour (the current minute last, partly filled).
async fn stats(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let now = now_ms();
    let first = (now / MINUTE_MS - (MINUTES - 1)) * MINUTE_MS;
    let mut buckets: Vec<Map<String, Value>> = (0..MINUTES)
        .map(|i| {
            let mut b = Map::new();
            b.insert("at".into(), json!(first + i * MINUTE_MS));
            for s in OUTCOMES {
                b.insert(s.as_str().into(), json!(0));
            }
            b
        })
        .collect();
    for (m, state, n) in st.store.ended_per_minute(first).await? {
        let i = (m - first) / MINUTE_MS;
        let Some(b) = usize::try_from(i).ok().and_then(|i| buckets.get_mut(i)) else {
            continue;
        };
        if let Some(v) = b.get_mut(state.as_str()) {
            *v = json!(v.as_i64().unwrap_or(0) + n);
        }
    }
    let counts: Vec<Value> = st
        .store
        .counts()
        .await?
        .into_iter()
        .map(|(s, q, n)| json!({ "state": s.as_str(), "queue": q, "count": n }))
        .collect();
    Ok(Json(json!({
        "now": now,
        "counts": counts,
        "throughput": { "minute_ms": MINUTE_MS, "buckets": buckets },
    })))
}
