//! Claiming the next job for a free launcher slot: the dispatcher's hot
//! path, which a slot waits on between two jobs.
//!
//! Admission is part of the query: the dispatcher says what still fits
//! ([`Admission`]), and one `UPDATE` takes the first queued job (highest
//! priority, then oldest) within it, passing over the rest. The
//! `jobs_claimed` trigger (migration 0008) opens the attempt and records
//! the transition in the same statement. The claim is sent in one batch
//! with the records of the attempts that just ended ([`crate::turn`]).

use sqlx::Row;

use crate::error::QueueError;
use crate::finish::Ended;
use crate::queue::{Claim, Queue};
use crate::request::JobRequest;
use crate::state::RetryPolicy;

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

/// The claim: one statement, returning the job it started (with `spec`).
pub(crate) const CLAIM_SQL: &str = "\
UPDATE jobs SET state = 'running', reason = NULL, attempts = attempts + 1, updated_at = ? \
  WHERE id = (SELECT id FROM jobs WHERE state = 'queued' \
    AND COALESCE(memory_bytes, 0) <= ? AND COALESCE(cpus, 0) <= ? \
    AND queue NOT IN (SELECT value FROM json_each(?)) \
    AND (code IS NULL OR code NOT IN (SELECT value FROM json_each(?))) \
    ORDER BY priority DESC, seq LIMIT 1) \
  RETURNING id, spec, payload, memory_bytes, cpus, queue, timeout_ms, attempts, run_at, \
    max_retries, retry_delay_ms; ";

/// Bind [`CLAIM_SQL`]'s parameters, in order.
pub(crate) fn bind_claim<'q>(
    q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    fits: &Admission,
    now: i64,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    let json = |v: &[String]| serde_json::Value::from(v).to_string();
    q.bind(now)
        .bind(i64::try_from(fits.memory_bytes).unwrap_or(i64::MAX))
        .bind(fits.cpus + 1e-9)
        .bind(json(&fits.full_queues))
        .bind(json(&fits.full_codes))
}

/// Whether `row` is the claim's (it carries the job's `spec`).
pub(crate) fn is_claim_row(row: &sqlx::sqlite::SqliteRow) -> bool {
    row.try_get::<String, _>("spec").is_ok()
}

/// The row a claim returns, on either engine (`sqlx::FromRow` is generic
/// over the engine): one mapping to the [`Claim`].
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ClaimRecord {
    id: String,
    spec: String,
    payload: Option<Vec<u8>>,
    memory_bytes: Option<i64>,
    cpus: Option<f64>,
    queue: String,
    timeout_ms: i64,
    attempts: i64,
    run_at: i64,
    max_retries: i64,
    retry_delay_ms: i64,
}

impl ClaimRecord {
    /// The claim; when its stored request cannot be read, the end to
    /// record for the attempt (`error`, not retried) and the error.
    pub(crate) fn into_claim(self) -> Result<Claim, Box<(Ended, QueueError)>> {
        let request = match serde_json::from_str::<JobRequest>(&self.spec) {
            Ok(r) => r,
            Err(e) => {
                let why = QueueError::Corrupt {
                    id: self.id.clone(),
                    what: "spec",
                    detail: e.to_string(),
                };
                return Err(Box::new((
                    Ended::unreadable(self.id, self.attempts, &why),
                    why,
                )));
            }
        };
        Ok(Claim {
            attempt: self.attempts,
            request,
            payload: self.payload,
            memory_bytes: self.memory_bytes.map(|m| m as u64),
            cpus: self.cpus,
            timeout_ms: self.timeout_ms,
            queue: self.queue,
            ready_at_ms: self.run_at,
            retry: RetryPolicy {
                max_retries: self.max_retries,
                delay_ms: self.retry_delay_ms,
            },
            id: self.id,
        })
    }
}

impl Queue {
    /// Take the first queued job that `fits` admits, and start its next
    /// attempt; `None` when no queued job fits.
    pub async fn claim_next(&self, fits: &Admission) -> Result<Option<Claim>, QueueError> {
        self.turn(&[], Some(fits)).await?.claim
    }
}
