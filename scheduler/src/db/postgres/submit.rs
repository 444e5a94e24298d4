//! Accepting jobs on PostgreSQL: one transaction per request; multi-row
//! `INSERT … ON CONFLICT (idempotency_key) DO NOTHING RETURNING id`, so
//! two workers accepting the same key at once make one job, and the other
//! answers with it. The transaction notifies `skiff_jobs`.

use std::collections::HashMap;

use sqlx::{Postgres, QueryBuilder};

use super::PgStore;
use crate::error::QueueError;
use crate::queue::now_ms;
use crate::request::ValidJob;
use crate::state::Job;
use crate::submit::{new_job, NewJob};

/// Jobs per multi-row `INSERT`: 19 parameters each, well inside
/// PostgreSQL's 65,535.
const ROWS_PER_STATEMENT: usize = 500;

impl PgStore {
    pub(super) async fn submit_jobs(
        &self,
        jobs: Vec<ValidJob>,
    ) -> Result<Vec<(Job, bool)>, QueueError> {
        let now = now_ms();
        // A key used twice in one request is one job: the first.
        let mut new: Vec<NewJob> = Vec::with_capacity(jobs.len());
        let mut slot_of = Vec::with_capacity(jobs.len());
        let mut keys: HashMap<String, usize> = HashMap::new();
        for v in jobs {
            let key = v.request.idempotency_key.clone();
            if let Some(&i) = key.as_ref().and_then(|k| keys.get(k)) {
                slot_of.push((i, false));
                continue;
            }
            if let Some(k) = key {
                keys.insert(k, new.len());
            }
            slot_of.push((new.len(), true));
            new.push(new_job(v, now)?);
        }
        let mut tx = self.pool.begin().await?;
        let mut inserted: Vec<String> = Vec::with_capacity(new.len());
        // In key order: two requests with the same keys in another order
        // would otherwise each wait on the other's uncommitted key.
        let mut order: Vec<&NewJob> = new.iter().collect();
        order.sort_by(|a, b| a.idempotency_key.cmp(&b.idempotency_key));
        for rows in order.chunks(ROWS_PER_STATEMENT) {
            let ids: Vec<String> = insert(rows)
                .build_query_scalar()
                .fetch_all(&mut *tx)
                .await?;
            inserted.extend(ids);
        }
        let fresh: std::collections::HashSet<&str> = inserted.iter().map(String::as_str).collect();
        let firsts: Vec<&NewJob> = new
            .iter()
            .filter(|n| fresh.contains(n.job.id.as_str()))
            .collect();
        if !firsts.is_empty() {
            let ids: Vec<&str> = firsts.iter().map(|n| n.job.id.as_str()).collect();
            let states: Vec<&str> = firsts.iter().map(|n| n.job.state.as_str()).collect();
            sqlx::query(
                "INSERT INTO transitions (job_id, at, state) \
                 SELECT id, $1, state FROM UNNEST($2::text[], $3::text[]) AS t(id, state)",
            )
            .bind(now)
            .bind(&ids)
            .bind(&states)
            .execute(&mut *tx)
            .await?;
            super::notify_jobs(&mut tx).await?;
        }
        tx.commit().await?;
        // A key already in the table (before, or taken by another worker
        // meanwhile) answers with the job that holds it.
        let mut out = Vec::with_capacity(slot_of.len());
        for (i, first) in slot_of {
            let n = &new[i];
            if fresh.contains(n.job.id.as_str()) {
                out.push((n.job.clone(), first));
                continue;
            }
            let key = n.idempotency_key.as_deref().unwrap_or_default();
            let id: String = sqlx::query_scalar("SELECT id FROM jobs WHERE idempotency_key = $1")
                .bind(key)
                .fetch_one(&self.pool)
                .await?;
            out.push((self.get_job(&id).await?, false));
        }
        Ok(out)
    }
}

/// The rows of `jobs`, skipping any whose key is taken; the ids inserted.
fn insert<'a>(jobs: &[&'a NewJob]) -> QueryBuilder<'a, Postgres> {
    let mut q = QueryBuilder::new(
        "INSERT INTO jobs (id, state, queue, label, priority, spec, payload, \
         memory_bytes, cpus, timeout_ms, max_retries, retry_delay_ms, run_at, \
         idempotency_key, webhook, code, image, created_at, updated_at) ",
    );
    q.push_values(jobs.iter().copied(), |mut row, n: &'a NewJob| {
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
            .push_bind(&n.image)
            .push_bind(j.created_at)
            .push_bind(j.updated_at);
    });
    q.push(" ON CONFLICT (idempotency_key) DO NOTHING RETURNING id");
    q
}
