//! Claiming the next job for a free launcher slot: the dispatcher's hot
//! path, which a slot waits on between two jobs.
//!
//! A claim is two round trips to the database thread on the dispatcher's
//! connection: `BEGIN IMMEDIATE` with the admission columns of the first
//! candidates, then the job's move to `running`, its attempt and its
//! transition with `COMMIT`. A claim that fails midway closes the
//! connection, and with it the open transaction; the pool opens another.

use sqlx::{Connection, Row, SqliteConnection};

use crate::error::QueueError;
use crate::queue::{now_ms, Claim, Outcome, Queue};
use crate::request::JobRequest;
use crate::state::JobState;

/// Queued jobs that admission looks at per claim, in dispatch order.
const CANDIDATES: i64 = 64;

/// The admission columns of a queued job: id, memory limit, CPU limit,
/// queue and code package.
type Candidate = (String, Option<i64>, Option<f64>, String, Option<String>);

impl Queue {
    /// Take the next queued job (highest priority, then oldest) that
    /// `admit` accepts, and start its next attempt. Jobs `admit` refuses
    /// stay queued and are passed over.
    pub async fn claim_next(
        &self,
        admit: impl Fn(Option<u64>, Option<f64>, &str, Option<&str>) -> bool,
    ) -> Result<Option<Claim>, QueueError> {
        let mut conn = self.dispatch.acquire().await?;
        match claim_on(&mut conn, admit).await {
            Ok(c) => Ok(c),
            Err(Failed::Db(e)) => {
                let _ = conn.detach().close().await;
                Err(e)
            }
            Err(Failed::Spec(u)) => {
                // Claimed, but its stored request cannot be read: end the
                // attempt in `error` rather than leave it running.
                drop(conn);
                let reason = format!("stored request unreadable: {}", u.detail);
                let out = Outcome {
                    state: Some(JobState::Error),
                    reason: Some(reason),
                    ..Default::default()
                };
                self.finish(&u.id, u.attempt, &out).await?;
                Err(QueueError::Corrupt {
                    id: u.id,
                    what: "spec",
                    detail: u.detail,
                })
            }
        }
    }
}

/// A claimed job whose stored request does not parse.
struct Unreadable {
    id: String,
    attempt: i64,
    detail: String,
}

/// Why a claim failed.
enum Failed {
    Db(QueueError),
    Spec(Unreadable),
}

impl<E: Into<QueueError>> From<E> for Failed {
    fn from(e: E) -> Failed {
        Failed::Db(e.into())
    }
}

impl From<Unreadable> for Failed {
    fn from(u: Unreadable) -> Failed {
        Failed::Spec(u)
    }
}

async fn claim_on(
    conn: &mut SqliteConnection,
    admit: impl Fn(Option<u64>, Option<f64>, &str, Option<&str>) -> bool,
) -> Result<Option<Claim>, Failed> {
    let now = now_ms();
    let candidates: Vec<Candidate> = sqlx::query_as(
        "BEGIN IMMEDIATE; \
         SELECT id, memory_bytes, cpus, queue, code FROM jobs \
         WHERE state = 'queued' ORDER BY priority DESC, seq LIMIT ?1",
    )
    .bind(CANDIDATES)
    .fetch_all(&mut *conn)
    .await?;
    let taken = candidates
        .into_iter()
        .find(|(_, m, c, q, code)| admit(m.map(|m| m as u64), *c, q, code.as_deref()));
    let Some((id, memory, cpus, queue, _)) = taken else {
        sqlx::query("ROLLBACK").execute(&mut *conn).await?;
        return Ok(None);
    };
    let rows = sqlx::query(
        "UPDATE jobs SET state = 'running', reason = NULL, attempts = attempts + 1, \
         updated_at = ?1 WHERE id = ?2 \
         RETURNING spec, payload, timeout_ms, attempts, run_at; \
         INSERT INTO attempts (job_id, n, state, started_at) \
         SELECT id, attempts, 'running', ?1 FROM jobs WHERE id = ?2; \
         INSERT INTO transitions (job_id, at, state) VALUES (?2, ?1, 'running'); \
         COMMIT",
    )
    .bind(now)
    .bind(&id)
    .fetch_all(&mut *conn)
    .await?;
    let Some(r) = rows.into_iter().next() else {
        return Err(Failed::Db(QueueError::Corrupt {
            id,
            what: "claim",
            detail: "the job vanished while claimed".into(),
        }));
    };
    let attempt: i64 = r.try_get("attempts")?;
    let spec: String = r.try_get("spec")?;
    let request = match serde_json::from_str::<JobRequest>(&spec) {
        Ok(request) => request,
        Err(e) => {
            return Err(Unreadable {
                id,
                attempt,
                detail: e.to_string(),
            }
            .into())
        }
    };
    Ok(Some(Claim {
        attempt,
        request,
        payload: r.try_get("payload")?,
        memory_bytes: memory.map(|m| m as u64),
        cpus,
        timeout_ms: r.try_get("timeout_ms")?,
        queue,
        ready_at_ms: r.try_get("run_at")?,
        id,
    }))
}
