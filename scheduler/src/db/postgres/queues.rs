//! Per-queue settings on PostgreSQL: [`QueueSettings`] for [`PgStore`].
//! Every worker's claim honours them across the fleet (`turn.rs`).

use super::PgStore;
use crate::db::queue_store::QueueSettings;
use crate::error::QueueError;
use crate::queue::now_ms;

#[async_trait::async_trait]
impl QueueSettings for PgStore {
    async fn set_queue_cap(&self, name: &str, max: Option<i64>) -> Result<(), QueueError> {
        sqlx::query(
            "INSERT INTO queues (name, max_concurrency, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET max_concurrency = excluded.max_concurrency, \
             updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(max)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn queue_caps(&self) -> Result<Vec<(String, Option<i64>)>, QueueError> {
        Ok(
            sqlx::query_as("SELECT name, max_concurrency FROM queues ORDER BY name")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
