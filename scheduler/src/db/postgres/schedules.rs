//! Schedules on PostgreSQL: every worker runs the firing loop, and
//! [`ScheduleStorage::claim_slot`]'s conditional `UPDATE` lets exactly one
//! of them fire each slot (a second updater waits on the row lock, then
//! finds `firing_at` set). A worker lost mid-fire leaves `firing_at`; the
//! next worker to look finishes that slot, and the job's idempotency key
//! turns its submit into the job already made.

use super::PgStore;
use crate::db::schedule_store::{
    record_fire_sql, Fired, ScheduleRow, ScheduleStorage, SCHEDULE_COLUMNS,
};
use crate::error::QueueError;

#[async_trait::async_trait]
impl ScheduleStorage for PgStore {
    async fn insert_schedule(&self, r: &ScheduleRow) -> Result<(), QueueError> {
        sqlx::query(
            "INSERT INTO schedules (id, state, template, cron, run_every, start_at, end_at, \
             run_times, next_at, created_at, updated_at) \
             VALUES ($1, 'active', $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&r.id)
        .bind(&r.template)
        .bind(&r.cron)
        .bind(r.run_every)
        .bind(r.start_at)
        .bind(r.end_at)
        .bind(r.run_times)
        .bind(r.next_at)
        .bind(r.created_at)
        .bind(r.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn schedule(&self, id: &str) -> Result<Option<ScheduleRow>, QueueError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = $1 AND state != 'deleted'"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRow>, QueueError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE state != 'deleted' ORDER BY seq"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn delete_schedule(&self, id: &str, now: i64) -> Result<bool, QueueError> {
        let r = sqlx::query(
            "UPDATE schedules SET state = 'deleted', next_at = NULL, updated_at = $1 \
             WHERE id = $2 AND state != 'deleted'",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn due_schedules(&self, now: i64) -> Result<Vec<ScheduleRow>, QueueError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE state = 'active' AND next_at <= $1 \
             ORDER BY next_at LIMIT 256"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn claim_slot(&self, id: &str, next_at: i64, slot: i64) -> Result<bool, QueueError> {
        let r = sqlx::query(
            "UPDATE schedules SET firing_at = $1 WHERE id = $2 AND state = 'active' \
             AND next_at = $3 AND firing_at IS NULL",
        )
        .bind(slot)
        .bind(id)
        .bind(next_at)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn record_fire(&self, f: &Fired) -> Result<(), QueueError> {
        let p = ["$1::text", "$2::bigint", "$3", "$4", "$5", "$6", "$7", "$8"];
        sqlx::query(&record_fire_sql(p))
            .bind(f.state)
            .bind(f.next_at)
            .bind(f.run_count)
            .bind(f.slot)
            .bind(&f.job_id)
            .bind(f.now)
            .bind(&f.id)
            .bind(f.slot)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn next_slot(&self) -> Result<Option<i64>, QueueError> {
        Ok(
            sqlx::query_scalar("SELECT MIN(next_at) FROM schedules WHERE state = 'active'")
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
