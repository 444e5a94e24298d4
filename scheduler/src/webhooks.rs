//! Webhook deliveries: a finished job's JSON POSTed to its `webhook` URL.
//! Deliveries are rows queued in the transaction that ended the job, so a
//! crash loses none; each is sent off the dispatcher's path (a down target
//! never blocks the queue), retried with backoff, and given up after
//! [`MAX_ATTEMPTS`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};

use crate::db::webhook_store::{DeliveryUpdate, Due, WebhookStorage};
use crate::db::Storage;
use crate::queue::{backoff_ms, now_ms};

/// Attempts before a delivery is marked `failed`.
pub const MAX_ATTEMPTS: i64 = 10;
/// Per-request timeout.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// While a delivery is being sent it is leased for this long.
const LEASE_MS: i64 = 60_000;
/// Deliveries sent at once.
const CONCURRENCY: usize = 8;

/// The record of one attempt at `d`.
fn update(d: &Due, result: &Result<(), String>) -> DeliveryUpdate {
    let now = now_ms();
    let attempts = d.attempts + 1;
    match result {
        Ok(()) => DeliveryUpdate {
            state: "delivered",
            attempts,
            next_at: now,
            error: None,
            now,
        },
        Err(e) => {
            let (state, next_at) = if attempts >= MAX_ATTEMPTS {
                ("failed", now)
            } else {
                ("pending", now + backoff_ms(1000, attempts))
            };
            DeliveryUpdate {
                state,
                attempts,
                next_at,
                error: Some(e.clone()),
                now,
            }
        }
    }
}

async fn send(http: &reqwest::Client, jobs: &dyn Storage, d: &Due) -> Result<(), String> {
    let job = jobs.get(&d.job_id).await.map_err(|e| e.to_string())?;
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
pub async fn run(
    db: Arc<dyn WebhookStorage>,
    jobs: Arc<dyn Storage>,
    mut stop: watch::Receiver<bool>,
) {
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
        match db.lease_deliveries(now_ms(), LEASE_MS, 32).await {
            Ok(due) => {
                for d in due {
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    let (http, db, jobs) = (http.clone(), db.clone(), jobs.clone());
                    tokio::spawn(async move {
                        let result = send(&http, &*jobs, &d).await;
                        if let Err(e) = &result {
                            tracing::info!(job = %d.job_id, url = %d.url, "webhook not delivered: {e}");
                        }
                        if let Err(e) = db.update_delivery(d.id, &update(&d, &result)).await {
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
