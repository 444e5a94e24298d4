//! The dispatcher's turn: record the attempts that just ended and claim
//! the next job for a freed slot, in one batch on the dispatcher's
//! connection: one round trip to the database thread per job, where the
//! record and the claim were three (and a ping before each).

use sqlx::FromRow;

use crate::claim::{bind_claim, is_claim_row, Admission, ClaimRecord, CLAIM_SQL};
use crate::error::QueueError;
use crate::finish::{bind_finish, finished_of, Ended, FINISH_SQL};
use crate::queue::{now_ms, Claim, Queue};
use crate::state::JobState;

/// What a turn did.
#[derive(Debug)]
pub struct Turn {
    /// Per ended attempt, in order: the job's new state, or `None` when
    /// the result was fenced off.
    pub recorded: Vec<Option<JobState>>,
    /// The job claimed, if one was asked for and one fits.
    pub claim: Result<Option<Claim>, QueueError>,
}

/// The batch for `ended` records and, with `claim`, a claim after them.
/// Its text depends only on the counts, so each shape is prepared once.
fn batch_sql(ended: usize, claim: bool) -> String {
    let mut sql = String::with_capacity(16 + ended * FINISH_SQL.len() + CLAIM_SQL.len());
    sql.push_str("BEGIN IMMEDIATE; ");
    for _ in 0..ended {
        sql.push_str(FINISH_SQL);
    }
    if claim {
        sql.push_str(CLAIM_SQL);
    }
    sql.push_str("COMMIT");
    sql
}

impl Queue {
    /// Record `ended` and, given `fits`, claim the first queued job it
    /// admits, in one transaction. A claimed job whose stored request
    /// cannot be read is ended in `error` and reported in `claim`.
    pub async fn turn(
        &self,
        ended: &[Ended],
        fits: Option<&Admission>,
    ) -> Result<Turn, QueueError> {
        let now = now_ms();
        let sql = batch_sql(ended.len(), fits.is_some());
        let mut q = sqlx::query(&sql);
        for e in ended {
            q = bind_finish(q, e, now);
        }
        if let Some(fits) = fits {
            q = bind_claim(q, fits, now);
        }
        let rows = self.dispatch_batch(q).await?;
        let mut recorded = vec![None; ended.len()];
        let mut claim = Ok(None);
        for row in &rows {
            if let Some((id, state)) = finished_of(row) {
                let at = ended.iter().position(|e| e.id == id);
                if let (Some(i), Some(s)) = (at, JobState::parse(&state)) {
                    recorded[i] = Some(s);
                }
            } else if is_claim_row(row) {
                claim = match ClaimRecord::from_row(row)?.into_claim() {
                    Ok(c) => Ok(Some(c)),
                    Err(failed) => {
                        let (end, why) = *failed;
                        Err(self.end_unreadable(end, why).await)
                    }
                };
            }
        }
        Ok(Turn { recorded, claim })
    }

    /// Record `e`, the end of a claimed attempt whose request could not
    /// be read (`why`), rather than leave it running; the error to report.
    async fn end_unreadable(&self, e: Ended, why: QueueError) -> QueueError {
        match Box::pin(self.finish(&e)).await {
            Ok(_) => why,
            Err(err) => err,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Outcome;
    use crate::request::JobRequest;

    const FITS: Admission = Admission {
        memory_bytes: u64::MAX >> 1,
        cpus: 64.0,
        full_queues: Vec::new(),
        full_codes: Vec::new(),
    };

    async fn queue() -> (tempfile::TempDir, Queue) {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = Queue::open(&dir.path().join("jobs.db"))
            .await
            .expect("open");
        (dir, q)
    }

    async fn submit(q: &Queue, job: JobRequest) -> String {
        let v = job.validate().expect("valid job");
        q.submit(vec![v]).await.expect("submit").remove(0).0.id
    }

    fn job() -> JobRequest {
        JobRequest {
            image: "busybox".into(),
            webhook: Some("http://127.0.0.1:9/hook".into()),
            ..Default::default()
        }
    }

    fn ended(c: &Claim, n: i64, state: JobState) -> Ended {
        Ended {
            id: c.id.clone(),
            n,
            retry: c.retry,
            outcome: Outcome {
                state: Some(state),
                reason: Some("exit 3".into()),
                exit_code: Some(3),
                ..Default::default()
            },
        }
    }

    async fn deliveries(q: &Queue) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries")
            .fetch_one(q.pool())
            .await
            .expect("count")
    }

    /// A result for an attempt the job no longer runs writes nothing: not
    /// the job, not the attempt, no transition, no webhook delivery.
    #[tokio::test]
    async fn test_a_fenced_off_result_writes_nothing() {
        let (_dir, q) = queue().await;
        let id = submit(&q, job()).await;
        let c = q.claim_next(&FITS).await.expect("claim").expect("a job");
        let before = q.get(&id).await.expect("get");
        let late = ended(&c, c.attempt + 1, JobState::Complete);
        assert_eq!(q.finish(&late).await.expect("finish"), None);
        let after = q.get(&id).await.expect("get");
        assert_eq!(after.state, JobState::Running);
        assert_eq!(after.attempt_list, before.attempt_list);
        assert_eq!(after.transitions.len(), before.transitions.len());
        assert_eq!(deliveries(&q).await, 0);

        let on_time = ended(&c, c.attempt, JobState::Complete);
        assert_eq!(
            q.finish(&on_time).await.expect("finish"),
            Some(JobState::Complete)
        );
        let done = q.get(&id).await.expect("get");
        assert_eq!(done.attempt_list[0].state, JobState::Complete);
        assert_eq!(done.attempt_list[0].exit_code, Some(3));
        assert_eq!(done.transitions.len(), before.transitions.len() + 1);
        assert_eq!(deliveries(&q).await, 1);
        // Recorded once: the same result again is fenced off.
        assert_eq!(q.finish(&on_time).await.expect("finish"), None);
        assert_eq!(deliveries(&q).await, 1);
    }

    /// A failed attempt with retries left puts the job off (`delayed`, no
    /// webhook yet); a cancel asked for while it ran wins over the outcome.
    #[tokio::test]
    async fn test_retry_and_cancel_are_decided_at_record_time() {
        let (_dir, q) = queue().await;
        let id = submit(
            &q,
            JobRequest {
                max_retries: Some(1),
                retry_delay: Some(10),
                ..job()
            },
        )
        .await;
        let c = q.claim_next(&FITS).await.expect("claim").expect("a job");
        assert_eq!(c.retry.max_retries, 1);
        assert_eq!(c.retry.delay_ms, 10_000);
        let e = ended(&c, c.attempt, JobState::Error);
        let ended_at = crate::queue::now_ms();
        assert_eq!(q.finish(&e).await.expect("finish"), Some(JobState::Delayed));
        let j = q.get(&id).await.expect("get");
        assert_eq!(j.attempt_list[0].state, JobState::Error);
        assert!(j.run_at >= ended_at + 8_000, "{} vs {ended_at}", j.run_at);
        assert_eq!(deliveries(&q).await, 0);

        let id = submit(&q, job()).await;
        let c = q.claim_next(&FITS).await.expect("claim").expect("a job");
        assert_eq!(c.id, id);
        assert!(q.cancel(&id).await.expect("cancel"), "running: marked");
        let e = ended(&c, c.attempt, JobState::Killed);
        assert_eq!(
            q.finish(&e).await.expect("finish"),
            Some(JobState::Cancelled)
        );
        let j = q.get(&id).await.expect("get");
        assert_eq!(j.attempt_list[0].state, JobState::Cancelled);
        assert_eq!(
            j.attempt_list[0].reason.as_deref(),
            Some("cancelled while running")
        );
        assert_eq!(deliveries(&q).await, 1);
    }

    /// One turn records the ended attempts and claims the next job.
    #[tokio::test]
    async fn test_a_turn_records_and_claims_together() {
        let (_dir, q) = queue().await;
        let first = submit(&q, job()).await;
        let second = submit(&q, job()).await;
        let c = q.claim_next(&FITS).await.expect("claim").expect("a job");
        assert_eq!(c.id, first);
        let t = q
            .turn(&[ended(&c, c.attempt, JobState::Complete)], Some(&FITS))
            .await
            .expect("turn");
        assert_eq!(t.recorded, vec![Some(JobState::Complete)]);
        let next = t.claim.expect("claim").expect("the second job");
        assert_eq!(next.id, second);
        assert_eq!(q.get(&first).await.expect("get").state, JobState::Complete);
        assert_eq!(q.get(&second).await.expect("get").state, JobState::Running);
        let t = q.turn(&[], Some(&FITS)).await.expect("turn");
        assert!(t.claim.expect("claim").is_none(), "queue empty");
    }
}
