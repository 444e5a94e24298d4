//! Code packages, after IronWorker's: an uploaded tar of code stored as one
//! extra layer above a base image (`imagestore::derive`), tagged
//! `skiff-code/<name>:latest`. Jobs name the package (`"code": "<name>"`).

use serde::Serialize;
use sqlx::Row;

use crate::error::QueueError;
use crate::queue::{now_ms, Queue};

pub use crate::request::{check_code_name as check_name, code_image_tag as image_tag};

/// A stored package.
#[derive(Debug, Clone, Serialize)]
pub struct Package {
    /// Name.
    pub name: String,
    /// The base image as given.
    pub base_image: String,
    /// The derived image's id.
    pub image_id: String,
    /// Default command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Size of the code layer (uncompressed tar), bytes.
    pub layer_bytes: i64,
    /// The most of the package's jobs that run at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<i64>,
    /// First pushed, ms since the epoch.
    pub created_at: i64,
    /// Last pushed.
    pub updated_at: i64,
}

fn from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Package, QueueError> {
    let name: String = r.try_get("name")?;
    let command: Option<String> = r.try_get("command")?;
    let command = command
        .map(|c| serde_json::from_str(&c))
        .transpose()
        .map_err(|e| QueueError::Corrupt {
            id: name.clone(),
            what: "code package command",
            detail: e.to_string(),
        })?;
    Ok(Package {
        base_image: r.try_get("base_image")?,
        image_id: r.try_get("image_id")?,
        layer_bytes: r.try_get("layer_bytes")?,
        max_concurrency: r.try_get("max_concurrency")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        command,
        name,
    })
}

/// Record (or replace) a package after its image was made.
pub async fn put(queue: &Queue, p: &Package) -> Result<(), QueueError> {
    let now = now_ms();
    let command = p
        .command
        .as_ref()
        .map(|c| serde_json::to_string(c).unwrap_or_default());
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
    .bind(command)
    .bind(p.layer_bytes)
    .bind(p.max_concurrency)
    .bind(now)
    .bind(now)
    .execute(queue.pool())
    .await?;
    Ok(())
}

/// Every package with a cap: name → max_concurrency.
pub async fn limits(queue: &Queue) -> Result<std::collections::HashMap<String, i64>, QueueError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT name, max_concurrency FROM code_packages WHERE max_concurrency IS NOT NULL",
    )
    .fetch_all(queue.pool())
    .await?;
    Ok(rows.into_iter().collect())
}

/// The package `name`.
pub async fn get(queue: &Queue, name: &str) -> Result<Package, QueueError> {
    let r = sqlx::query("SELECT * FROM code_packages WHERE name = ?")
        .bind(name)
        .fetch_optional(queue.pool())
        .await?
        .ok_or_else(|| QueueError::NotFound(format!("code package {name}")))?;
    from_row(&r)
}

/// Every package.
pub async fn list(queue: &Queue) -> Result<Vec<Package>, QueueError> {
    sqlx::query("SELECT * FROM code_packages ORDER BY name")
        .fetch_all(queue.pool())
        .await?
        .iter()
        .map(from_row)
        .collect()
}

/// Forget the package `name` (its image is removed by the caller).
pub async fn remove(queue: &Queue, name: &str) -> Result<(), QueueError> {
    let r = sqlx::query("DELETE FROM code_packages WHERE name = ?")
        .bind(name)
        .execute(queue.pool())
        .await?;
    if r.rows_affected() == 0 {
        return Err(QueueError::NotFound(format!("code package {name}")));
    }
    Ok(())
}
