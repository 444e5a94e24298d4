//! Webhook deliveries: a finished job's JSON POSTed to its `webhook` URL.
//! Deliveries are rows queued in the transaction that ended the job, so a
//! crash loses none; each is sent off the dispatcher's path (a down target
//! never blocks the queue), retried with backoff, and given up after
//! [`MAX_ATTEMPTS`].

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use tokio::sync::{watch, Semaphore};

use crate::error::QueueError;
use crate::queue::{backoff_ms, now_ms, Queue};

/// Attempts before a delivery is marked `failed`.
pub const MAX_ATTEMPTS: i64 = 10;
/// Per-request timeout.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// While a delivery is being sent it is leased for this long.
const LEASE_MS: i64 = 60_000;
/// Deliveries sent at once.
const CONCURRENCY: usize = 8;

struct Due {
    id: i64,
    job_id: String,
    url: String,
    attempts: i64,
}

async fn lease_due(queue: &Queue) -> Result<Vec<Due>, QueueError> {
    let now = now_ms();
    let mut tx = queue.write_tx().await?;
    let rows = sqlx::query(
        "SELECT id, job_id, url, attempts FROM webhook_deliveries \
         WHERE state = 'pending' AND next_at <= ? ORDER BY next_at LIMIT 32",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let d = Due {
            id: r.try_get("id")?,
            job_id: r.try_get("job_id")?,
            url: r.try_get("url")?,
            attempts: r.try_get("attempts")?,
        };
        sqlx::query("UPDATE webhook_deliveries SET next_at = ? WHERE id = ?")
            .bind(now + LEASE_MS)
            .bind(d.id)
            .execute(&mut *tx)
            .await?;
        out.push(d);
    }
    tx.commit().await?;
    Ok(out)
}

async fn record(queue: &Queue, d: &Due, result: Result<(), String>) -> Result<(), QueueError> {
    let now = now_ms();
    let attempts = d.attempts + 1;
    let q = match &result {
        Ok(()) => sqlx::query(
            "UPDATE webhook_deliveries SET state = 'delivered', attempts = ?, \
             delivered_at = ?, last_error = NULL WHERE id = ?",
        )
        .bind(attempts)
        .bind(now)
        .bind(d.id),
        Err(e) => {
            let (state, next) = if attempts >= MAX_ATTEMPTS {
                ("failed", now)
            } else {
                ("pending", now + backoff_ms(1000, attempts))
            };
            sqlx::query(
                "UPDATE webhook_deliveries SET state = ?, attempts = ?, next_at = ?, \
                 last_error = ? WHERE id = ?",
            )
            .bind(state)
            .bind(attempts)
            .bind(next)
            .bind(e.clone())
            .bind(d.id)
        }
    };
    q.execute(queue.pool()).await?;
    Ok(())
}

async fn send(http: &reqwest::Client, queue: &Queue, d: &Due) -> Result<(), String> {
    let job = queue.get(&d.job_id).await.map_err(|e| e.to_string())?;
    let resp = http
        .post(&d.url)
        .header("User-Agent", "skiff-webhook")
        .header("X-Skiff-Job", &d.job_id)
        .json(&job)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("answered {}", resp.status()))
    }
}

/// Deliver due webhooks until `stop` turns true.
pub async fn run(queue: Queue, mut stop: watch::Receiver<bool>) {
    let http = match reqwest::Client::builder()
        .timeout(SEND_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("webhook client: {e}; webhooks will not be delivered");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    loop {
        if *stop.borrow() {
            return;
        }
        match lease_due(&queue).await {
            Ok(due) => {
                for d in due {
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    let (http, queue) = (http.clone(), queue.clone());
                    tokio::spawn(async move {
                        let result = send(&http, &queue, &d).await;
                        if let Err(e) = &result {
                            tracing::info!(job = %d.job_id, url = %d.url, "webhook not delivered: {e}");
                        }
                        if let Err(e) = record(&queue, &d, result).await {
                            tracing::error!("record webhook delivery: {e}");
                        }
                        drop(permit);
                    });
                }
            }
            Err(e) => tracing::error!("webhook deliveries: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// A job's deliveries: (state, attempts, last error).
pub async fn deliveries(
    queue: &Queue,
    job_id: &str,
) -> Result<Vec<(String, i64, Option<String>)>, QueueError> {
    Ok(sqlx::query_as(
        "SELECT state, attempts, last_error FROM webhook_deliveries WHERE job_id = ? ORDER BY id",
    )
    .bind(job_id)
    .fetch_all(queue.pool())
    .await?)
}
