//! SQLite, one host: the [`Storage`] operations of [`Queue`], whose SQL
//! lives beside each step (`submit.rs`, `turn.rs`, `queue.rs`).

use super::{Caps, Storage};
use crate::claim::Admission;
use crate::error::QueueError;
use crate::finish::Ended;
use crate::queue::{ListFilter, Queue};
use crate::request::ValidJob;
use crate::state::{Job, JobState};
use crate::turn::Turn;

#[async_trait::async_trait]
impl Storage for Queue {
    async fn submit(&self, jobs: Vec<ValidJob>) -> Result<Vec<(Job, bool)>, QueueError> {
        Queue::submit(self, jobs).await
    }

    async fn turn(&self, ended: &[Ended], fits: Option<&Admission>) -> Result<Turn, QueueError> {
        Queue::turn(self, ended, fits).await
    }

    async fn get(&self, id: &str) -> Result<Job, QueueError> {
        Queue::get(self, id).await
    }

    async fn promote_delayed(&self) -> Result<(u64, Option<i64>), QueueError> {
        Queue::promote_delayed(self).await
    }

    async fn cancel(&self, id: &str) -> Result<bool, QueueError> {
        Queue::cancel(self, id).await
    }

    async fn counts(&self) -> Result<Vec<(JobState, String, i64)>, QueueError> {
        Queue::counts(self).await
    }

    async fn finish(&self, e: &Ended) -> Result<Option<JobState>, QueueError> {
        Queue::finish(self, e).await
    }

    async fn requeue_stopped(&self, running: &[(String, i64)]) -> Result<(), QueueError> {
        Queue::requeue_stopped(self, running).await
    }

    async fn list(&self, f: &ListFilter) -> Result<Vec<Job>, QueueError> {
        Queue::list(self, f).await
    }

    async fn retry(&self, id: &str) -> Result<(), QueueError> {
        Queue::retry(self, id).await
    }

    async fn ended_per_minute(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(i64, JobState, i64)>, QueueError> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(&super::ended_per_minute_sql("?"))
            .bind(since_ms)
            .fetch_all(self.pool())
            .await?;
        rows.into_iter()
            .map(|(m, s, n)| Ok((m, crate::records::state_of("(attempt count)", &s)?, n)))
            .collect()
    }

    async fn caps(&self) -> Result<Caps, QueueError> {
        Ok(Caps {
            queues: crate::queues::limits(self).await?,
            codes: super::sqlite_code::limits(self).await?,
        })
    }
}
