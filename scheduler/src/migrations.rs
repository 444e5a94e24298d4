//! Migrations: versioned SQL in `scheduler/migrations/`, applied at start.
//! A migration that has landed never changes, or databases made with it
//! stop opening (sqlx checks each applied version's checksum).
//!
//! One did: version 7 shipped once as the `jobs.code` column, then, in the
//! next build, as the column and the claim trigger. It is back to the
//! column; the trigger is version 8. [`run`] first mends the record of a
//! database that applied the second form, whose schema already is what
//! versions 7 and 8 make now.

use sha2::{Digest, Sha384};
use sqlx::migrate::Migrator;
use sqlx::SqlitePool;

use crate::error::QueueError;

/// The migrations, embedded.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Version 7 as the build that shipped the trigger in it had it.
const SUPERSEDED_7: &str = include_str!("../migrations-superseded/0007_claim.sql");

/// Mend a superseded version record, then apply what is missing.
pub(crate) async fn run(db: &SqlitePool) -> Result<(), QueueError> {
    mend_superseded(db).await?;
    MIGRATOR.run(db).await?;
    Ok(())
}

/// Record the superseded version 7 as today's: its schema is today's 7
/// plus the trigger that 8 makes only if it is missing.
async fn mend_superseded(db: &SqlitePool) -> Result<(), QueueError> {
    let recorded: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(db)
    .await?;
    let Some(now_7) = MIGRATOR.iter().find(|m| m.version == 7) else {
        return Ok(());
    };
    if recorded.is_some() {
        sqlx::query(
            "UPDATE _sqlx_migrations SET checksum = ?, description = ? \
             WHERE version = 7 AND checksum = ?",
        )
        .bind(&*now_7.checksum)
        .bind(&*now_7.description)
        .bind(Sha384::digest(SUPERSEDED_7.as_bytes()).to_vec())
        .execute(db)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Queue;
    use crate::request::JobRequest;

    /// A database as a build left it whose migrations were versions 1–6
    /// and `seven` (file name, SQL).
    async fn made_by(path: &std::path::Path, seven: (&str, &str)) {
        let dir = tempfile::tempdir().expect("tempdir");
        for m in MIGRATOR.iter().filter(|m| m.version < 7) {
            let file = format!("{:04}_{}.sql", m.version, m.description.replace(' ', "_"));
            std::fs::write(dir.path().join(file), m.sql.as_bytes()).expect("write");
        }
        std::fs::write(dir.path().join(seven.0), seven.1).expect("write");
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        let db = SqlitePool::connect_with(opts).await.expect("connect");
        Migrator::new(dir.path())
            .await
            .expect("migrator")
            .run(&db)
            .await
            .expect("old migrations");
        db.close().await;
    }

    /// Both landed forms of version 7 open, end with the claim trigger and
    /// every version recorded, and a claim opens its attempt.
    #[tokio::test]
    async fn test_databases_from_both_landed_version_sevens_open_and_claim() {
        let now_7 = MIGRATOR.iter().find(|m| m.version == 7).expect("7");
        for seven in [
            ("0007_jobs_code.sql", &*now_7.sql),
            ("0007_claim.sql", SUPERSEDED_7),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("jobs.db");
            made_by(&path, seven).await;
            let queue = Queue::open(&path)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", seven.0));
            let versions: Vec<i64> =
                sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                    .fetch_all(queue.pool())
                    .await
                    .expect("versions");
            let all: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
            assert_eq!(versions, all, "{}", seven.0);
            assert_eq!(&all[..8], (1..=8).collect::<Vec<_>>(), "{}", seven.0);
            let job = JobRequest {
                image: "busybox".into(),
                ..Default::default()
            };
            let id = queue
                .submit(vec![job.validate().expect("job")])
                .await
                .expect("submit")
                .remove(0)
                .0
                .id;
            let fits = crate::claim::Admission {
                memory_bytes: u64::MAX >> 1,
                cpus: 64.0,
                ..Default::default()
            };
            let claim = queue
                .claim_next(&fits)
                .await
                .expect("claim")
                .expect("a job");
            assert_eq!(claim.id, id);
            let job = queue.get(&id).await.expect("get");
            assert_eq!(job.attempt_list.len(), 1, "{}: {job:?}", seven.0);
        }
    }
}
