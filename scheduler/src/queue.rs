//! The durable job queue: every state change is one SQLite transaction.
//!
//! What the API accepts is committed with `synchronous=FULL` before it
//! answers: a 201 means on disk. The dispatcher's own writes (claims,
//! attempt results, delayed jobs falling due) go through its own
//! connection with `synchronous=NORMAL`: each commit reaches the kernel, so
//! it survives the worker's death, and the disk at the next `FULL` commit
//! or checkpoint (the WAL is synced in order). A host crash can lose the
//! last few of them; those jobs come back `queued` or `running`, and
//! recovery runs them again, as it does a job whose host died under it.
//!
//! Attempts are fenced: an attempt's result is recorded only while the job
//! is still `running` that attempt, so a late writer cannot overwrite a
//! recovered or cancelled job.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Row, SqlitePool};

use crate::error::QueueError;
use crate::records::{state_of, JobRecord, ATTEMPT_COLUMNS};
use crate::request::JobRequest;
use crate::state::{Job, JobState};

type Result<T> = std::result::Result<T, QueueError>;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The queue, over its database.
#[derive(Debug, Clone)]
pub struct Queue {
    db: SqlitePool,
    /// The dispatcher's own connection (`synchronous=NORMAL`): claims,
    /// attempt results and delayed jobs falling due.
    pub(crate) dispatch: crate::dispatch_conn::DispatchConn,
}

/// A job handed to the dispatcher to run one attempt.
#[derive(Debug, Clone)]
pub struct Claim {
    /// Job id.
    pub id: String,
    /// The attempt's number.
    pub attempt: i64,
    /// The request.
    pub request: JobRequest,
    /// The payload, if any.
    pub payload: Option<Vec<u8>>,
    /// Memory limit, bytes (admission).
    pub memory_bytes: Option<u64>,
    /// CPU limit (admission).
    pub cpus: Option<f64>,
    /// Timeout, ms.
    pub timeout_ms: i64,
    /// Its queue.
    pub queue: String,
    /// When the job became due (its `run_at`: submit, delay or retry), ms.
    pub ready_at_ms: i64,
    /// Its retry policy.
    pub retry: crate::state::RetryPolicy,
}

/// How an attempt ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// `complete`, `error`, `timeout`, `killed` or `cancelled`.
    pub state: Option<JobState>,
    /// Why.
    pub reason: Option<String>,
    /// Exit status.
    pub exit_code: Option<i64>,
    /// Killing signal.
    pub signal: Option<i64>,
    /// OOM-killed.
    pub oom_killed: Option<bool>,
    /// Wall time, ms.
    pub wall_ms: Option<f64>,
    /// CPU, µs.
    pub cpu_usec: Option<i64>,
    /// Peak memory, bytes.
    pub peak_memory_bytes: Option<i64>,
    /// Output dropped: stdout, stderr.
    pub dropped: Option<[i64; 2]>,
    /// Launch latency (request to the job's process running), ms.
    pub launch_ms: Option<f64>,
    /// When the attempt ended (ms since the epoch), if not when recorded:
    /// the dispatcher records an attempt after its slot has the next job.
    pub ended_at: Option<i64>,
}

/// Filters for [`Queue::list`].
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this label.
    pub label: Option<String>,
    /// At most this many (default 100).
    pub limit: Option<i64>,
    /// Only jobs submitted after the job with this id (paging); with
    /// `newest_first`, before it.
    pub after: Option<String>,
    /// Newest first (the dashboard's recent jobs), instead of oldest.
    pub newest_first: bool,
}

impl ListFilter {
    /// The `seq` bound a page starts from when no cursor is given.
    pub(crate) fn start_seq(&self) -> i64 {
        if self.newest_first {
            i64::MAX
        } else {
            0
        }
    }

    /// `WHERE` on `seq` for this direction, and `ORDER BY` (SQL text
    /// chosen from constants, never from the request).
    pub(crate) fn seq_order(&self) -> (&'static str, &'static str) {
        if self.newest_first {
            ("seq <", "seq DESC")
        } else {
            ("seq >", "seq")
        }
    }
}

/// Delay before retry `n` (1-based): `base · 2^(n-1)`, at most an hour
/// (or `base` if larger), ±20% jitter.
pub fn backoff_ms(base_ms: i64, n: i64) -> i64 {
    let exp = base_ms.saturating_mul(1i64 << (n - 1).clamp(0, 20));
    let capped = exp.min(base_ms.max(3_600_000));
    let jitter = (capped as f64 * 0.2 * (rand::random::<f64>() * 2.0 - 1.0)) as i64;
    (capped + jitter).max(0)
}

const JOB_COLUMNS: &str = "id, state, reason, queue, label, priority, spec, \
     COALESCE(length(payload), 0) AS payload_bytes, attempts, max_retries, run_at, \
     created_at, updated_at";

async fn transition(
    tx: &mut sqlx::SqliteConnection,
    id: &str,
    state: JobState,
    at: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO transitions (job_id, at, state) VALUES (?, ?, ?)")
        .bind(id)
        .bind(at)
        .bind(state.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Queue the job's webhook delivery (if it has a webhook), in the
/// transaction that ends the job.
async fn queue_webhook(tx: &mut sqlx::SqliteConnection, id: &str, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO webhook_deliveries (job_id, url, state, next_at, created_at) \
         SELECT id, webhook, 'pending', ?, ? FROM jobs WHERE id = ? AND webhook IS NOT NULL",
    )
    .bind(now)
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

impl Queue {
    /// Open (creating) the database at `path` and apply migrations.
    pub async fn open(path: &Path) -> Result<Queue> {
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(10));
        let db = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.clone())
            .await?;
        crate::migrations::run(&db).await?;
        let dispatch =
            crate::dispatch_conn::DispatchConn::open(opts.synchronous(SqliteSynchronous::Normal))
                .await?;
        Ok(Queue { db, dispatch })
    }

    /// A write transaction, taking SQLite's write lock at `BEGIN`
    /// (`IMMEDIATE`), so it waits out another writer (the busy timeout)
    /// instead of failing with "database is locked" when a read
    /// transaction upgrades to a write.
    pub async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.db.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// The database (for the tables beside the queue's: schedules, hooks,
    /// webhook deliveries).
    pub fn pool(&self) -> &SqlitePool {
        &self.db
    }

    /// One job, with its attempts and transitions.
    pub async fn get(&self, id: &str) -> Result<Job> {
        let job: JobRecord =
            sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"))
                .bind(id)
                .fetch_optional(&self.db)
                .await?
                .ok_or_else(|| QueueError::NotFound(id.to_string()))?;
        let attempts = sqlx::query_as(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE job_id = ? ORDER BY n"
        ))
        .bind(id)
        .fetch_all(&self.db)
        .await?;
        let transitions =
            sqlx::query_as("SELECT state, at FROM transitions WHERE job_id = ? ORDER BY rowid")
                .bind(id)
                .fetch_all(&self.db)
                .await?;
        job.with_history(attempts, transitions)
    }

    /// Jobs in submission order, filtered.
    pub async fn list(&self, f: &ListFilter) -> Result<Vec<Job>> {
        let after: i64 = match f.after.as_deref().filter(|a| !a.is_empty()) {
            None => f.start_seq(),
            Some(id) => sqlx::query_scalar("SELECT seq FROM jobs WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.db)
                .await?
                .ok_or_else(|| QueueError::NotFound(id.to_string()))?,
        };
        let (from, order) = f.seq_order();
        let rows: Vec<JobRecord> = sqlx::query_as(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE {from} ? \
             AND (? IS NULL OR state = ?) AND (? IS NULL OR queue = ?) \
             AND (? IS NULL OR label = ?) ORDER BY {order} LIMIT ?"
        ))
        .bind(after)
        .bind(f.state.map(JobState::as_str))
        .bind(f.state.map(JobState::as_str))
        .bind(&f.queue)
        .bind(&f.queue)
        .bind(&f.label)
        .bind(&f.label)
        .bind(f.limit.unwrap_or(100).clamp(1, 1000))
        .fetch_all(&self.db)
        .await?;
        rows.into_iter().map(JobRecord::into_job).collect()
    }

    /// Jobs per state.
    pub async fn counts(&self) -> Result<Vec<(JobState, String, i64)>> {
        let rows =
            sqlx::query("SELECT state, queue, COUNT(*) AS n FROM jobs GROUP BY state, queue")
                .fetch_all(&self.db)
                .await?;
        let mut out = Vec::new();
        for r in rows {
            let s: String = r.try_get("state")?;
            out.push((
                state_of("(count)", &s)?,
                r.try_get("queue")?,
                r.try_get("n")?,
            ));
        }
        Ok(out)
    }

    /// Move `delayed` jobs whose time has come to `queued`; returns how many,
    /// and when the next delayed job is due.
    pub async fn promote_delayed(&self) -> Result<(u64, Option<i64>)> {
        let now = now_ms();
        // Written through to the kernel at commit (safe when the worker
        // dies), synced to disk by the next `FULL` commit or checkpoint.
        let mut conn = self.dispatch.lock().await?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM jobs WHERE state = 'delayed' AND run_at <= ?")
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
        for id in &ids {
            sqlx::query("UPDATE jobs SET state = 'queued', updated_at = ? WHERE id = ?")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            transition(&mut tx, id, JobState::Queued, now).await?;
        }
        let next: Option<i64> =
            sqlx::query_scalar("SELECT MIN(run_at) FROM jobs WHERE state = 'delayed'")
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok((ids.len() as u64, next))
    }

    /// Cancel: a waiting job is cancelled at once (`Ok(false)`); a running
    /// one is marked (`Ok(true)`) and its attempt must be stopped.
    pub async fn cancel(&self, id: &str) -> Result<bool> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let state = state_of(id, &state.ok_or_else(|| QueueError::NotFound(id.into()))?)?;
        match state {
            JobState::Queued | JobState::Delayed => {
                sqlx::query(
                    "UPDATE jobs SET state = 'cancelled', reason = 'cancelled', updated_at = ? \
                     WHERE id = ?",
                )
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                transition(&mut tx, id, JobState::Cancelled, now).await?;
                queue_webhook(&mut tx, id, now).await?;
                tx.commit().await?;
                Ok(false)
            }
            JobState::Running => {
                sqlx::query("UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ?")
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }
            s => Err(QueueError::Conflict {
                id: id.into(),
                state: s.to_string(),
                what: "only a delayed, queued or running job can be cancelled",
            }),
        }
    }

    /// Queue a finished job again (one more attempt; no automatic retries
    /// beyond those it had).
    pub async fn retry(&self, id: &str) -> Result<()> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let state = state_of(id, &state.ok_or_else(|| QueueError::NotFound(id.into()))?)?;
        if !state.is_terminal() {
            return Err(QueueError::Conflict {
                id: id.into(),
                state: state.to_string(),
                what: "only a finished job can be retried",
            });
        }
        sqlx::query(
            "UPDATE jobs SET state = 'queued', reason = NULL, run_at = ?, updated_at = ? \
             WHERE id = ?",
        )
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        transition(&mut tx, id, JobState::Queued, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// At shutdown, after the drain timeout: end each running attempt as
    /// `killed` (worker stopping) and queue its job again, without counting
    /// it against the job's retries.
    pub async fn requeue_stopped(&self, running: &[(String, i64)]) -> Result<()> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        for (id, n) in running {
            let res = sqlx::query(
                "UPDATE jobs SET state = 'queued', reason = 'worker stopped', \
                 max_retries = max_retries + 1, updated_at = ? \
                 WHERE id = ? AND state = 'running' AND attempts = ?",
            )
            .bind(now)
            .bind(id)
            .bind(n)
            .execute(&mut *tx)
            .await?;
            if res.rows_affected() == 0 {
                continue;
            }
            sqlx::query(
                "UPDATE attempts SET state = 'killed', reason = 'worker stopped', ended_at = ? \
                 WHERE job_id = ? AND n = ?",
            )
            .bind(now)
            .bind(id)
            .bind(n)
            .execute(&mut *tx)
            .await?;
            transition(&mut tx, id, JobState::Queued, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether a cancellation was asked for while `id` runs.
    pub async fn cancel_requested(&self, id: &str) -> Result<bool> {
        let v: Option<i64> = sqlx::query_scalar("SELECT cancel_requested FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.db)
            .await?;
        Ok(v.unwrap_or(0) != 0)
    }

    /// Close the database.
    pub async fn close(&self) {
        self.db.close().await;
    }
}
