//! Webhook triggers: a named job template; `POST /v1/hooks/{name}` turns
//! the request body into the payload of a new job from it.

use crate::db::hook_store::HookStorage;
use crate::error::{FieldError, QueueError};
use crate::queue::now_ms;
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

fn corrupt(name: &str, e: serde_json::Error) -> QueueError {
    QueueError::Corrupt {
        id: name.into(),
        what: "hook template",
        detail: e.to_string(),
    }
}

/// Store `template` under `name`; whether the hook is new.
pub async fn put(
    db: &dyn HookStorage,
    name: &str,
    template: &JobRequest,
) -> Result<bool, QueueError> {
    let json = serde_json::to_string(template).map_err(|e| corrupt(name, e))?;
    db.put_hook(name, &json, now_ms()).await
}

/// The template of hook `name`.
pub async fn get(db: &dyn HookStorage, name: &str) -> Result<JobRequest, QueueError> {
    let t = db
        .hook(name)
        .await?
        .ok_or_else(|| QueueError::NotFound(format!("hook {name}")))?;
    serde_json::from_str(&t).map_err(|e| corrupt(name, e))
}

/// Every hook and its template, by name.
pub async fn list(db: &dyn HookStorage) -> Result<Vec<(String, JobRequest)>, QueueError> {
    db.hooks()
        .await?
        .into_iter()
        .map(|(name, t)| {
            let tpl = serde_json::from_str(&t).map_err(|e| corrupt(&name, e))?;
            Ok((name, tpl))
        })
        .collect()
}

/// Remove hook `name`.
pub async fn remove(db: &dyn HookStorage, name: &str) -> Result<(), QueueError> {
    if !db.remove_hook(name).await? {
        return Err(QueueError::NotFound(format!("hook {name}")));
    }
    Ok(())
}
