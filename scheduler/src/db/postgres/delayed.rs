//! Delayed jobs falling due, on PostgreSQL: one statement moves them all
//! (any worker may run it; two at once move each job once).

use super::PgStore;
use crate::error::QueueError;
use crate::queue::now_ms;

impl PgStore {
    pub(super) async fn promote(&self) -> Result<(u64, Option<i64>), QueueError> {
        let now = now_ms();
        let (moved, next): (i64, Option<i64>) = sqlx::query_as(
            "WITH due AS ( \
               UPDATE jobs SET state = 'queued', updated_at = $1 \
               WHERE state = 'delayed' AND run_at <= $1 RETURNING id \
             ), t AS ( \
               INSERT INTO transitions (job_id, at, state) SELECT id, $1, 'queued' FROM due \
             ) \
             SELECT (SELECT COUNT(*) FROM due), \
                    (SELECT MIN(run_at) FROM jobs WHERE state = 'delayed' AND run_at > $1)",
        )
        .bind(now)
        .fetch_one(&self.dispatch)
        .await?;
        Ok((moved as u64, next))
    }
}
