//! Webhook deliveries on SQLite: [`WebhookStorage`] for [`Queue`].

use super::webhook_store::{DeliveryUpdate, Due, WebhookStorage};
use crate::error::QueueError;
use crate::queue::Queue;

#[async_trait::async_trait]
impl WebhookStorage for Queue {
    async fn lease_deliveries(
        &self,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Due>, QueueError> {
        let mut tx = self.write_tx().await?;
        let due: Vec<Due> = sqlx::query_as(
            "SELECT id, job_id, url, attempts FROM webhook_deliveries \
             WHERE state = 'pending' AND next_at <= ? ORDER BY next_at LIMIT ?",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        for d in &due {
            sqlx::query("UPDATE webhook_deliveries SET next_at = ? WHERE id = ?")
                .bind(now + lease_ms)
                .bind(d.id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(due)
    }

    async fn update_delivery(&self, id: i64, u: &DeliveryUpdate) -> Result<(), QueueError> {
        sqlx::query(
            "UPDATE webhook_deliveries SET state = ?, attempts = ?, next_at = ?, \
             last_error = ?, delivered_at = CASE WHEN ? = 'delivered' THEN ? END WHERE id = ?",
        )
        .bind(u.state)
        .bind(u.attempts)
        .bind(u.next_at)
        .bind(&u.error)
        .bind(u.state)
        .bind(u.now)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn deliveries(
        &self,
        job_id: &str,
    ) -> Result<Vec<(String, i64, Option<String>)>, QueueError> {
        Ok(sqlx::query_as(
            "SELECT state, attempts, last_error FROM webhook_deliveries WHERE job_id = ? \
             ORDER BY id",
        )
        .bind(job_id)
        .fetch_all(self.pool())
        .await?)
    }
}
