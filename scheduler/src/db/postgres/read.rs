//! Reading jobs back on PostgreSQL: one job with its history, and counts.

use super::{PgStore, JOB_COLUMNS};
use crate::error::QueueError;
use crate::records::{state_of, JobRecord, ATTEMPT_COLUMNS};
use crate::state::{Job, JobState};

impl PgStore {
    pub(super) async fn get_job(&self, id: &str) -> Result<Job, QueueError> {
        let job: JobRecord =
            sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| QueueError::NotFound(id.to_string()))?;
        let attempts = sqlx::query_as(&format!(
            "SELECT {ATTEMPT_COLUMNS}, worker_id FROM attempts WHERE job_id = $1 ORDER BY n"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let transitions =
            sqlx::query_as("SELECT state, at FROM transitions WHERE job_id = $1 ORDER BY seq")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        job.with_history(attempts, transitions)
    }

    /// The output of attempt `n` of job `id` on `stream` (`stdout` or
    /// `stderr`) as its worker stored it when the attempt ended; `None`
    /// before then.
    pub async fn output(
        &self,
        id: &str,
        n: i64,
        stream: &str,
    ) -> Result<Option<Vec<u8>>, QueueError> {
        Ok(sqlx::query_scalar(
            "SELECT data FROM outputs WHERE job_id = $1 AND n = $2 AND stream = $3",
        )
        .bind(id)
        .bind(n)
        .bind(stream)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub(super) async fn ended_minutes(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(i64, JobState, i64)>, QueueError> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(&crate::db::ended_per_minute_sql("$1"))
            .bind(since_ms)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|(m, s, n)| Ok((m, state_of("(attempt count)", &s)?, n)))
            .collect()
    }

    pub(super) async fn count_jobs(&self) -> Result<Vec<(JobState, String, i64)>, QueueError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT state, queue, COUNT(*) FROM jobs GROUP BY state, queue")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(s, q, n)| Ok((state_of("(count)", &s)?, q, n)))
            .collect()
    }
}
