//! Webhook triggers on SQLite: [`HookStorage`] for [`Queue`].

use super::hook_store::HookStorage;
use crate::error::QueueError;
use crate::queue::Queue;

#[async_trait::async_trait]
impl HookStorage for Queue {
    async fn put_hook(&self, name: &str, template: &str, now: i64) -> Result<bool, QueueError> {
        let mut tx = self.write_tx().await?;
        let existed: Option<String> = sqlx::query_scalar("SELECT name FROM hooks WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO hooks (name, template, created_at, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET template = excluded.template, \
             updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(template)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(existed.is_none())
    }

    async fn hook(&self, name: &str) -> Result<Option<String>, QueueError> {
        Ok(
            sqlx::query_scalar("SELECT template FROM hooks WHERE name = ?")
                .bind(name)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    async fn hooks(&self) -> Result<Vec<(String, String)>, QueueError> {
        Ok(
            sqlx::query_as("SELECT name, template FROM hooks ORDER BY name")
                .fetch_all(self.pool())
                .await?,
        )
    }

    async fn remove_hook(&self, name: &str) -> Result<bool, QueueError> {
        let r = sqlx::query("DELETE FROM hooks WHERE name = ?")
            .bind(name)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() > 0)
    }
}
