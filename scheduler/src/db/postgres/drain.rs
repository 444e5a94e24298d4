//! A draining worker on PostgreSQL: the attempts it still runs at the
//! drain timeout end as `killed` ("worker stopped"), and their jobs are
//! queued again without using a retry, for any worker to take (a submit's
//! notification wakes the others). Fenced like every write of an attempt:
//! only attempts this worker still holds change.

use super::PgStore;
use crate::error::QueueError;
use crate::queue::now_ms;

impl PgStore {
    pub(super) async fn requeue(&self, running: &[(String, i64)]) -> Result<(), QueueError> {
        if running.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = running.iter().map(|r| r.0.as_str()).collect();
        let ns: Vec<i64> = running.iter().map(|r| r.1).collect();
        let mut tx = self.pool.begin().await?;
        let requeued: i64 = sqlx::query_scalar(
            "WITH j AS ( \
               UPDATE jobs SET state = 'queued', reason = 'worker stopped', \
                 max_retries = max_retries + 1, worker_id = NULL, lease_until = NULL, \
                 updated_at = $1 \
               FROM UNNEST($2::text[], $3::bigint[]) AS s(id, n) \
               WHERE jobs.id = s.id AND jobs.attempts = s.n AND jobs.state = 'running' \
                 AND jobs.worker_id = $4 \
               RETURNING jobs.id, jobs.attempts \
             ), a AS ( \
               UPDATE attempts SET state = 'killed', reason = 'worker stopped', ended_at = $1 \
               FROM j WHERE attempts.job_id = j.id AND attempts.n = j.attempts \
             ), t AS ( \
               INSERT INTO transitions (job_id, at, state) SELECT id, $1, 'queued' FROM j \
             ) \
             SELECT COUNT(*) FROM j",
        )
        .bind(now_ms())
        .bind(&ids)
        .bind(&ns)
        .bind(&self.worker)
        .fetch_one(&mut *tx)
        .await?;
        if requeued > 0 {
            super::notify_jobs(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn read_caps(&self) -> Result<crate::db::Caps, QueueError> {
        let queues: Vec<(String, i64)> = sqlx::query_as(
            "SELECT name, max_concurrency FROM queues WHERE max_concurrency IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let codes: Vec<(String, i64)> = sqlx::query_as(
            "SELECT name, max_concurrency FROM code_packages WHERE max_concurrency IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        self.capped.store(
            !(queues.is_empty() && codes.is_empty()),
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(crate::db::Caps {
            queues: queues.into_iter().collect(),
            codes: codes.into_iter().collect(),
        })
    }
}
