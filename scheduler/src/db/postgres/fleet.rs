//! The fleet as the database sees it: the workers and their heartbeats,
//! and the wake-ups a submit sends (`LISTEN skiff_jobs`, with polling as
//! the fallback where `LISTEN` cannot work, as behind PgBouncer in
//! transaction mode).

use std::time::Duration;

use sqlx::postgres::PgListener;

use super::{PgStore, NOTIFY_CHANNEL};
use crate::error::QueueError;
use crate::queue::now_ms;

/// A worker, as the fleet view shows it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct WorkerRow {
    /// Its id.
    pub id: String,
    /// Host name.
    pub host: String,
    /// API address, if any.
    pub address: Option<String>,
    /// Launcher slots.
    pub slots: i64,
    /// Memory capacity, bytes.
    pub memory_bytes: i64,
    /// CPU capacity.
    pub cpus: f64,
    /// Jobs running at its last heartbeat.
    pub running: i64,
    /// Image references its store resolves, JSON.
    pub images: String,
    /// skiff's version.
    pub version: String,
    /// First heartbeat, ms since the epoch.
    pub started_at: i64,
    /// Last heartbeat, ms since the epoch.
    pub heartbeat_at: i64,
}

impl WorkerRow {
    /// Whether it has been silent for longer than `lost_after`.
    pub fn is_lost(&self, now_ms: i64, lost_after: Duration) -> bool {
        now_ms - self.heartbeat_at > lost_after.as_millis() as i64
    }
}

/// Wake-ups for an idle worker: a notification from a submit, or the
/// poll interval running out, whichever comes first.
#[derive(Debug)]
pub struct Wakeups {
    listener: Option<PgListener>,
    poll: Duration,
}

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// A submit notified `skiff_jobs`.
    Notified,
    /// The poll interval ran out.
    Polled,
}

impl Wakeups {
    /// Whether notifications still arrive (else this polls only).
    pub fn is_listening(&self) -> bool {
        self.listener.is_some()
    }

    /// Wait for jobs: a notification, or at most the poll interval. A lost
    /// listening connection falls back to polling (and says so).
    pub async fn wait(&mut self) -> Woken {
        let Some(listener) = self.listener.as_mut() else {
            tokio::time::sleep(self.poll).await;
            return Woken::Polled;
        };
        match tokio::time::timeout(self.poll, listener.try_recv()).await {
            Ok(Ok(Some(_))) => Woken::Notified,
            Ok(Ok(None)) | Err(_) => Woken::Polled,
            Ok(Err(e)) => {
                tracing::warn!("LISTEN {NOTIFY_CHANNEL} lost ({e}): polling only");
                self.listener = None;
                Woken::Polled
            }
        }
    }
}

impl PgStore {
    /// The workers that have sent a heartbeat, newest first.
    pub async fn workers(&self) -> Result<Vec<WorkerRow>, QueueError> {
        Ok(sqlx::query_as(
            "SELECT id, host, address, slots, memory_bytes, cpus, running, images::text AS images, \
             version, \
             started_at, heartbeat_at FROM workers ORDER BY heartbeat_at DESC, id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Forget workers silent for longer than `after`; how many.
    pub async fn prune_workers(&self, after: Duration) -> Result<u64, QueueError> {
        let cutoff = now_ms() - after.as_millis() as i64;
        let done = sqlx::query("DELETE FROM workers WHERE heartbeat_at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Wake-ups for this worker: `LISTEN skiff_jobs` unless `notify` is
    /// off (PgBouncer in transaction mode), and a poll every `poll`.
    pub async fn wakeups(&self, notify: bool, poll: Duration) -> Result<Wakeups, QueueError> {
        let listener = if notify {
            let mut l = PgListener::connect_with(&self.pool).await?;
            l.listen(NOTIFY_CHANNEL).await?;
            Some(l)
        } else {
            None
        };
        Ok(Wakeups { listener, poll })
    }
}

impl PgStore {
    /// The image references live workers' stores hold (placement's view;
    /// a worker silent past `lost_after` counts as lost).
    pub async fn fleet_images(&self) -> Result<std::collections::HashSet<String>, QueueError> {
        let lost_after = self.placement().lost_after.as_millis() as i64;
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT jsonb_array_elements_text(images) FROM workers \
             WHERE heartbeat_at > $1",
        )
        .bind(now_ms() - lost_after)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Each live worker's capacity: (memory bytes, CPUs).
    pub async fn live_capacities(&self) -> Result<Vec<(i64, f64)>, QueueError> {
        let lost_after = self.placement().lost_after.as_millis() as i64;
        Ok(
            sqlx::query_as("SELECT memory_bytes, cpus FROM workers WHERE heartbeat_at > $1")
                .bind(now_ms() - lost_after)
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
