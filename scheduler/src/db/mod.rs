//! The storage seam: the queue's operations, each one transaction, behind
//! one trait ([`Storage`]) with one implementation per engine. SQLite
//! (`sqlite.rs`, over [`crate::queue::Queue`]) serves one host; PostgreSQL
//! (`postgres/`) serves a fleet. The job model, validation, admission and
//! the retry decision stay engine-neutral (`submit.rs`, `claim.rs`,
//! `finish.rs`, `records.rs`); only SQL lives here. See `docs/fleet.md`.

use crate::claim::Admission;
use crate::error::QueueError;
use crate::finish::Ended;
use crate::request::ValidJob;
use crate::state::{Job, JobState};
use crate::turn::Turn;

pub mod code_store;
#[cfg(test)]
pub(crate) mod conformance;
#[cfg(test)]
mod conformance_code;
#[cfg(test)]
mod conformance_hooks;
pub mod hook_store;
pub mod postgres;
pub mod queue_store;
pub mod schedule_store;
mod sqlite;
mod sqlite_code;
mod sqlite_hooks;
mod sqlite_queues;
mod sqlite_schedules;
mod sqlite_webhooks;
pub mod webhook_store;

/// The queue's operations, as every engine provides them.
#[async_trait::async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Accept jobs, all or none. A job whose idempotency key was seen
    /// answers with that job, and `false`.
    async fn submit(&self, jobs: Vec<ValidJob>) -> Result<Vec<(Job, bool)>, QueueError>;

    /// Record `ended` (fenced) and, given `fits`, claim the first queued
    /// job it admits for this worker.
    async fn turn(&self, ended: &[Ended], fits: Option<&Admission>) -> Result<Turn, QueueError>;

    /// One job, with its attempts and transitions.
    async fn get(&self, id: &str) -> Result<Job, QueueError>;

    /// Move due `delayed` jobs to `queued`: how many, and when the next
    /// delayed job is due.
    async fn promote_delayed(&self) -> Result<(u64, Option<i64>), QueueError>;

    /// Cancel: a waiting job at once (`false`); a running one is marked
    /// (`true`) and its attempt must be stopped.
    async fn cancel(&self, id: &str) -> Result<bool, QueueError>;

    /// Jobs per state and queue.
    async fn counts(&self) -> Result<Vec<(JobState, String, i64)>, QueueError>;

    /// Record one ended attempt alone (fenced): its job's new state, or
    /// `None` when the result was fenced off.
    async fn finish(&self, e: &Ended) -> Result<Option<JobState>, QueueError> {
        let t = self.turn(std::slice::from_ref(e), None).await?;
        Ok(t.recorded.into_iter().next().flatten())
    }

    /// A draining worker's attempts still running (job, attempt): each
    /// ends as `killed` ("worker stopped") and its job is queued again
    /// without using a retry. Fenced: an attempt no longer running
    /// changes nothing.
    async fn requeue_stopped(&self, running: &[(String, i64)]) -> Result<(), QueueError>;

    /// Jobs in submit order, filtered and paged.
    async fn list(&self, f: &crate::queue::ListFilter) -> Result<Vec<Job>, QueueError>;

    /// Queue a finished job again, by hand (a conflict if it has not
    /// finished).
    async fn retry(&self, id: &str) -> Result<(), QueueError>;

    /// The concurrency caps of queues and code packages.
    async fn caps(&self) -> Result<Caps, QueueError>;

    /// Attempts ended at or after `since_ms`, per minute and outcome:
    /// (minute's start, ms since the epoch; state; count). The
    /// dashboard's throughput chart.
    async fn ended_per_minute(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(i64, JobState, i64)>, QueueError>;
}

/// [`Storage::ended_per_minute`]'s query, with the engine's placeholder.
pub(crate) fn ended_per_minute_sql(placeholder: &str) -> String {
    format!(
        "SELECT (ended_at / 60000) * 60000 AS m, state, COUNT(*) AS n FROM attempts \
         WHERE ended_at IS NOT NULL AND ended_at >= {placeholder} GROUP BY m, state ORDER BY m"
    )
}

/// The concurrency caps admission honours: name → `max_concurrency`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Caps {
    /// Per queue.
    pub queues: std::collections::HashMap<String, i64>,
    /// Per code package.
    pub codes: std::collections::HashMap<String, i64>,
}
