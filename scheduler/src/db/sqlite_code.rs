//! Code packages on SQLite: [`CodeStorage`] for [`Queue`]. One host: the
//! package's image is in the worker's store, so no layer is kept here.

use std::path::Path;

use sqlx::Row;

use super::code_store::CodeStorage;
use crate::code::Package;
use crate::error::QueueError;
use crate::queue::{now_ms, Queue};

fn from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Package, QueueError> {
    let name: String = r.try_get("name")?;
    Ok(Package {
        command: crate::code::parse_command(&name, r.try_get("command")?)?,
        base_image: r.try_get("base_image")?,
        image_id: r.try_get("image_id")?,
        layer_bytes: r.try_get("layer_bytes")?,
        layer_digest: None,
        max_concurrency: r.try_get("max_concurrency")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        name,
    })
}

#[async_trait::async_trait]
impl CodeStorage for Queue {
    async fn put_package(&self, p: &Package, _layer: &Path) -> Result<(), QueueError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO code_packages (name, base_image, image_id, command, layer_bytes, \
             max_concurrency, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET base_image = excluded.base_image, \
             image_id = excluded.image_id, command = excluded.command, \
             layer_bytes = excluded.layer_bytes, max_concurrency = excluded.max_concurrency, \
             updated_at = excluded.updated_at",
        )
        .bind(&p.name)
        .bind(&p.base_image)
        .bind(&p.image_id)
        .bind(crate::code::command_json(p))
        .bind(p.layer_bytes)
        .bind(p.max_concurrency)
        .bind(now)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn package(&self, name: &str) -> Result<Option<Package>, QueueError> {
        sqlx::query("SELECT * FROM code_packages WHERE name = ?")
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    async fn packages(&self) -> Result<Vec<Package>, QueueError> {
        sqlx::query("SELECT * FROM code_packages ORDER BY name")
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(from_row)
            .collect()
    }

    async fn remove_package(&self, name: &str) -> Result<bool, QueueError> {
        let r = sqlx::query("DELETE FROM code_packages WHERE name = ?")
            .bind(name)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn fetch_layer(&self, _name: &str, _to: &Path) -> Result<Option<Package>, QueueError> {
        Ok(None)
    }
}

/// Every package with a cap: name → max_concurrency.
pub(super) async fn limits(
    queue: &Queue,
) -> Result<std::collections::HashMap<String, i64>, QueueError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT name, max_concurrency FROM code_packages WHERE max_concurrency IS NOT NULL",
    )
    .fetch_all(queue.pool())
    .await?;
    Ok(rows.into_iter().collect())
}
