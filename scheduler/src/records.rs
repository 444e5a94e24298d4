//! The rows both engines read a job from, and the job model they make:
//! one mapping for SQLite and PostgreSQL (`sqlx::FromRow` is generic over
//! the engine), so each engine's SQL only has to name the columns.

use crate::error::QueueError;
use crate::request::JobRequest;
use crate::state::{Attempt, Job, JobState, Transition};

/// A `jobs` row as the views read it (`payload_bytes` computed).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct JobRecord {
    id: String,
    state: String,
    reason: Option<String>,
    queue: String,
    label: Option<String>,
    priority: i64,
    spec: String,
    payload_bytes: i64,
    attempts: i64,
    max_retries: i64,
    run_at: i64,
    created_at: i64,
    updated_at: i64,
}

/// An `attempts` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AttemptRecord {
    n: i64,
    state: String,
    reason: Option<String>,
    exit_code: Option<i64>,
    signal: Option<i64>,
    oom_killed: Option<bool>,
    wall_ms: Option<f64>,
    cpu_usec: Option<i64>,
    peak_memory_bytes: Option<i64>,
    stdout_dropped: Option<i64>,
    stderr_dropped: Option<i64>,
    started_at: i64,
    ended_at: Option<i64>,
    /// The worker that ran it (a fleet's; SQLite has no such column).
    #[sqlx(default)]
    worker_id: Option<String>,
}

/// A `transitions` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TransitionRecord {
    state: String,
    at: i64,
}

/// The state named `s` in job `id`'s rows.
pub(crate) fn state_of(id: &str, s: &str) -> Result<JobState, QueueError> {
    JobState::parse(s).ok_or_else(|| QueueError::Corrupt {
        id: id.to_string(),
        what: "state",
        detail: format!("unknown state {s:?}"),
    })
}

impl JobRecord {
    /// The job, without its attempts and transitions.
    pub(crate) fn into_job(self) -> Result<Job, QueueError> {
        let request: JobRequest =
            serde_json::from_str(&self.spec).map_err(|e| QueueError::Corrupt {
                id: self.id.clone(),
                what: "spec",
                detail: e.to_string(),
            })?;
        Ok(Job {
            state: state_of(&self.id, &self.state)?,
            reason: self.reason,
            queue: self.queue,
            label: self.label,
            priority: self.priority,
            request,
            payload_bytes: self.payload_bytes,
            attempts: self.attempts,
            max_retries: self.max_retries,
            run_at: self.run_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            attempt_list: Vec::new(),
            transitions: Vec::new(),
            id: self.id,
        })
    }

    /// The job with its attempts and transitions, in order.
    pub(crate) fn with_history(
        self,
        attempts: Vec<AttemptRecord>,
        transitions: Vec<TransitionRecord>,
    ) -> Result<Job, QueueError> {
        let mut job = self.into_job()?;
        for a in attempts {
            job.attempt_list.push(Attempt {
                n: a.n,
                state: state_of(&job.id, &a.state)?,
                reason: a.reason,
                exit_code: a.exit_code,
                signal: a.signal,
                oom_killed: a.oom_killed,
                wall_ms: a.wall_ms,
                cpu_usec: a.cpu_usec,
                peak_memory_bytes: a.peak_memory_bytes,
                output_dropped_bytes: match (a.stdout_dropped, a.stderr_dropped) {
                    (Some(o), Some(e)) => Some([o, e]),
                    _ => None,
                },
                started_at: a.started_at,
                ended_at: a.ended_at,
                worker: a.worker_id,
            });
        }
        for t in transitions {
            job.transitions.push(Transition {
                state: state_of(&job.id, &t.state)?,
                at: t.at,
            });
        }
        Ok(job)
    }
}

/// The attempt columns, in [`AttemptRecord`]'s names (both engines).
pub(crate) const ATTEMPT_COLUMNS: &str = "n, state, reason, exit_code, signal, oom_killed, \
     wall_ms, cpu_usec, peak_memory_bytes, stdout_dropped, stderr_dropped, started_at, ended_at";
