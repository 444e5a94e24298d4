//! Leases on PostgreSQL: a worker holds each attempt it claimed until
//! `lease_until`, and extends all of them with each heartbeat; any worker
//! ends the attempts whose lease ran out (their worker crashed, was cut
//! off, or lost its host) as `killed` ("worker lost"), retrying the job if
//! it has retries left, exactly as a worker's own recovery does.
//!
//! A heartbeat that finds one of its attempts gone (ended by another
//! worker while this one was cut off) reports it, so that the worker stops
//! that container; its late result is fenced anyway (`finish`).

use sqlx::Row;

use super::PgStore;
use crate::error::QueueError;
use crate::finish::Ended;
use crate::queue::{now_ms, Outcome};
use crate::state::{JobState, RetryPolicy};

/// What this worker is, as its heartbeat records it in `workers`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerInfo {
    /// Host name.
    pub host: String,
    /// Where its API listens, if anywhere but its socket.
    pub address: Option<String>,
    /// Launcher slots.
    pub slots: i64,
    /// Memory capacity, bytes.
    pub memory_bytes: i64,
    /// CPU capacity.
    pub cpus: f64,
    /// Jobs it runs now.
    pub running: i64,
    /// Image ids in its store.
    pub images: Vec<String>,
    /// skiff's version.
    pub version: String,
}

impl PgStore {
    /// Record this worker's heartbeat and extend the leases of the
    /// attempts it holds; the `(job, attempt)`s it still holds.
    pub async fn heartbeat(&self, info: &WorkerInfo) -> Result<Vec<(String, i64)>, QueueError> {
        let now = now_ms();
        let images = serde_json::Value::from(info.images.clone()).to_string();
        let rows = sqlx::query(
            "WITH w AS ( \
               INSERT INTO workers (id, host, address, slots, memory_bytes, cpus, running, \
                 images, version, started_at, heartbeat_at) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
               ON CONFLICT (id) DO UPDATE SET host = $2, address = $3, slots = $4, \
                 memory_bytes = $5, cpus = $6, running = $7, images = $8, version = $9, \
                 heartbeat_at = $10 \
             ) \
             UPDATE jobs SET lease_until = $11 \
             WHERE state = 'running' AND worker_id = $1 RETURNING id, attempts",
        )
        .bind(&self.worker)
        .bind(&info.host)
        .bind(&info.address)
        .bind(info.slots)
        .bind(info.memory_bytes)
        .bind(info.cpus)
        .bind(info.running)
        .bind(images)
        .bind(&info.version)
        .bind(now)
        .bind(now + self.lease_ms())
        .fetch_all(&self.dispatch)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("attempts")?)))
            .collect()
    }

    /// End every attempt whose lease ran out as `killed` ("worker lost"),
    /// retrying its job if it has retries left; the jobs and their new
    /// states. The attempts are locked while they are ended, so a late
    /// heartbeat of their worker waits, then finds them gone.
    pub async fn reap_expired(&self) -> Result<Vec<(String, JobState)>, QueueError> {
        let now = now_ms();
        let mut tx = self.dispatch.begin().await?;
        let lost: Vec<(String, i64, i64, i64, String)> = sqlx::query_as(
            "SELECT id, attempts, max_retries, retry_delay_ms, worker_id FROM jobs \
             WHERE state = 'running' AND lease_until < $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::with_capacity(lost.len());
        for (id, n, max_retries, delay_ms, worker) in lost {
            let e = Ended {
                id,
                n,
                retry: RetryPolicy {
                    max_retries,
                    delay_ms,
                },
                outcome: Outcome {
                    state: Some(JobState::Killed),
                    reason: Some("worker lost".into()),
                    ended_at: Some(now),
                    ..Default::default()
                },
            };
            if let Some(state) = super::turn::record_in(&mut tx, &e, &worker, now).await? {
                out.push((e.id, state));
            }
        }
        tx.commit().await?;
        Ok(out)
    }
}
