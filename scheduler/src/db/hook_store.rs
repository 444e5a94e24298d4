//! Where webhook triggers' templates are kept: one implementation per
//! engine (`sqlite_hooks.rs`, `postgres/hooks.rs`). The template is the
//! job request as JSON; [`crate::hooks`] (de)serializes it.

use crate::error::QueueError;

/// The hooks table.
#[async_trait::async_trait]
pub trait HookStorage: Send + Sync + std::fmt::Debug {
    /// Store `template` under `name`; whether it is new (not replaced).
    async fn put_hook(&self, name: &str, template: &str, now: i64) -> Result<bool, QueueError>;

    /// The template stored under `name`.
    async fn hook(&self, name: &str) -> Result<Option<String>, QueueError>;

    /// Every hook, by name.
    async fn hooks(&self) -> Result<Vec<(String, String)>, QueueError>;

    /// Remove `name`; whether there was one.
    async fn remove_hook(&self, name: &str) -> Result<bool, QueueError>;
}
