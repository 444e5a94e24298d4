//! Recording how an attempt ended, and moving its job on: to its end
//! state, or to `delayed` for a retry.
//!
//! The retry decision is made here, from the job's retry policy (read when
//! the attempt was claimed: it cannot change while the attempt runs); a
//! cancel asked for meanwhile is the one input read at record time, in the
//! SQL. Attempts are fenced: the first statement updates the job only
//! while it still runs attempt `n`, and each later statement goes on only
//! if the one before it changed a row (`changes()`), so a fenced-off
//! result writes nothing at all. The whole record is statements appended
//! to one batch: alone ([`Queue::finish`]) or ahead of the next claim
//! ([`crate::turn`]), one round trip to the database thread.

use sqlx::Row;

use crate::error::QueueError;
use crate::queue::{backoff_ms, Outcome, Queue};
use crate::state::{JobState, RetryPolicy};

/// An attempt that ended: which, under what policy, and how.
#[derive(Debug, Clone)]
pub struct Ended {
    /// Job id.
    pub id: String,
    /// The attempt's number.
    pub n: i64,
    /// The job's retry policy.
    pub retry: RetryPolicy,
    /// How it ended.
    pub outcome: Outcome,
}

impl Ended {
    /// The end of claimed attempt `n` of `id`, whose stored request could
    /// not be read (`why`): `error`, not retried (it would be as unreadable
    /// next time).
    pub(crate) fn unreadable(id: String, n: i64, why: &QueueError) -> Ended {
        Ended {
            id,
            n,
            retry: RetryPolicy::default(),
            outcome: Outcome {
                state: Some(JobState::Error),
                reason: Some(format!("stored request unreadable: {why}")),
                ..Default::default()
            },
        }
    }
}

/// What recording an attempt writes, unless a cancel was asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Decision {
    /// The job's new state: the attempt's, or `delayed` for a retry.
    pub(crate) state: JobState,
    /// The attempt's state.
    pub(crate) attempt_state: JobState,
    /// When the attempt ended, ms.
    pub(crate) ended: i64,
    /// The job's `run_at`: the end, or when the retry is due.
    pub(crate) run_at: i64,
}

/// Decide how `e` moves its job on (either engine): retried while the
/// attempt failed and retries are left.
pub(crate) fn decide(e: &Ended, now: i64) -> Decision {
    let ended = e.outcome.ended_at.unwrap_or(now);
    let attempt_state = e.outcome.state.unwrap_or(JobState::Error);
    let retry = !matches!(attempt_state, JobState::Complete | JobState::Cancelled)
        && e.n <= e.retry.max_retries;
    let (state, run_at) = if retry {
        (JobState::Delayed, ended + backoff_ms(e.retry.delay_ms, e.n))
    } else {
        (attempt_state, ended)
    };
    Decision {
        state,
        attempt_state,
        ended,
        run_at,
    }
}

/// One attempt's record: four statements, fenced and chained (module doc):
/// the job, its transition, the attempt, the webhook delivery.
/// The first returns `finished_id, finished_state` when it was recorded.
pub(crate) const FINISH_SQL: &str = "\
UPDATE jobs SET \
  state = CASE WHEN cancel_requested THEN 'cancelled' ELSE ? END, \
  reason = CASE WHEN cancel_requested THEN 'cancelled while running' ELSE ? END, \
  run_at = CASE WHEN cancel_requested THEN ? ELSE ? END, \
  cancel_requested = 0, updated_at = ? \
  WHERE id = ? AND state = 'running' AND attempts = ? \
  RETURNING id AS finished_id, state AS finished_state; \
INSERT INTO transitions (job_id, at, state) \
  SELECT id, ?, state FROM jobs WHERE id = ? AND changes() > 0; \
UPDATE attempts SET \
  state = CASE WHEN (SELECT state FROM jobs WHERE id = ?) = 'cancelled' THEN 'cancelled' ELSE ? END, \
  reason = (SELECT reason FROM jobs WHERE id = ?), \
  exit_code = ?, signal = ?, oom_killed = ?, wall_ms = ?, cpu_usec = ?, \
  peak_memory_bytes = ?, stdout_dropped = ?, stderr_dropped = ?, ended_at = ? \
  WHERE job_id = ? AND n = ? AND changes() > 0; \
INSERT INTO webhook_deliveries (job_id, url, state, next_at, created_at) \
  SELECT id, webhook, 'pending', ?, ? FROM jobs WHERE id = ? AND webhook IS NOT NULL \
  AND changes() > 0 AND state IN ('complete', 'error', 'timeout', 'killed', 'cancelled'); ";

/// Bind [`FINISH_SQL`]'s parameters for `e` (plain `?`s, in order: sqlx
/// binds a numbered parameter after a gap in the numbering as NULL).
pub(crate) fn bind_finish<'q>(
    q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    e: &'q Ended,
    now: i64,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    let out = &e.outcome;
    let Decision {
        state,
        attempt_state,
        ended,
        run_at,
    } = decide(e, now);
    q.bind(state.as_str())
        .bind(out.reason.as_deref())
        .bind(ended)
        .bind(run_at)
        .bind(now)
        .bind(e.id.as_str())
        .bind(e.n)
        // transitions
        .bind(ended)
        .bind(e.id.as_str())
        // attempts
        .bind(e.id.as_str())
        .bind(attempt_state.as_str())
        .bind(e.id.as_str())
        .bind(out.exit_code)
        .bind(out.signal)
        .bind(out.oom_killed.map(i64::from))
        .bind(out.wall_ms)
        .bind(out.cpu_usec)
        .bind(out.peak_memory_bytes)
        .bind(out.dropped.map(|d| d[0]))
        .bind(out.dropped.map(|d| d[1]))
        .bind(ended)
        .bind(e.id.as_str())
        .bind(e.n)
        // webhook delivery
        .bind(now)
        .bind(now)
        .bind(e.id.as_str())
}

/// The new state in a row that [`FINISH_SQL`] returned, if it is one.
pub(crate) fn finished_of(row: &sqlx::sqlite::SqliteRow) -> Option<(String, String)> {
    let id = row.try_get::<String, _>("finished_id").ok()?;
    let state = row.try_get::<String, _>("finished_state").ok()?;
    Some((id, state))
}

impl Queue {
    /// Record how attempt `e.n` of `e.id` ended and move the job on: to
    /// `complete`, to `delayed` for a retry, or to the attempt's state.
    /// Returns the job's new state, or `None` when the job no longer runs
    /// that attempt (fenced).
    pub async fn finish(&self, e: &Ended) -> Result<Option<JobState>, QueueError> {
        let turn = self.turn(std::slice::from_ref(e), None).await?;
        Ok(turn.recorded.into_iter().next().flatten())
    }

    /// After a crash: every `running` job lost its attempt. Record it as
    /// `killed` (worker lost) and retry the job if it has retries left.
    /// Returns the jobs recovered.
    pub async fn recover_running(&self) -> Result<Vec<String>, QueueError> {
        let running: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT id, attempts, max_retries, retry_delay_ms FROM jobs WHERE state = 'running'",
        )
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::new();
        for (id, n, max_retries, delay_ms) in running {
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
                    ..Default::default()
                },
            };
            self.finish(&e).await?;
            out.push(e.id);
        }
        Ok(out)
    }

    /// Run `sql` (a `BEGIN IMMEDIATE … COMMIT` batch) on the dispatcher's
    /// connection and return its rows. A batch that fails midway closes
    /// the connection, and with it the open transaction.
    pub(crate) async fn dispatch_batch<'q>(
        &self,
        q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> Result<Vec<sqlx::sqlite::SqliteRow>, QueueError> {
        let rows = {
            let mut conn = self.dispatch.lock().await?;
            q.fetch_all(&mut *conn).await
        };
        match rows {
            Ok(rows) => Ok(rows),
            Err(e) => {
                self.dispatch.discard().await;
                Err(e.into())
            }
        }
    }
}
