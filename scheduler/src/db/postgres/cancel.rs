//! Cancelling a job on PostgreSQL: a waiting job ends at once; a running
//! one is marked, and its worker stops it and records `cancelled`.

use super::PgStore;
use crate::error::QueueError;
use crate::queue::now_ms;
use crate::state::JobState;

impl PgStore {
    pub(super) async fn cancel_job(&self, id: &str) -> Result<bool, QueueError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let state = super::lock_state(&mut tx, id).await?;
        match state {
            JobState::Queued | JobState::Delayed => {
                sqlx::query(
                    "WITH j AS ( \
                       UPDATE jobs SET state = 'cancelled', reason = 'cancelled', updated_at = $1 \
                       WHERE id = $2 RETURNING id, webhook \
                     ), t AS ( \
                       INSERT INTO transitions (job_id, at, state) SELECT id, $1, 'cancelled' FROM j \
                     ) \
                     INSERT INTO webhook_deliveries (job_id, url, state, next_at, created_at) \
                     SELECT id, webhook, 'pending', $1, $1 FROM j WHERE webhook IS NOT NULL",
                )
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(false)
            }
            JobState::Running => {
                sqlx::query(
                    "UPDATE jobs SET cancel_requested = true, updated_at = $1 WHERE id = $2",
                )
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
}
