//! PostgreSQL, a fleet: many workers share one database. Each worker has
//! an id; a claim stamps the attempt with it and a lease, and every write
//! for an attempt is fenced by the attempt number and that worker, so a
//! worker that lost its jobs (a partition outlasting the lease) changes
//! nothing when it comes back. Dequeue is `FOR UPDATE SKIP LOCKED` in one
//! short statement; a submit notifies `skiff_jobs`.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::error::QueueError;

pub use fleet::{Wakeups, Woken, WorkerRow};
pub use lease::WorkerInfo;

mod cancel;
mod code;
mod delayed;
mod drain;
mod fleet;
mod hooks;
mod lease;
pub mod local;
mod manage;
mod queues;
mod read;
mod schedules;
mod submit;
mod turn;
mod webhooks;

/// The channel a submit notifies (`LISTEN skiff_jobs` to wake up).
pub const NOTIFY_CHANNEL: &str = "skiff_jobs";

/// How long a claimed attempt is held without a heartbeat, by default.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-postgres");

/// The queue on a PostgreSQL database, as worker `worker` sees it.
///
/// As on SQLite, what the API accepts commits durably (a 201 means the
/// WAL is flushed), while the dispatcher's own writes (claims, attempt
/// results, delayed jobs falling due) use connections with
/// `synchronous_commit=off`: a server crash can lose the last moments of
/// them, never corrupt anything; those jobs come back `queued` or
/// `running` and run again, at least once, as after a lost worker.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    dispatch: PgPool,
    worker: String,
    lease: Duration,
    placement: std::sync::Arc<std::sync::RwLock<Placement>>,
    output_dir: Option<std::path::PathBuf>,
    /// Whether some queue or code package has a cap (as of the last
    /// [`Storage::caps`]):
    /// the claim then counts running jobs across the fleet.
    capped: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// What placement knows: the image references this worker's store
/// resolves (ids and tags), how long a job another live worker's store
/// holds is left to it, and after how long a silent worker is lost.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Image references this worker's store resolves.
    pub images: Vec<String>,
    /// How long a job is left to a worker whose store holds its image.
    pub grace: Duration,
    /// After how long without a heartbeat a worker is lost.
    pub lost_after: Duration,
}

impl Default for Placement {
    fn default() -> Self {
        Placement {
            images: Vec::new(),
            grace: Duration::from_secs(2),
            lost_after: 2 * DEFAULT_LEASE,
        }
    }
}

impl PgStore {
    /// Connect to `url` (`postgres://…`) as worker `worker` and apply the
    /// migrations (once across workers starting together: sqlx holds an
    /// advisory lock while it migrates).
    pub async fn open(url: &str, worker: &str) -> Result<PgStore, QueueError> {
        let opts: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .connect_with(opts.clone())
            .await?;
        MIGRATOR.run(&pool).await?;
        let dispatch = PgPoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .connect_with(opts.options([
                ("synchronous_commit", "off"),
                // The claim's and the record's plans are the same every
                // time: plan them once (a custom plan per call was 2/3 of
                // a claim's cost), and never JIT them (a generic plan's
                // cost estimate crosses `jit_above_cost`: 9 ms a call).
                ("plan_cache_mode", "force_generic_plan"),
                ("jit", "off"),
            ]))
            .await?;
        Ok(PgStore {
            pool,
            dispatch,
            worker: worker.to_string(),
            lease: DEFAULT_LEASE,
            placement: Default::default(),
            output_dir: None,
            capped: Default::default(),
        })
    }

    /// Hold claimed attempts for `lease` between heartbeats; a worker
    /// silent for two leases counts as lost.
    pub fn with_lease(mut self, lease: Duration) -> PgStore {
        self.lease = lease;
        if let Ok(mut p) = self.placement.write() {
            p.lost_after = 2 * lease;
        }
        self
    }

    /// The images this worker's store holds, for placement (the grace
    /// and silence kept).
    pub fn set_images(&self, images: Vec<String>) {
        if let Ok(mut cur) = self.placement.write() {
            cur.images = images;
        }
    }

    /// Keep the output this worker captures (`dir`, the launchers'
    /// output directory) with each attempt's result, so that any worker
    /// serves it ([`PgStore::output`]).
    pub fn with_output_dir(mut self, dir: std::path::PathBuf) -> PgStore {
        self.output_dir = Some(dir);
        self
    }

    /// Placement from now on: the images this worker's store holds (a
    /// change in the store calls this again), the grace, the silence.
    pub fn set_placement(&self, p: Placement) {
        if let Ok(mut cur) = self.placement.write() {
            *cur = p;
        }
    }

    fn placement(&self) -> Placement {
        self.placement.read().map(|p| p.clone()).unwrap_or_default()
    }

    /// After how long without a heartbeat a worker counts as lost.
    pub fn lost_after(&self) -> Duration {
        self.placement().lost_after
    }

    /// This worker's id.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn lease_ms(&self) -> i64 {
        self.lease.as_millis() as i64
    }
}

/// Wake every worker's `LISTEN skiff_jobs` (sent when `conn`'s
/// transaction commits): jobs may be waiting.
async fn notify_jobs(conn: &mut sqlx::PgConnection) -> Result<(), QueueError> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(NOTIFY_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

/// The state of job `id`, its row locked for `conn`'s transaction.
async fn lock_state(
    conn: &mut sqlx::PgConnection,
    id: &str,
) -> Result<crate::state::JobState, QueueError> {
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    crate::records::state_of(id, &state.ok_or_else(|| QueueError::NotFound(id.into()))?)
}

/// The job columns the views read, in [`crate::records::JobRecord`]'s names.
const JOB_COLUMNS: &str = "id, state, reason, queue, label, priority, spec, \
     COALESCE(octet_length(payload), 0)::BIGINT AS payload_bytes, attempts, max_retries, \
     run_at, created_at, updated_at";

#[async_trait::async_trait]
impl crate::db::Storage for PgStore {
    async fn submit(
        &self,
        jobs: Vec<crate::request::ValidJob>,
    ) -> Result<Vec<(crate::state::Job, bool)>, QueueError> {
        self.submit_jobs(jobs).await
    }

    async fn turn(
        &self,
        ended: &[crate::finish::Ended],
        fits: Option<&crate::claim::Admission>,
    ) -> Result<crate::turn::Turn, QueueError> {
        self.take_turn(ended, fits).await
    }

    async fn get(&self, id: &str) -> Result<crate::state::Job, QueueError> {
        self.get_job(id).await
    }

    async fn promote_delayed(&self) -> Result<(u64, Option<i64>), QueueError> {
        self.promote().await
    }

    async fn cancel(&self, id: &str) -> Result<bool, QueueError> {
        self.cancel_job(id).await
    }

    async fn counts(&self) -> Result<Vec<(crate::state::JobState, String, i64)>, QueueError> {
        self.count_jobs().await
    }

    async fn requeue_stopped(&self, running: &[(String, i64)]) -> Result<(), QueueError> {
        self.requeue(running).await
    }

    async fn ended_per_minute(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(i64, crate::state::JobState, i64)>, QueueError> {
        self.ended_minutes(since_ms).await
    }

    async fn caps(&self) -> Result<crate::db::Caps, QueueError> {
        self.read_caps().await
    }

    async fn list(
        &self,
        f: &crate::queue::ListFilter,
    ) -> Result<Vec<crate::state::Job>, QueueError> {
        self.list_jobs(f).await
    }

    async fn retry(&self, id: &str) -> Result<(), QueueError> {
        self.retry_job(id).await
    }
}
