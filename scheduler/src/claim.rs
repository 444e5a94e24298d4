//! Claiming the next job for a free launcher slot: the dispatcher's hot
//! path, which a slot waits on between two jobs.
//!
//! Admission is part of the query: the dispatcher says what still fits
//! ([`Admission`]), and one `UPDATE` takes the first queued job (highest
//! priority, then oldest) within it, passing over the rest. The
//! `jobs_claimed` trigger (migration 0008) opens the attempt and records
//! the transition in the same statement: one round trip to the database
//! thread, on the dispatcher's connection.

use sqlx::Row;

use crate::error::QueueError;
use crate::queue::{now_ms, Claim, Outcome, Queue};
use crate::request::JobRequest;
use crate::state::JobState;

/// What a job may still take to be admitted now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Admission {
    /// Memory left within the worker's capacity, bytes.
    pub memory_bytes: u64,
    /// CPUs left within the worker's capacity.
    pub cpus: f64,
    /// Queues at their `max_concurrency`.
    pub full_queues: Vec<String>,
    /// Code packages at their `max_concurrency`.
    pub full_codes: Vec<String>,
}

impl Queue {
    /// Take the first queued job that `fits` admits, and start its next
    /// attempt; `None` when no queued job fits.
    pub async fn claim_next(&self, fits: &Admission) -> Result<Option<Claim>, QueueError> {
        let now = now_ms();
        let json = |v: &[String]| serde_json::Value::from(v).to_string();
        let row = sqlx::query(
            "UPDATE jobs SET state = 'running', reason = NULL, attempts = attempts + 1, \
             updated_at = ?1 \
             WHERE id = (SELECT id FROM jobs WHERE state = 'queued' \
                 AND COALESCE(memory_bytes, 0) <= ?2 AND COALESCE(cpus, 0) <= ?3 \
                 AND queue NOT IN (SELECT value FROM json_each(?4)) \
                 AND (code IS NULL OR code NOT IN (SELECT value FROM json_each(?5))) \
                 ORDER BY priority DESC, seq LIMIT 1) \
             RETURNING id, spec, payload, memory_bytes, cpus, queue, timeout_ms, attempts, run_at",
        )
        .bind(now)
        .bind(i64::try_from(fits.memory_bytes).unwrap_or(i64::MAX))
        .bind(fits.cpus + 1e-9)
        .bind(json(&fits.full_queues))
        .bind(json(&fits.full_codes))
        .fetch_optional(&self.dispatch)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let id: String = r.try_get("id")?;
        let attempt: i64 = r.try_get("attempts")?;
        let spec: String = r.try_get("spec")?;
        let request = match serde_json::from_str::<JobRequest>(&spec) {
            Ok(request) => request,
            Err(e) => {
                // Claimed, but its stored request cannot be read: end the
                // attempt in `error` rather than leave it running.
                let out = Outcome {
                    state: Some(JobState::Error),
                    reason: Some(format!("stored request unreadable: {e}")),
                    ..Default::default()
                };
                self.finish(&id, attempt, &out).await?;
                return Err(QueueError::Corrupt {
                    id,
                    what: "spec",
                    detail: e.to_string(),
                });
            }
        };
        let memory: Option<i64> = r.try_get("memory_bytes")?;
        Ok(Some(Claim {
            attempt,
            request,
            payload: r.try_get("payload")?,
            memory_bytes: memory.map(|m| m as u64),
            cpus: r.try_get("cpus")?,
            timeout_ms: r.try_get("timeout_ms")?,
            queue: r.try_get("queue")?,
            ready_at_ms: r.try_get("run_at")?,
            id,
        }))
    }
}
