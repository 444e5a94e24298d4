//! Per-queue settings (`max_concurrency`), on either engine
//! (`sqlite_queues.rs`, `postgres/queues.rs`). On a fleet a cap holds
//! across every worker: the claim counts the queue's running jobs in the
//! database (see `postgres/turn.rs`).

use crate::error::QueueError;

/// The queues table.
#[async_trait::async_trait]
pub trait QueueSettings: Send + Sync + std::fmt::Debug {
    /// Set (or, with `None`, remove) the queue's cap.
    async fn set_queue_cap(&self, name: &str, max: Option<i64>) -> Result<(), QueueError>;

    /// Every queue with settings, by name.
    async fn queue_caps(&self) -> Result<Vec<(String, Option<i64>)>, QueueError>;
}
