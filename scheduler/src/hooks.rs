//! Webhook triggers: a named job template; `POST /v1/hooks/{name}` turns
//! the request body into the payload of a new job from it.

use sqlx::Row;

use crate::error::{FieldError, QueueError};
use crate::queue::{now_ms, Queue};
use crate::request::JobRequest;

/// A trigger's name: 1–64 of `A-Z a-z 0-9 _ . -`.
pub fn check_name(name: &str) -> Result<(), FieldError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "name",
            format!("{name:?}: 1–64 characters of A-Z a-z 0-9 _ . -"),
        ))
    }
}

/// Create or replace the trigger `name`; whether it is new.
pub async fn put(queue: &Queue, name: &str, template: &JobRequest) -> Result<bool, QueueError> {
    let now = now_ms();
    let json = serde_json::to_string(template).map_err(|e| QueueError::Corrupt {
        id: name.into(),
        what: "hook template",
        detail: e.to_string(),
    })?;
    let existed: Option<String> = sqlx::query_scalar("SELECT name FROM hooks WHERE name = ?")
        .bind(name)
        .fetch_optional(queue.pool())
        .await?;
    sqlx::query(
        "INSERT INTO hooks (name, template, created_at, updated_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (name) DO UPDATE SET template = excluded.template, \
         updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(json)
    .bind(now)
    .bind(now)
    .execute(queue.pool())
    .await?;
    Ok(existed.is_none())
}

/// The trigger `name`'s template.
pub async fn get(queue: &Queue, name: &str) -> Result<JobRequest, QueueError> {
    let t: Option<String> = sqlx::query_scalar("SELECT template FROM hooks WHERE name = ?")
        .bind(name)
        .fetch_optional(queue.pool())
        .await?;
    let t = t.ok_or_else(|| QueueError::NotFound(format!("hook {name}")))?;
    serde_json::from_str(&t).map_err(|e| QueueError::Corrupt {
        id: name.into(),
        what: "hook template",
        detail: e.to_string(),
    })
}

/// Every trigger: (name, template).
pub async fn list(queue: &Queue) -> Result<Vec<(String, JobRequest)>, QueueError> {
    let rows = sqlx::query("SELECT name, template FROM hooks ORDER BY name")
        .fetch_all(queue.pool())
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let name: String = r.try_get("name")?;
        let t: String = r.try_get("template")?;
        let tpl = serde_json::from_str(&t).map_err(|e| QueueError::Corrupt {
            id: name.clone(),
            what: "hook template",
            detail: e.to_string(),
        })?;
        out.push((name, tpl));
    }
    Ok(out)
}

/// Remove the trigger `name`.
pub async fn remove(queue: &Queue, name: &str) -> Result<(), QueueError> {
    let r = sqlx::query("DELETE FROM hooks WHERE name = ?")
        .bind(name)
        .execute(queue.pool())
        .await?;
    if r.rows_affected() == 0 {
        return Err(QueueError::NotFound(format!("hook {name}")));
    }
    Ok(())
}
