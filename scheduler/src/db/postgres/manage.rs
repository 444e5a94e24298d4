//! Listing jobs and retrying a finished one by hand, on PostgreSQL.

use super::{PgStore, JOB_COLUMNS};
use crate::error::QueueError;
use crate::queue::{now_ms, ListFilter};
use crate::records::JobRecord;
use crate::state::{Job, JobState};

impl PgStore {
    pub(super) async fn list_jobs(&self, f: &ListFilter) -> Result<Vec<Job>, QueueError> {
        let after: i64 = match f.after.as_deref().filter(|a| !a.is_empty()) {
            None => f.start_seq(),
            Some(id) => sqlx::query_scalar("SELECT seq FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| QueueError::NotFound(id.to_string()))?,
        };
        let (from, order) = f.seq_order();
        let rows: Vec<JobRecord> = sqlx::query_as(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE {from} $1 \
             AND ($2::text IS NULL OR state = $2) AND ($3::text IS NULL OR queue = $3) \
             AND ($4::text IS NULL OR label = $4) ORDER BY {order} LIMIT $5"
        ))
        .bind(after)
        .bind(f.state.map(JobState::as_str))
        .bind(&f.queue)
        .bind(&f.label)
        .bind(f.limit.unwrap_or(100).clamp(1, 1000))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(JobRecord::into_job).collect()
    }

    pub(super) async fn retry_job(&self, id: &str) -> Result<(), QueueError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let state = super::lock_state(&mut tx, id).await?;
        if !state.is_terminal() {
            return Err(QueueError::Conflict {
                id: id.into(),
                state: state.to_string(),
                what: "only a finished job can be retried",
            });
        }
        sqlx::query(
            "WITH j AS ( \
               UPDATE jobs SET state = 'queued', reason = NULL, run_at = $1, updated_at = $1 \
               WHERE id = $2 RETURNING id \
             ) \
             INSERT INTO transitions (job_id, at, state) SELECT id, $1, 'queued' FROM j",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        super::notify_jobs(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
