//! Accepting jobs: one `FULL`-synced transaction per request, all or none.
//!
//! The jobs and their first transitions go in as multi-row `INSERT`s, a
//! few hundred jobs per round trip to sqlx's database thread, and the
//! accepted jobs are answered from what was written, not read back: a
//! batch costs a handful of round trips, not several per job. Only an
//! idempotency key costs a lookup of its own.

use std::collections::HashMap;

use sqlx::{QueryBuilder, Sqlite};

use crate::error::QueueError;
use crate::queue::{now_ms, Queue};
use crate::request::ValidJob;
use crate::state::{Job, JobState, Transition};

/// Jobs per multi-row `INSERT`: 21 parameters each, well inside SQLite's
/// 32,766.
const ROWS_PER_STATEMENT: usize = 250;

/// A job to insert (either engine): its row, and the job as it will read.
pub(crate) struct NewJob {
    pub(crate) job: Job,
    pub(crate) spec: String,
    pub(crate) payload: Option<Vec<u8>>,
    pub(crate) memory_bytes: Option<i64>,
    pub(crate) cpus: Option<f64>,
    pub(crate) timeout_ms: i64,
    pub(crate) retry_delay_ms: i64,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) webhook: Option<String>,
    pub(crate) code: Option<String>,
    /// The image reference it runs (PostgreSQL's placement reads it).
    pub(crate) image: String,
}

/// Where each accepted job's answer comes from.
enum Answer {
    /// Inserted now: `new[i]`.
    New(usize),
    /// Its key was seen before this request: that job, read back.
    Existing(String),
    /// Its key was used by `new[i]` earlier in this request.
    Repeat(usize),
}

fn random_id() -> String {
    format!("j-{:016x}", rand::random::<u64>())
}

/// The row and the job for `v`, accepted at `now`, with a new id.
pub(crate) fn new_job(v: ValidJob, now: i64) -> Result<NewJob, QueueError> {
    let id = random_id();
    let state = if v.delay_ms > 0 {
        JobState::Delayed
    } else {
        JobState::Queued
    };
    let mut request = v.request;
    let payload = request.payload.take().map(String::into_bytes);
    let spec = serde_json::to_string(&request).map_err(|e| QueueError::Corrupt {
        id: id.clone(),
        what: "spec",
        detail: e.to_string(),
    })?;
    Ok(NewJob {
        spec,
        memory_bytes: v.memory_bytes.map(|m| m as i64),
        cpus: request.cpus,
        timeout_ms: v.timeout_ms,
        retry_delay_ms: v.retry_delay_ms,
        idempotency_key: request.idempotency_key.clone(),
        webhook: request.webhook.clone(),
        code: request.code.clone(),
        image: placement_key(&request.image_ref()),
        job: Job {
            state,
            reason: None,
            queue: v.queue,
            label: request.label.clone(),
            priority: v.priority,
            payload_bytes: payload.as_ref().map_or(0, |p| p.len() as i64),
            attempts: 0,
            max_retries: v.max_retries,
            run_at: now + v.delay_ms,
            created_at: now,
            updated_at: now,
            attempt_list: Vec::new(),
            transitions: vec![Transition { state, at: now }],
            request,
            id,
        },
        payload,
    })
}

impl Queue {
    /// Accept jobs, all or none, in one transaction. A job whose
    /// idempotency key was seen (before, or earlier in `jobs`) answers
    /// with that job, and `false`.
    pub async fn submit(&self, jobs: Vec<ValidJob>) -> Result<Vec<(Job, bool)>, QueueError> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let mut new: Vec<NewJob> = Vec::with_capacity(jobs.len());
        let mut answers = Vec::with_capacity(jobs.len());
        let mut keys: HashMap<String, usize> = HashMap::new();
        for v in jobs {
            if let Some(key) = &v.request.idempotency_key {
                if let Some(&i) = keys.get(key) {
                    answers.push(Answer::Repeat(i));
                    continue;
                }
                let found: Option<String> =
                    sqlx::query_scalar("SELECT id FROM jobs WHERE idempotency_key = ?")
                        .bind(key)
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some(id) = found {
                    answers.push(Answer::Existing(id));
                    continue;
                }
                keys.insert(key.clone(), new.len());
            }
            answers.push(Answer::New(new.len()));
            new.push(new_job(v, now)?);
        }
        for rows in new.chunks(ROWS_PER_STATEMENT) {
            insert(rows).build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        let mut out = Vec::with_capacity(answers.len());
        for a in answers {
            out.push(match a {
                Answer::New(i) => (new[i].job.clone(), true),
                Answer::Repeat(i) => (new[i].job.clone(), false),
                Answer::Existing(id) => (self.get(&id).await?, false),
            });
        }
        Ok(out)
    }
}

/// One round trip: the rows of `jobs`, and the first transition of each.
fn insert(jobs: &[NewJob]) -> QueryBuilder<'_, Sqlite> {
    let mut q = QueryBuilder::new(
        "INSERT INTO jobs (id, state, queue, label, priority, spec, payload, \
         memory_bytes, cpus, timeout_ms, max_retries, retry_delay_ms, run_at, \
         idempotency_key, webhook, code, created_at, updated_at) ",
    );
    q.push_values(jobs, |mut row, n| {
        let j = &n.job;
        row.push_bind(&j.id)
            .push_bind(j.state.as_str())
            .push_bind(&j.queue)
            .push_bind(&j.label)
            .push_bind(j.priority)
            .push_bind(&n.spec)
            .push_bind(&n.payload)
            .push_bind(n.memory_bytes)
            .push_bind(n.cpus)
            .push_bind(n.timeout_ms)
            .push_bind(j.max_retries)
            .push_bind(n.retry_delay_ms)
            .push_bind(j.run_at)
            .push_bind(&n.idempotency_key)
            .push_bind(&n.webhook)
            .push_bind(&n.code)
            .push_bind(j.created_at)
            .push_bind(j.updated_at);
    });
    q.push("; INSERT INTO transitions (job_id, at, state) ");
    q.push_values(jobs, |mut row, n| {
        row.push_bind(&n.job.id)
            .push_bind(n.job.created_at)
            .push_bind(n.job.state.as_str());
    });
    q
}

/// The form of an image reference that placement compares with what
/// workers advertise (image ids, and tags in canonical form): a tag is
/// normalised as Docker does (`busybox` → `docker.io/library/busybox:latest`);
/// anything else (an id, a digest) is kept as given.
pub(crate) fn placement_key(image: &str) -> String {
    imagestore::images::normalize_reference(image).unwrap_or_else(|_| image.to_string())
}
