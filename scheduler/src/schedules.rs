//! Schedules, after IronWorker's: a job template fired on a cron expression
//! (5 fields, UTC) or every `run_every` seconds, between optional `start_at`
//! and `end_at`, at most `run_times` times.
//!
//! Every fire submits a job through the queue's ordinary path with the
//! idempotency key `sched:<schedule id>:<slot ms>`, so a slot makes one job,
//! also across a crash: the slot being fired is written down (`firing_at`)
//! before its job is submitted, and a restarted worker finishes that same
//! slot, which the key turns into the job already made if there is one.
//!
//! On a fleet (PostgreSQL) every worker runs the firing loop; writing
//! `firing_at` is a conditional update only one of them wins per slot.
//!
//! Missed slots (the worker was down, or busy) are not caught up one by
//! one: only the latest slot that is due fires, then the schedule moves on
//! to its first slot after now.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};

use crate::db::schedule_store::{Fired, ScheduleRow, ScheduleStorage};
use crate::db::Storage;
use crate::error::{FieldError, QueueError};
use crate::queue::{now_ms, Queue};
use crate::request::JobRequest;

type Result<T> = std::result::Result<T, QueueError>;

/// Smallest `run_every`, seconds. IronWorker's is 60; skiff allows 1 (a
/// slot is at most about a second late: the firing loop looks every second).
pub const MIN_RUN_EVERY_S: u64 = 1;
/// Largest `run_every`, seconds (a year).
pub const MAX_RUN_EVERY_S: u64 = 366 * 86_400;
/// The firing loop's longest sleep.
const TICK: Duration = Duration::from_secs(1);

/// A schedule as the API accepts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// The job each fire submits (no idempotency key: the schedule sets it).
    pub job: JobRequest,
    /// A cron expression: 5 fields (minute hour day-of-month month
    /// day-of-week), UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// Seconds between fires; the first is at `start_at` (default now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_every: Option<u64>,
    /// No fire before this time, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<i64>,
    /// No fire after this time, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_at: Option<i64>,
    /// At most this many fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_times: Option<u64>,
}

/// When a schedule fires.
#[derive(Debug, Clone)]
pub enum Rule {
    /// On a cron expression's times.
    Cron(Box<Cron>),
    /// Every this many milliseconds from the first slot.
    Every(i64),
}

/// A checked [`ScheduleRequest`], with its first slot.
#[derive(Debug, Clone)]
pub struct ValidSchedule {
    /// The request.
    pub request: ScheduleRequest,
    /// Its rule.
    pub rule: Rule,
    /// The first slot, ms.
    pub first_at: i64,
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// `s-<16 hex>`.
    pub id: String,
    /// `active`, or `done` once `run_times` or `end_at` is reached.
    pub state: String,
    /// The job each fire submits.
    pub job: JobRequest,
    /// Cron expression, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// Seconds between fires, if it has no cron expression.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_every: Option<i64>,
    /// Not before, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_at: Option<i64>,
    /// Not after, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_at: Option<i64>,
    /// At most this many fires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_times: Option<i64>,
    /// Fires so far.
    pub run_count: i64,
    /// The next slot, ms (none once done).
    pub next_at: Option<i64>,
    /// The last slot fired, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run_at: Option<i64>,
    /// The job the last fire made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_job_id: Option<String>,
    /// Created, ms.
    pub created_at: i64,
    /// Last changed, ms.
    pub updated_at: i64,
}

/// Parse a cron expression: 5 fields, or an `@hourly`-style nickname.
pub fn parse_cron(expr: &str) -> std::result::Result<Cron, FieldError> {
    if expr.len() > 256 {
        return Err(FieldError::new("cron", "longer than 256 characters"));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| FieldError::new("cron", format!("{expr:?}: {e}")))
}

/// An RFC 3339 time (`2026-12-01T04:00:00Z`) as ms since the epoch.
pub fn parse_rfc3339(s: &str) -> std::result::Result<i64, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))
}

/// Ms since the epoch as RFC 3339, UTC, whole seconds.
pub fn format_rfc3339(ms: i64) -> Option<String> {
    utc(ms).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn utc(ms: i64) -> Option<DateTime<Utc>> {
    // Whole seconds: cron slots are whole minutes.
    DateTime::from_timestamp(ms.div_euclid(1000), 0)
}

impl Rule {
    /// The first slot strictly after `t`, if any.
    pub fn next_after(&self, slot: i64, t: i64) -> Option<i64> {
        match self {
            Rule::Every(p) => {
                let k = if t < slot { 0 } else { (t - slot) / p + 1 };
                slot.checked_add(p.checked_mul(k)?)
            }
            Rule::Cron(c) => c
                .find_next_occurrence(&utc(t)?, false)
                .ok()
                .map(|d| d.timestamp_millis()),
        }
    }

    /// The first slot at or after `t`.
    fn first_from(&self, t: i64) -> Option<i64> {
        match self {
            Rule::Every(_) => Some(t),
            Rule::Cron(c) => c
                .find_next_occurrence(&utc(t + 999)?, true)
                .ok()
                .map(|d| d.timestamp_millis()),
        }
    }

    /// The latest slot in `[due, t]`, where `due` is a slot (and `<= t`).
    pub fn latest_due(&self, due: i64, t: i64) -> i64 {
        match self {
            Rule::Every(p) => due + (t - due) / p * p,
            Rule::Cron(c) => utc(t)
                .and_then(|d| c.find_previous_occurrence(&d, true).ok())
                .map(|d| d.timestamp_millis())
                .filter(|&s| s >= due)
                .unwrap_or(due),
        }
    }
}

impl ScheduleRequest {
    /// Check every field at `now`; the error names the first bad one
    /// (fields of the job as `job.<field>`).
    pub fn validate(self, now: i64) -> std::result::Result<ValidSchedule, FieldError> {
        let job = |e: FieldError| FieldError::new(format!("job.{}", e.field), e.message);
        if self.job.idempotency_key.is_some() {
            return Err(FieldError::new(
                "job.idempotency_key",
                "a schedule sets it (sched:<id>:<slot>); leave it out",
            ));
        }
        self.job.clone().validate().map_err(job)?;
        let rule = match (&self.cron, self.run_every) {
            (Some(_), Some(_)) => {
                return Err(FieldError::new("cron", "give cron or run_every, not both"))
            }
            (None, None) => {
                return Err(FieldError::new(
                    "cron",
                    "one of cron or run_every is required",
                ))
            }
            (Some(c), None) => Rule::Cron(Box::new(parse_cron(c)?)),
            (None, Some(s)) => {
                if !(MIN_RUN_EVERY_S..=MAX_RUN_EVERY_S).contains(&s) {
                    return Err(FieldError::new(
                        "run_every",
                        format!("{s} s is not in {MIN_RUN_EVERY_S}–{MAX_RUN_EVERY_S}"),
                    ));
                }
                Rule::Every(s as i64 * 1000)
            }
        };
        // Within ±10,000 years: chrono's range, with room.
        const FAR: i64 = 253_402_300_799_000;
        for (field, t) in [("start_at", self.start_at), ("end_at", self.end_at)] {
            if let Some(t) = t {
                if !(0..=FAR).contains(&t) {
                    return Err(FieldError::new(
                        field,
                        format!("{t} is not a time in ms since the epoch (0–{FAR})"),
                    ));
                }
            }
        }
        if let Some(n) = self.run_times {
            if n == 0 || n > i64::MAX as u64 {
                return Err(FieldError::new("run_times", "must be at least 1"));
            }
        }
        let from = self.start_at.unwrap_or(now).max(now);
        let first_at = match &rule {
            // An interval's slots are counted from start_at, even a past one.
            Rule::Every(_) => match self.start_at {
                Some(s) if s < now => rule.latest_due(s, now),
                _ => from,
            },
            Rule::Cron(_) => rule.first_from(from).ok_or_else(|| {
                FieldError::new("cron", "the expression never matches a future time")
            })?,
        };
        if let Some(end) = self.end_at {
            if end < first_at {
                return Err(FieldError::new(
                    "end_at",
                    format!("{end} is before the first slot, {first_at}"),
                ));
            }
        }
        Ok(ValidSchedule {
            request: self,
            rule,
            first_at,
        })
    }
}

/// The job a fire of slot `slot` submits.
pub fn slot_key(id: &str, slot: i64) -> String {
    format!("sched:{id}:{slot}")
}

fn random_id() -> String {
    format!("s-{:016x}", rand::random::<u64>())
}

fn corrupt(id: &str, e: impl ToString) -> QueueError {
    QueueError::Corrupt {
        id: id.to_string(),
        what: "schedule",
        detail: e.to_string(),
    }
}

impl ScheduleRow {
    /// The schedule as the API shows it.
    fn into_schedule(self) -> Result<Schedule> {
        let job = serde_json::from_str(&self.template).map_err(|e| corrupt(&self.id, e))?;
        Ok(Schedule {
            state: self.state,
            job,
            cron: self.cron,
            run_every: self.run_every,
            start_at: self.start_at,
            end_at: self.end_at,
            run_times: self.run_times,
            run_count: self.run_count,
            next_at: self.next_at,
            last_run_at: self.last_run_at,
            last_job_id: self.last_job_id,
            created_at: self.created_at,
            updated_at: self.updated_at,
            id: self.id,
        })
    }
}

/// The schedules, over a queue on either engine.
#[derive(Debug, Clone)]
pub struct Schedules {
    db: Arc<dyn ScheduleStorage>,
    jobs: Arc<dyn Storage>,
}

impl Schedules {
    /// Over a SQLite queue's database.
    pub fn new(queue: Queue) -> Schedules {
        Schedules::on(Arc::new(queue.clone()), Arc::new(queue))
    }

    /// Kept in `db`; fires submit to `jobs` (the same database).
    pub fn on(db: Arc<dyn ScheduleStorage>, jobs: Arc<dyn Storage>) -> Schedules {
        Schedules { db, jobs }
    }

    /// Store a checked schedule.
    pub async fn create(&self, v: &ValidSchedule) -> Result<Schedule> {
        let now = now_ms();
        let id = random_id();
        let template = serde_json::to_string(&v.request.job).map_err(|e| corrupt(&id, e))?;
        self.db
            .insert_schedule(&ScheduleRow {
                id: id.clone(),
                state: "active".into(),
                template,
                cron: v.request.cron.clone(),
                run_every: v.request.run_every.map(|s| s as i64),
                start_at: v.request.start_at,
                end_at: v.request.end_at,
                run_times: v.request.run_times.map(|n| n as i64),
                run_count: 0,
                next_at: Some(v.first_at),
                firing_at: None,
                last_run_at: None,
                last_job_id: None,
                created_at: now,
                updated_at: now,
            })
            .await?;
        self.get(&id).await
    }

    /// One schedule (not a deleted one).
    pub async fn get(&self, id: &str) -> Result<Schedule> {
        self.db
            .schedule(id)
            .await?
            .ok_or_else(|| QueueError::NotFound(id.to_string()))?
            .into_schedule()
    }

    /// Every schedule not deleted, oldest first.
    pub async fn list(&self) -> Result<Vec<Schedule>> {
        self.db
            .schedules()
            .await?
            .into_iter()
            .map(ScheduleRow::into_schedule)
            .collect()
    }

    /// Delete (no more fires; jobs already made are left alone).
    pub async fn delete(&self, id: &str) -> Result<()> {
        if !self.db.delete_schedule(id, now_ms()).await? {
            return Err(QueueError::NotFound(id.to_string()));
        }
        Ok(())
    }

    /// Fire every due slot; how many jobs were made, and the earliest
    /// next slot of an active schedule.
    pub async fn fire_due(&self) -> Result<(usize, Option<i64>)> {
        let now = now_ms();
        let mut made = 0;
        for r in self.db.due_schedules(now).await? {
            let id = r.id.clone();
            match self.fire_one(r, now).await {
                Ok(true) => made += 1,
                Ok(false) => {}
                // One bad schedule must not stop the others.
                Err(e) => tracing::error!(schedule = %id, "fire: {e}"),
            }
        }
        Ok((made, self.db.next_slot().await?))
    }

    async fn fire_one(&self, r: ScheduleRow, now: i64) -> Result<bool> {
        let id = r.id;
        let Some(next_at) = r.next_at else {
            return Ok(false);
        };
        let rule = match (r.cron, r.run_every) {
            (Some(c), _) => Rule::Cron(Box::new(parse_cron(&c).map_err(|e| corrupt(&id, e))?)),
            (None, Some(s)) if s > 0 => Rule::Every(s * 1000),
            _ => return Err(corrupt(&id, "neither cron nor run_every")),
        };
        // The slot: one a crashed worker was firing, else the latest due.
        let slot = match r.firing_at {
            Some(s) => s,
            None => {
                let slot = rule.latest_due(next_at, r.end_at.map_or(now, |e| e.min(now)));
                if !self.db.claim_slot(&id, next_at, slot).await? {
                    return Ok(false);
                }
                slot
            }
        };
        let mut job: JobRequest = serde_json::from_str(&r.template).map_err(|e| corrupt(&id, e))?;
        job.idempotency_key = Some(slot_key(&id, slot));
        let (job_id, created) = match job.validate() {
            Ok(v) => {
                let (job, created) = self
                    .jobs
                    .submit(vec![v])
                    .await?
                    .pop()
                    .ok_or_else(|| corrupt(&id, "submit returned no job"))?;
                (Some(job.id), created)
            }
            // Checked at create; a template stored by an older worker may
            // not pass a newer one's rules: skip the slot, keep the schedule.
            Err(e) => {
                tracing::error!(schedule = %id, slot, "job template refused: {e}");
                (None, false)
            }
        };
        let count = r.run_count + 1;
        let next = rule
            .next_after(slot, now.max(slot))
            .filter(|&n| r.end_at.is_none_or(|e| n <= e))
            .filter(|_| r.run_times.is_none_or(|n| count < n));
        if let Some(j) = &job_id {
            tracing::info!(schedule = %id, slot, job = %j, created, "schedule fired");
        }
        self.db
            .record_fire(&Fired {
                state: if next.is_some() { "active" } else { "done" },
                next_at: next,
                run_count: count,
                slot,
                job_id,
                now: now_ms(),
                id,
            })
            .await?;
        Ok(created)
    }
}

/// The firing loop: fire what is due, sleep until the next slot (at most
/// a second), until `stop`. Wakes the dispatcher after making jobs. On a
/// fleet every worker runs it; each slot is fired by one.
pub async fn run(s: Schedules, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let sleep = match s.fire_due().await {
            Ok((made, next)) => {
                if made > 0 {
                    wake.notify_one();
                }
                next.map_or(TICK, |n| {
                    Duration::from_millis((n - now_ms()).clamp(0, TICK.as_millis() as i64) as u64)
                })
            }
            Err(e) => {
                tracing::error!("schedules: {e}");
                TICK
            }
        };
        tokio::select! {
            r = stop.changed() => {
                if r.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

impl FromStr for ScheduleRequest {
    type Err = serde_json::Error;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        serde_json::from_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> ScheduleRequest {
        ScheduleRequest {
            job: JobRequest {
                image: "busybox".into(),
                ..Default::default()
            },
            cron: None,
            run_every: Some(60),
            start_at: None,
            end_at: None,
            run_times: None,
        }
    }

    #[test]
    fn test_rfc3339_round_trip() {
        let t = parse_rfc3339("2026-01-01T00:00:00Z").expect("time");
        assert_eq!(t, 1_767_225_600_000);
        assert_eq!(format_rfc3339(t).as_deref(), Some("2026-01-01T00:00:00Z"));
        assert!(parse_rfc3339("tomorrow").is_err());
    }

    #[test]
    fn test_every_slots_stay_on_the_grid() {
        let r = Rule::Every(1000);
        assert_eq!(r.next_after(5000, 5000), Some(6000));
        assert_eq!(r.next_after(5000, 7500), Some(8000));
        assert_eq!(r.next_after(5000, 4000), Some(5000));
        assert_eq!(r.latest_due(5000, 9999), 9000);
    }

    #[test]
    fn test_cron_slots() {
        let r = Rule::Cron(Box::new(parse_cron("*/5 * * * *").expect("cron")));
        // 2026-01-01T00:00:00Z
        let t0 = 1_767_225_600_000;
        assert_eq!(r.next_after(t0, t0), Some(t0 + 300_000));
        assert_eq!(r.next_after(t0, t0 + 1), Some(t0 + 300_000));
        assert_eq!(r.latest_due(t0, t0 + 700_000), t0 + 600_000);
        assert_eq!(r.first_from(t0 + 1), Some(t0 + 300_000));
        assert_eq!(r.first_from(t0), Some(t0));
    }

    #[test]
    fn test_bad_fields_named() {
        let now = now_ms();
        let cases = [
            (
                "cron",
                ScheduleRequest {
                    cron: Some("not a cron".into()),
                    run_every: None,
                    ..req()
                },
            ),
            (
                "cron",
                ScheduleRequest {
                    cron: Some("0 0 * * * *".into()),
                    run_every: None,
                    ..req()
                },
            ),
            (
                "cron",
                ScheduleRequest {
                    cron: Some("* * * * *".into()),
                    ..req()
                },
            ),
            (
                "cron",
                ScheduleRequest {
                    run_every: None,
                    ..req()
                },
            ),
            (
                "run_every",
                ScheduleRequest {
                    run_every: Some(0),
                    ..req()
                },
            ),
            (
                "run_times",
                ScheduleRequest {
                    run_times: Some(0),
                    ..req()
                },
            ),
            (
                "end_at",
                ScheduleRequest {
                    end_at: Some(now - 10_000),
                    ..req()
                },
            ),
            (
                "job.image",
                ScheduleRequest {
                    job: JobRequest::default(),
                    ..req()
                },
            ),
            (
                "job.idempotency_key",
                ScheduleRequest {
                    job: JobRequest {
                        image: "x".into(),
                        idempotency_key: Some("k".into()),
                        ..Default::default()
                    },
                    ..req()
                },
            ),
        ];
        for (field, r) in cases {
            let e = r.clone().validate(now).expect_err(field);
            assert_eq!(e.field, field, "{r:?}: {e}");
        }
    }

    /// A worker killed after submitting a slot's job but before moving the
    /// schedule on: the restarted one finishes that slot, and the key
    /// turns its submit into the job already made.
    #[tokio::test]
    async fn test_a_crash_mid_fire_makes_no_second_job() {
        let dir = tempfile::tempdir().expect("tempdir");
        let queue = Queue::open(&dir.path().join("jobs.db"))
            .await
            .expect("open");
        let s = Schedules::new(queue.clone());
        let now = now_ms();
        let v = ScheduleRequest {
            start_at: Some(now - 500),
            run_every: Some(3600),
            ..req()
        }
        .validate(now)
        .expect("valid");
        let sched = s.create(&v).await.expect("create");
        let slot = sched.next_at.expect("next_at");
        // The crash: firing_at written, the job submitted, nothing more.
        sqlx::query("UPDATE schedules SET firing_at = ? WHERE id = ?")
            .bind(slot)
            .bind(&sched.id)
            .execute(queue.pool())
            .await
            .expect("firing_at");
        let mut job = v.request.job.clone();
        job.idempotency_key = Some(slot_key(&sched.id, slot));
        let first = queue
            .submit(vec![job.validate().expect("job")])
            .await
            .expect("submit")
            .remove(0)
            .0;
        // The restarted worker.
        let (made, _) = s.fire_due().await.expect("fire");
        assert_eq!(made, 0);
        let after = s.get(&sched.id).await.expect("get");
        assert_eq!(after.run_count, 1);
        assert_eq!(after.last_run_at, Some(slot));
        assert_eq!(after.last_job_id.as_deref(), Some(first.id.as_str()));
        assert_eq!(after.next_at, Some(slot + 3_600_000));
        let jobs = queue
            .list(&crate::queue::ListFilter::default())
            .await
            .expect("list");
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        // Nothing more is due.
        assert_eq!(s.fire_due().await.expect("fire").0, 0);
    }

    /// Slots missed while the worker was down: only the latest fires.
    #[tokio::test]
    async fn test_missed_slots_fire_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let queue = Queue::open(&dir.path().join("jobs.db"))
            .await
            .expect("open");
        let s = Schedules::new(queue.clone());
        let now = now_ms();
        let v = ScheduleRequest {
            run_every: Some(1),
            ..req()
        }
        .validate(now)
        .expect("valid");
        let sched = s.create(&v).await.expect("create");
        let first = sched.next_at.expect("next_at");
        // Down for ten slots.
        sqlx::query("UPDATE schedules SET next_at = ? WHERE id = ?")
            .bind(first - 10_000)
            .bind(&sched.id)
            .execute(queue.pool())
            .await
            .expect("backdate");
        assert_eq!(s.fire_due().await.expect("fire").0, 1);
        let after = s.get(&sched.id).await.expect("get");
        assert_eq!(after.run_count, 1);
        let last = after.last_run_at.expect("last_run_at");
        assert!(last >= first - 1000 && last <= now_ms(), "{after:?}");
        assert_eq!((last - first).rem_euclid(1000), 0, "{after:?}");
        assert!(after.next_at.expect("next_at") > last, "{after:?}");
    }

    #[test]
    fn test_unknown_fields_refused() {
        let e = ScheduleRequest::from_str(r#"{"job":{"image":"x"},"run_every":5,"bogus":1}"#)
            .expect_err("unknown field");
        assert!(e.to_string().contains("bogus"), "{e}");
    }
}
