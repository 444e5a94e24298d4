//! Leases on PostgreSQL: a worker holds each attempt it claimed until
//! `lease_until`, and extends all of them with each heartbeat; any worker
//! ends the attempts whose lease ran out (their worker crashed, was cut
//! off, or lost its host) as `killed` ("worker lost"), retrying the job if
//! it has retries left, exactly as a worker's own recovery does.
//!
//! Lease ends are the database's clock plus the lease (not a worker's
//! clock), so a worker whose clock is off does not end live attempts.
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
    /// Image references its store resolves (ids and tags).
    pub images: Vec<String>,
    /// skiff's version.
    pub version: String,
}

impl PgStore {
    /// Record this worker's heartbeat and extend the leases of the
    /// attempts it runs (`running`: job, attempt); those it still holds.
    /// An attempt it holds in the database but does not run (a claim whose
    /// answer was lost) is not extended, and is reaped when its lease ends.
    pub async fn heartbeat(
        &self,
        info: &WorkerInfo,
        running: &[(String, i64)],
    ) -> Result<Vec<(String, i64)>, QueueError> {
        let now = now_ms();
        let ids: Vec<&str> = running.iter().map(|r| r.0.as_str()).collect();
        let ns: Vec<i64> = running.iter().map(|r| r.1).collect();
        let images = serde_json::Value::from(info.images.clone()).to_string();
        let rows = sqlx::query(
            "WITH w AS ( \
               INSERT INTO workers (id, host, address, slots, memory_bytes, cpus, running, \
                 images, version, started_at, heartbeat_at) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $10) \
               ON CONFLICT (id) DO UPDATE SET host = $2, address = $3, slots = $4, \
                 memory_bytes = $5, cpus = $6, running = $7, images = $8::jsonb, version = $9, \
                 heartbeat_at = $10 \
             ) \
             UPDATE jobs SET lease_until = (extract(epoch FROM clock_timestamp()) * 1000)::bigint + $11 \
             FROM UNNEST($12::text[], $13::bigint[]) AS h(id, n) \
             WHERE jobs.id = h.id AND jobs.attempts = h.n AND jobs.state = 'running' \
               AND jobs.worker_id = $1 \
             RETURNING jobs.id, jobs.attempts",
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
        .bind(self.lease_ms())
        .bind(&ids)
        .bind(&ns)
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
        self.end_lost(
            "lease_until < (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
            None,
        )
        .await
    }

    /// At start: end the attempts this worker held when it stopped (it
    /// crashed or was killed; its containers died with it) as `killed`
    /// ("worker lost"), as a reaper would once their leases ran out.
    pub async fn recover_mine(&self) -> Result<Vec<(String, JobState)>, QueueError> {
        self.end_lost("worker_id = $1", Some(&self.worker)).await
    }

    /// End the running attempts that `cond` selects (`$1`: `arg`).
    async fn end_lost(
        &self,
        cond: &str,
        arg: Option<&str>,
    ) -> Result<Vec<(String, JobState)>, QueueError> {
        let now = now_ms();
        let mut tx = self.dispatch.begin().await?;
        let sql = format!(
            "SELECT id, attempts, max_retries, retry_delay_ms, worker_id FROM jobs \
             WHERE state = 'running' AND {cond} FOR UPDATE SKIP LOCKED"
        );
        let mut q = sqlx::query_as(&sql);
        if let Some(a) = arg {
            q = q.bind(a);
        }
        let lost: Vec<(String, i64, i64, i64, String)> = q.fetch_all(&mut *tx).await?;
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
            if let Some(state) =
                super::turn::record_in(&mut tx, &e, &worker, now, [None, None]).await?
            {
                out.push((e.id, state));
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// The attempts this worker runs whose jobs were asked to cancel (by
    /// any worker's API): they are to be stopped.
    pub async fn cancels_requested(&self) -> Result<Vec<(String, i64)>, QueueError> {
        Ok(sqlx::query_as(
            "SELECT id, attempts FROM jobs \
             WHERE state = 'running' AND cancel_requested AND worker_id = $1",
        )
        .bind(&self.worker)
        .fetch_all(&self.pool)
        .await?)
    }
}
