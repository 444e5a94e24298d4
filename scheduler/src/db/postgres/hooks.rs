//! Webhook triggers on PostgreSQL: [`HookStorage`] for [`PgStore`].

use super::PgStore;
use crate::db::hook_store::HookStorage;
use crate::error::QueueError;

#[async_trait::async_trait]
impl HookStorage for PgStore {
    async fn put_hook(&self, name: &str, template: &str, now: i64) -> Result<bool, QueueError> {
        // `xmax = 0`: the row was inserted by this statement, not updated.
        Ok(sqlx::query_scalar(
            "INSERT INTO hooks (name, template, created_at, updated_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (name) DO UPDATE SET template = excluded.template, \
             updated_at = excluded.updated_at RETURNING (xmax = 0)",
        )
        .bind(name)
        .bind(template)
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn hook(&self, name: &str) -> Result<Option<String>, QueueError> {
        Ok(
            sqlx::query_scalar("SELECT template FROM hooks WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn hooks(&self) -> Result<Vec<(String, String)>, QueueError> {
        Ok(
            sqlx::query_as("SELECT name, template FROM hooks ORDER BY name")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn remove_hook(&self, name: &str) -> Result<bool, QueueError> {
        let r = sqlx::query("DELETE FROM hooks WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}
