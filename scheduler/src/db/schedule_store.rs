//! The schedules' storage seam: the few statements firing needs, one
//! implementation per engine (`sqlite_schedules.rs`, `postgres/schedules.rs`).
//! What a fire means (the slot, the job's key, the next slot) is
//! engine-neutral, in [`crate::schedules`].

use crate::error::QueueError;

/// A schedule's row, as both engines store it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ScheduleRow {
    pub id: String,
    pub state: String,
    pub template: String,
    pub cron: Option<String>,
    pub run_every: Option<i64>,
    pub start_at: Option<i64>,
    pub end_at: Option<i64>,
    pub run_times: Option<i64>,
    pub run_count: i64,
    pub next_at: Option<i64>,
    pub firing_at: Option<i64>,
    pub last_run_at: Option<i64>,
    pub last_job_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The columns of [`ScheduleRow`].
pub(crate) const SCHEDULE_COLUMNS: &str = "id, state, template, cron, run_every, start_at, \
     end_at, run_times, run_count, next_at, firing_at, last_run_at, last_job_id, created_at, \
     updated_at";

/// A fire's outcome, written once its job is submitted.
#[derive(Debug, Clone)]
pub struct Fired {
    /// The schedule.
    pub id: String,
    /// The slot fired (the row's `firing_at`; nothing is written if that
    /// changed meanwhile).
    pub slot: i64,
    /// `active`, or `done` when no slot is left.
    pub state: &'static str,
    /// The next slot.
    pub next_at: Option<i64>,
    /// Fires so far, this one counted.
    pub run_count: i64,
    /// The job made (or found, by its key).
    pub job_id: Option<String>,
    /// When.
    pub now: i64,
}

/// Where schedules are kept.
#[async_trait::async_trait]
pub trait ScheduleStorage: Send + Sync + std::fmt::Debug {
    /// Store a new active schedule (`row`'s run_count, firing_at,
    /// last_run_at and last_job_id are ignored).
    async fn insert_schedule(&self, row: &ScheduleRow) -> Result<(), QueueError>;

    /// One schedule that is not deleted.
    async fn schedule(&self, id: &str) -> Result<Option<ScheduleRow>, QueueError>;

    /// Every schedule not deleted, oldest first.
    async fn schedules(&self) -> Result<Vec<ScheduleRow>, QueueError>;

    /// Mark deleted; whether there was one to delete.
    async fn delete_schedule(&self, id: &str, now: i64) -> Result<bool, QueueError>;

    /// Active schedules due at `now`, earliest first, at most 256.
    async fn due_schedules(&self, now: i64) -> Result<Vec<ScheduleRow>, QueueError>;

    /// Write down that `slot` is being fired, if the schedule is still
    /// active at `next_at` and nobody is firing it: whether this caller
    /// won. On a fleet, exactly one worker wins each slot.
    async fn claim_slot(&self, id: &str, next_at: i64, slot: i64) -> Result<bool, QueueError>;

    /// Move the schedule on after a fire (fenced on `firing_at = slot`).
    async fn record_fire(&self, f: &Fired) -> Result<(), QueueError>;

    /// The earliest next slot of an active schedule.
    async fn next_slot(&self) -> Result<Option<i64>, QueueError>;
}

/// `UPDATE` after a fire; a deleted schedule stays deleted.
pub(crate) fn record_fire_sql(p: [&str; 8]) -> String {
    format!(
        "UPDATE schedules SET state = CASE WHEN state = 'deleted' THEN state ELSE {} END, \
         next_at = CASE WHEN state = 'deleted' THEN NULL ELSE {} END, firing_at = NULL, \
         run_count = {}, last_run_at = {}, last_job_id = COALESCE({}, last_job_id), \
         updated_at = {} WHERE id = {} AND firing_at = {}",
        p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]
    )
}
