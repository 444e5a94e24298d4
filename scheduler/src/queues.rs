//! Per-queue settings: `max_concurrency`, the most jobs of a queue that
//! run at once (the dispatcher passes over the queue's jobs beyond it).

use std::collections::HashMap;

use crate::error::QueueError;
use crate::queue::{now_ms, Queue};

/// Every queue with a cap: name → max_concurrency.
pub async fn limits(queue: &Queue) -> Result<HashMap<String, i64>, QueueError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT name, max_concurrency FROM queues WHERE max_concurrency IS NOT NULL",
    )
    .fetch_all(queue.pool())
    .await?;
    Ok(rows.into_iter().collect())
}

/// Set (or with `None` clear) the cap of `name`.
pub async fn set(queue: &Queue, name: &str, max: Option<i64>) -> Result<(), QueueError> {
    sqlx::query(
        "INSERT INTO queues (name, max_concurrency, updated_at) VALUES (?, ?, ?) \
         ON CONFLICT (name) DO UPDATE SET max_concurrency = excluded.max_concurrency, \
         updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(max)
    .bind(now_ms())
    .execute(queue.pool())
    .await?;
    Ok(())
}

/// Every configured queue: (name, max_concurrency).
pub async fn list(queue: &Queue) -> Result<Vec<(String, Option<i64>)>, QueueError> {
    Ok(
        sqlx::query_as("SELECT name, max_concurrency FROM queues ORDER BY name")
            .fetch_all(queue.pool())
            .await?,
    )
}
