//! Per-queue settings on SQLite: [`QueueSettings`] for [`Queue`], over
//! [`crate::queues`].

use super::queue_store::QueueSettings;
use crate::error::QueueError;
use crate::queue::Queue;

#[async_trait::async_trait]
impl QueueSettings for Queue {
    async fn set_queue_cap(&self, name: &str, max: Option<i64>) -> Result<(), QueueError> {
        crate::queues::set(self, name, max).await
    }

    async fn queue_caps(&self) -> Result<Vec<(String, Option<i64>)>, QueueError> {
        crate::queues::list(self).await
    }
}
