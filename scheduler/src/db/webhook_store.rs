//! Webhook deliveries: rows queued with the result that ended a job (in
//! the same transaction, on either engine), leased, sent and recorded by
//! [`crate::webhooks`]. One implementation per engine
//! (`sqlite_webhooks.rs`, `postgres/webhooks.rs`).

use crate::error::QueueError;

/// A delivery due to be sent.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Due {
    /// Its row.
    pub id: i64,
    /// The job whose JSON is sent.
    pub job_id: String,
    /// Where.
    pub url: String,
    /// Attempts so far.
    pub attempts: i64,
}

/// What became of one attempt at a delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryUpdate {
    /// `delivered`, `pending` (to retry) or `failed` (given up).
    pub state: &'static str,
    /// Attempts so far, this one counted.
    pub attempts: i64,
    /// When to try again (`pending`), or now.
    pub next_at: i64,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Now.
    pub now: i64,
}

/// The deliveries table.
#[async_trait::async_trait]
pub trait WebhookStorage: Send + Sync + std::fmt::Debug {
    /// Take up to `limit` pending deliveries due at `now`, pushing their
    /// `next_at` to `now + lease_ms` so that no other sender takes them
    /// meanwhile (on a fleet: no other worker).
    async fn lease_deliveries(
        &self,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Due>, QueueError>;

    /// Record an attempt at delivery `id`.
    async fn update_delivery(&self, id: i64, u: &DeliveryUpdate) -> Result<(), QueueError>;

    /// A job's deliveries: state, attempts, last error.
    async fn deliveries(
        &self,
        job_id: &str,
    ) -> Result<Vec<(String, i64, Option<String>)>, QueueError>;
}
