//! Webhook deliveries on PostgreSQL: every worker sends; a lease is one
//! `UPDATE … WHERE id IN (… FOR UPDATE SKIP LOCKED)`, so two workers
//! never take the same delivery at once.

use super::PgStore;
use crate::db::webhook_store::{DeliveryUpdate, Due, WebhookStorage};
use crate::error::QueueError;

#[async_trait::async_trait]
impl WebhookStorage for PgStore {
    async fn lease_deliveries(
        &self,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Due>, QueueError> {
        Ok(sqlx::query_as(
            "UPDATE webhook_deliveries SET next_at = $1 + $2 WHERE id IN ( \
               SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_at <= $1 \
               ORDER BY next_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING id, job_id, url, attempts",
        )
        .bind(now)
        .bind(lease_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn update_delivery(&self, id: i64, u: &DeliveryUpdate) -> Result<(), QueueError> {
        sqlx::query(
            "UPDATE webhook_deliveries SET state = $1, attempts = $2, next_at = $3, \
             last_error = $4, delivered_at = CASE WHEN $1 = 'delivered' THEN $5::bigint END \
             WHERE id = $6",
        )
        .bind(u.state)
        .bind(u.attempts)
        .bind(u.next_at)
        .bind(&u.error)
        .bind(u.now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn deliveries(
        &self,
        job_id: &str,
    ) -> Result<Vec<(String, i64, Option<String>)>, QueueError> {
        Ok(sqlx::query_as(
            "SELECT state, attempts, last_error FROM webhook_deliveries WHERE job_id = $1 \
             ORDER BY id",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?)
    }
}
