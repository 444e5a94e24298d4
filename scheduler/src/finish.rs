//! Recording how an attempt ended, and moving its job on: to its end
//! state, or to `delayed` for a retry.
//!
//! Attempts are fenced: a result is recorded only while the job still runs
//! that attempt. The record is two round trips on the dispatcher's
//! connection: `BEGIN IMMEDIATE` with the fence read, then every write with
//! `COMMIT`. A record that fails midway closes the connection, and with it
//! the open transaction.

use sqlx::{Connection, Row, SqliteConnection};

use crate::error::QueueError;
use crate::queue::{backoff_ms, now_ms, queue_webhook_sql, Outcome, Queue};
use crate::state::JobState;

impl Queue {
    /// Record how attempt `n` of `id` ended and move the job on: to
    /// `complete`, to `delayed` for a retry, or to the attempt's state.
    /// Returns the job's new state, or `None` when the job no longer runs
    /// that attempt (fenced).
    pub async fn finish(
        &self,
        id: &str,
        n: i64,
        out: &Outcome,
    ) -> Result<Option<JobState>, QueueError> {
        let mut conn = self.dispatch.acquire().await?;
        let recorded = record(&mut conn, id, n, out).await;
        if recorded.is_err() {
            let _ = conn.detach().close().await;
        }
        recorded
    }
}

async fn record(
    conn: &mut SqliteConnection,
    id: &str,
    n: i64,
    out: &Outcome,
) -> Result<Option<JobState>, QueueError> {
    let now = now_ms();
    let ended = out.ended_at.unwrap_or(now);
    let row = sqlx::query(
        "BEGIN IMMEDIATE; \
         SELECT max_retries, retry_delay_ms, cancel_requested FROM jobs \
         WHERE id = ?1 AND state = 'running' AND attempts = ?2",
    )
    .bind(id)
    .bind(n)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        sqlx::query("ROLLBACK").execute(&mut *conn).await?;
        return Ok(None);
    };
    let cancelled = row.try_get::<i64, _>("cancel_requested")? != 0;
    let (attempt_state, reason) = if cancelled {
        (
            JobState::Cancelled,
            Some("cancelled while running".to_string()),
        )
    } else {
        (out.state.unwrap_or(JobState::Error), out.reason.clone())
    };
    let max_retries: i64 = row.try_get("max_retries")?;
    let retry_delay: i64 = row.try_get("retry_delay_ms")?;
    let retry =
        !matches!(attempt_state, JobState::Complete | JobState::Cancelled) && n <= max_retries;
    let (state, run_at) = if retry {
        (JobState::Delayed, ended + backoff_ms(retry_delay, n))
    } else {
        (attempt_state, ended)
    };
    // Plain `?`s, bound in order across the statements: sqlx binds a
    // numbered parameter after a gap in the numbering as NULL.
    sqlx::query(concat!(
        "UPDATE attempts SET state = ?, reason = ?, exit_code = ?, signal = ?, \
         oom_killed = ?, wall_ms = ?, cpu_usec = ?, peak_memory_bytes = ?, \
         stdout_dropped = ?, stderr_dropped = ?, ended_at = ? WHERE job_id = ? AND n = ?; \
         UPDATE jobs SET state = ?, reason = ?, run_at = ?, cancel_requested = 0, \
         updated_at = ? WHERE id = ?; \
         INSERT INTO transitions (job_id, at, state) VALUES (?, ?, ?); ",
        queue_webhook_sql!(),
        "; COMMIT"
    ))
    .bind(attempt_state.as_str())
    .bind(&reason)
    .bind(out.exit_code)
    .bind(out.signal)
    .bind(out.oom_killed.map(i64::from))
    .bind(out.wall_ms)
    .bind(out.cpu_usec)
    .bind(out.peak_memory_bytes)
    .bind(out.dropped.map(|d| d[0]))
    .bind(out.dropped.map(|d| d[1]))
    .bind(ended)
    .bind(id)
    .bind(n)
    .bind(state.as_str())
    .bind(&reason)
    .bind(run_at)
    .bind(now)
    .bind(id)
    .bind(id)
    .bind(ended)
    .bind(state.as_str())
    .bind(now)
    .bind(now)
    .bind(id)
    .bind(state.is_terminal())
    .execute(&mut *conn)
    .await?;
    Ok(Some(state))
}
