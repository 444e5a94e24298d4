//! The dispatcher's turn on PostgreSQL: a statement per ended attempt,
//! then one for the claim. A record is the fenced job `UPDATE` and, in
//! data-modifying CTEs fed by its `RETURNING`, the attempt, the transition
//! and the webhook delivery (a fenced-off result writes nothing); a claim
//! is `FOR UPDATE SKIP LOCKED`, then the attempt and transition from its
//! `RETURNING`. Each statement commits on its own, on the dispatcher's
//! `synchronous_commit=off` connections.
//!
//! A claim reads a snapshot from its start, and may lock a job that
//! another worker claimed since (the row fails the recheck and is
//! skipped, but stays locked until the statement ends). A claim never
//! waits, so alone it cannot close a cycle; joined to a record, which
//! waits for its job's row, two workers deadlocked when the claim's scan
//! ran first (the no-op benchmark found it: `deadlock detected` after a
//! 1 s stall). So the usual turn, one ended attempt and a free slot, is
//! one statement ([`TURN`]) whose claim is gated on the record having
//! run: the statement can wait only before it holds any row lock. A turn
//! with more ended attempts records the others first, one by one.

use std::sync::LazyLock;

use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};

use super::PgStore;
use crate::claim::{Admission, ClaimRecord};
use crate::error::QueueError;
use crate::finish::{decide, Ended};
use crate::queue::{now_ms, Claim};
use crate::state::JobState;
use crate::turn::Turn;

/// The record's CTEs (`j` is the fenced job update, which the others
/// follow): parameters `$1`–`$19` (`$18`, `$19`: the attempt's stdout and
/// stderr as captured, if this worker ran it).
const FINISH_CTES: &str = "\
j AS (
  UPDATE jobs SET
    state = CASE WHEN cancel_requested THEN 'cancelled' ELSE $1 END,
    reason = CASE WHEN cancel_requested THEN 'cancelled while running' ELSE $2 END,
    run_at = CASE WHEN cancel_requested THEN $3 ELSE $4 END,
    cancel_requested = false, worker_id = NULL, lease_until = NULL, updated_at = $5
  WHERE id = $6 AND state = 'running' AND attempts = $7 AND worker_id = $8
  RETURNING id, state, reason, webhook
), a AS (
  UPDATE attempts SET
    state = CASE WHEN j.state = 'cancelled' THEN 'cancelled' ELSE $9 END,
    reason = j.reason, exit_code = $10, signal = $11, oom_killed = $12, wall_ms = $13,
    cpu_usec = $14, peak_memory_bytes = $15, stdout_dropped = $16, stderr_dropped = $17,
    ended_at = $3
  FROM j WHERE attempts.job_id = $6 AND attempts.n = $7
), t AS (
  INSERT INTO transitions (job_id, at, state) SELECT id, $3, state FROM j
), w AS (
  INSERT INTO webhook_deliveries (job_id, url, state, next_at, created_at)
  SELECT id, webhook, 'pending', $5, $5 FROM j
  WHERE webhook IS NOT NULL AND state IN ('complete', 'error', 'timeout', 'killed', 'cancelled')
), o AS (
  INSERT INTO outputs (job_id, n, stream, data)
  SELECT j.id, $7, s.stream, s.data FROM j,
    (VALUES ('stdout', $18::bytea), ('stderr', $19::bytea)) AS s(stream, data)
  WHERE s.data IS NOT NULL
  ON CONFLICT DO NOTHING
)";

/// The claim: the first queued job that fits and that placement lets
/// this worker take (`c` returns it). Parameters: now, memory left, CPUs
/// left, full queues, full code packages, the worker, the lease (ms, from
/// the database's clock),
/// the images in this worker's store, the placement grace and after how
/// long a silent worker counts as lost (ms).
///
/// Placement: a job whose image this worker's store holds, or that no
/// live worker with a free slot holds, may be taken at once; one that such
/// another worker holds is left to it for the grace period after it
/// became due, then anyone may take it.
const CLAIM_CTES: &str = "\
next AS (
  SELECT id FROM jobs WHERE state = 'queued'
    AND COALESCE(memory_bytes, 0) <= $2 AND COALESCE(cpus, 0) <= $3
    AND NOT (queue = ANY($4)) AND (code IS NULL OR NOT (code = ANY($5)))
    AND (image = ANY($8) OR run_at <= $1 - $9 OR NOT EXISTS (
      SELECT 1 FROM workers w WHERE w.id <> $6 AND w.heartbeat_at > $1 - $10
        AND w.running < w.slots AND w.images ? jobs.image))
    /*caps*/
  ORDER BY priority DESC, seq LIMIT 1
  FOR UPDATE SKIP LOCKED
), c AS (
  UPDATE jobs SET state = 'running', reason = NULL, attempts = jobs.attempts + 1,
    worker_id = $6, lease_until = (extract(epoch FROM clock_timestamp()) * 1000)::bigint + $7,
    updated_at = $1
  FROM next WHERE jobs.id = next.id
  RETURNING jobs.id, jobs.spec, jobs.payload, jobs.memory_bytes, jobs.cpus, jobs.queue,
    jobs.timeout_ms, jobs.attempts, jobs.run_at, jobs.max_retries, jobs.retry_delay_ms
), a2 AS (
  INSERT INTO attempts (job_id, n, worker_id, state, started_at)
  SELECT id, attempts, $6, 'running', $1 FROM c
), t2 AS (
  INSERT INTO transitions (job_id, at, state) SELECT id, $1, 'running' FROM c
)";

/// A record alone: the job's new state, if recorded.
static FINISH: LazyLock<String> =
    LazyLock::new(|| format!("WITH {FINISH_CTES} SELECT state FROM j"));

/// A claim alone: the job started, if any.
static CLAIM: LazyLock<String> = LazyLock::new(|| format!("WITH {CLAIM_CTES} SELECT * FROM c"));

/// The record of one ended attempt and the next claim, in one statement:
/// one round trip and one commit where two were. `(SELECT count(*) FROM
/// j) >= 0` holds no column, so PostgreSQL makes it a one-time filter
/// above the claim's scan: the record's update (and its wait for its own
/// job's row, if any) is done before the claim locks a row, which keeps
/// the deadlock described above out. Returns `recorded` (the job's new
/// state, or null when fenced off), then the claim's columns (null when
/// nothing was claimed). The record's parameters are `$1`–`$19`, the
/// claim's follow from `$20`.
static TURN: LazyLock<String> = LazyLock::new(|| {
    let gated = CLAIM_CTES.replace("/*caps*/", "AND (SELECT count(*) FROM j) >= 0");
    format!(
        "WITH {FINISH_CTES}, {} SELECT r.state AS recorded, c.* \
         FROM (SELECT (SELECT state FROM j) AS state) r LEFT JOIN c ON true",
        shift_params(&gated, 19)
    )
});

/// `sql` with every parameter `$N` renumbered `$(N + by)`.
fn shift_params(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + by).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// The claim when some queue or code package has a cap: a queue (or
/// package) whose running jobs, across the fleet, reach its
/// `max_concurrency` is passed over. Run
/// after [`CAPS_LOCK`] in the same transaction, so that two workers never
/// both see room for one job.
static CLAIM_CAPPED: LazyLock<String> = LazyLock::new(|| {
    let capped = CLAIM_CTES.replace(
        "/*caps*/",
        "AND NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = jobs.queue \
           AND q.max_concurrency IS NOT NULL AND q.max_concurrency <= ( \
             SELECT count(*) FROM jobs r WHERE r.state = 'running' AND r.queue = jobs.queue)) \
         AND (jobs.code IS NULL OR NOT EXISTS (SELECT 1 FROM code_packages p \
           WHERE p.name = jobs.code AND p.max_concurrency IS NOT NULL AND p.max_concurrency <= ( \
             SELECT count(*) FROM jobs r WHERE r.state = 'running' AND r.code = jobs.code)))",
    );
    format!("WITH {capped} SELECT * FROM c")
});

/// Serializes capped claims across the fleet until their transaction
/// ends (a constant key: `skiff` in ASCII).
const CAPS_LOCK: &str = "SELECT pg_advisory_xact_lock(1936419174)";

/// Record `e`, an attempt of `worker`'s, on `conn`, with its `output`
/// (stdout, stderr) when known: the job's new state, or `None` when
/// fenced off.
pub(super) async fn record_in(
    conn: &mut sqlx::PgConnection,
    e: &Ended,
    worker: &str,
    now: i64,
    output: Output,
) -> Result<Option<JobState>, QueueError> {
    let row = bind_finish(sqlx::query(&FINISH), e, worker, now)
        .bind(output[0].as_deref())
        .bind(output[1].as_deref())
        .fetch_optional(&mut *conn)
        .await?;
    let state: Option<String> = row.map(|r| r.try_get("state")).transpose()?;
    Ok(state.and_then(|s| JobState::parse(&s)))
}

/// An attempt's captured stdout and stderr, if known.
pub(super) type Output = [Option<Vec<u8>>; 2];

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Bind the record's parameters (`$1`–`$17`) for `e`.
fn bind_finish<'q>(q: PgQuery<'q>, e: &'q Ended, worker: &'q str, now: i64) -> PgQuery<'q> {
    let d = decide(e, now);
    let out = &e.outcome;
    q.bind(d.state.as_str())
        .bind(out.reason.as_deref())
        .bind(d.ended)
        .bind(d.run_at)
        .bind(now)
        .bind(&e.id)
        .bind(e.n)
        .bind(worker)
        .bind(d.attempt_state.as_str())
        .bind(out.exit_code)
        .bind(out.signal)
        .bind(out.oom_killed)
        .bind(out.wall_ms)
        .bind(out.cpu_usec)
        .bind(out.peak_memory_bytes)
        .bind(out.dropped.map(|d| d[0]))
        .bind(out.dropped.map(|d| d[1]))
}

/// Bind the claim's parameters ([`CLAIM_CTES`]).
fn bind_claim<'q>(q: PgQuery<'q>, fits: &'q Admission, s: &'q PgStore, now: i64) -> PgQuery<'q> {
    let p = s.placement();
    q.bind(now)
        .bind(i64::try_from(fits.memory_bytes).unwrap_or(i64::MAX))
        .bind(fits.cpus + 1e-9)
        .bind(&fits.full_queues)
        .bind(&fits.full_codes)
        .bind(&s.worker)
        .bind(s.lease_ms())
        .bind(p.images)
        .bind(p.grace.as_millis() as i64)
        .bind(p.lost_after.as_millis() as i64)
}

impl PgStore {
    pub(super) async fn take_turn(
        &self,
        ended: &[Ended],
        fits: Option<&Admission>,
    ) -> Result<Turn, QueueError> {
        let now = now_ms();
        let mut recorded = Vec::with_capacity(ended.len());
        let capped = self.capped.load(std::sync::atomic::Ordering::Relaxed);
        if let (Some(fits), Some((last, before)), false) = (fits, ended.split_last(), capped) {
            for e in before {
                recorded.push(self.record(e, now).await?);
            }
            let [out, err] = self.captured(last).await;
            let q = bind_finish(sqlx::query(&TURN), last, &self.worker, now)
                .bind(out)
                .bind(err);
            let row = bind_claim(q, fits, self, now)
                .fetch_one(&self.dispatch)
                .await?;
            let state: Option<String> = row.try_get("recorded")?;
            recorded.push(state.and_then(|s| JobState::parse(&s)));
            let claimed: Option<String> = row.try_get("id")?;
            let claim = match claimed {
                None => Ok(None),
                Some(_) => self.claim_of(&row).await,
            };
            return Ok(Turn { recorded, claim });
        }
        for e in ended {
            recorded.push(self.record(e, now).await?);
        }
        let row = match fits {
            None => None,
            Some(fits) if capped => {
                let mut tx = self.dispatch.begin().await?;
                sqlx::query(CAPS_LOCK).execute(&mut *tx).await?;
                let row = bind_claim(sqlx::query(&CLAIM_CAPPED), fits, self, now)
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                row
            }
            Some(fits) => {
                bind_claim(sqlx::query(&CLAIM), fits, self, now)
                    .fetch_optional(&self.dispatch)
                    .await?
            }
        };
        let claim = match row {
            None => Ok(None),
            Some(row) => self.claim_of(&row).await,
        };
        Ok(Turn { recorded, claim })
    }

    async fn record(&self, e: &Ended, now: i64) -> Result<Option<JobState>, QueueError> {
        let output = self.captured(e).await;
        let mut conn = self.dispatch.acquire().await?;
        record_in(&mut conn, e, &self.worker, now, output).await
    }

    /// The output this worker captured for `e`'s attempt (none when it
    /// keeps no output directory, or a stream was never written).
    async fn captured(&self, e: &Ended) -> Output {
        let Some(dir) = &self.output_dir else {
            return [None, None];
        };
        let (out, err) = crate::launchers::output_names(&e.id, e.n);
        let read = |name: String| async move { tokio::fs::read(dir.join(name)).await.ok() };
        [read(out).await, read(err).await]
    }

    /// The claim in `r`; a job whose stored request cannot be read is
    /// ended in `error` (not retried) and reported.
    async fn claim_of(&self, r: &PgRow) -> Result<Option<Claim>, QueueError> {
        match ClaimRecord::from_row(r)?.into_claim() {
            Ok(c) => Ok(Some(c)),
            Err(failed) => {
                let (end, why) = *failed;
                self.record(&end, now_ms()).await?;
                Err(why)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shift_params;

    #[test]
    fn shift_params_renumbers_every_parameter_whole() {
        assert_eq!(
            shift_params("a = $1 AND b = $10, $2::bytea $", 19),
            "a = $20 AND b = $29, $21::bytea $"
        );
    }

    /// The deadlock argument holds only while PostgreSQL makes the gate a
    /// one-time filter between the claim's row locks and its scan: the
    /// turn's plan is read back (with PostgreSQL 15 `EXPLAIN` shows the
    /// plan for these values; the gate holds no column, so a generic plan
    /// places it alike).
    #[tokio::test]
    async fn the_claim_is_gated_on_the_record_in_the_plan() {
        use crate::db::conformance::{cluster, ended, fits};
        let Some(c) = cluster() else {
            return;
        };
        let s = super::PgStore::open(&c.url("plan").expect("a database"), "w1")
            .await
            .expect("open");
        let e = ended(
            "j-none",
            1,
            Default::default(),
            crate::state::JobState::Complete,
        );
        let admission = fits();
        let sql = format!("EXPLAIN (COSTS OFF) {}", &*super::TURN);
        let q = super::bind_finish(sqlx::query(&sql), &e, "w1", 0)
            .bind(None::<Vec<u8>>)
            .bind(None::<Vec<u8>>);
        let rows = super::bind_claim(q, &admission, &s, 0)
            .fetch_all(&s.dispatch)
            .await
            .expect("explain");
        let plan: Vec<String> = rows
            .iter()
            .map(|r| sqlx::Row::try_get::<String, _>(r, 0).expect("a plan line"))
            .collect();
        let after = |from: usize, what: &str| {
            plan.iter()
                .skip(from)
                .position(|l| l.contains(what))
                .map(|i| i + from)
                .unwrap_or(usize::MAX)
        };
        let next = after(0, "CTE next");
        let lock = after(next, "LockRows");
        let gate = after(lock, "One-Time Filter: ");
        let scan = after(gate, " on jobs ");
        let end = after(next, "CTE c");
        assert!(
            next < lock && lock < gate && gate < scan && scan < end,
            "the gate sits between the row locks and the scan:\n{}",
            plan.join("\n")
        );
    }

    #[test]
    fn the_turn_uses_the_record_and_claim_parameters_in_order() {
        let sql = &*super::TURN;
        for n in 1..=29 {
            assert!(sql.contains(&format!("${n}")), "${n} missing");
        }
        assert!(!sql.contains("$30"));
        assert!(sql.contains("(SELECT count(*) FROM j) >= 0"));
    }
}
