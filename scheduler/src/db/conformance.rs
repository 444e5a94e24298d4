//! The same behaviour from both engines: each case runs against SQLite
//! and against a PostgreSQL cluster of the test's own, through
//! [`Storage`] only. PostgreSQL's fleet cases (many workers on one
//! database) follow.

use std::sync::Arc;

use super::postgres::local::LocalCluster;
use super::postgres::PgStore;
use super::{Caps, Storage};
use crate::claim::Admission;
use crate::finish::Ended;
use crate::queue::{Outcome, Queue};
use crate::request::JobRequest;
use crate::state::JobState;

pub(crate) fn fits() -> Admission {
    Admission {
        memory_bytes: u64::MAX >> 1,
        cpus: 64.0,
        ..Default::default()
    }
}

pub(crate) fn job() -> JobRequest {
    JobRequest {
        image: "busybox".into(),
        ..Default::default()
    }
}

pub(crate) fn ended(id: &str, n: i64, retry: crate::state::RetryPolicy, state: JobState) -> Ended {
    Ended {
        id: id.into(),
        n,
        retry,
        outcome: Outcome {
            state: Some(state),
            reason: Some("exit 3".into()),
            exit_code: Some(3),
            oom_killed: Some(false),
            ..Default::default()
        },
    }
}

pub(crate) async fn submit(s: &dyn Storage, jobs: Vec<JobRequest>) -> Vec<(String, bool)> {
    let valid = jobs
        .into_iter()
        .map(|j| j.validate().expect("valid"))
        .collect();
    let out = s.submit(valid).await.expect("submit");
    out.into_iter().map(|(j, new)| (j.id, new)).collect()
}

/// A cluster of the test's own; `None` (skip) when PostgreSQL is not
/// installed, which under `SKIFF_REQUIRE_PRIVILEGED=1` (CI) fails instead.
pub(crate) fn cluster() -> Option<LocalCluster> {
    let c = LocalCluster::start().expect("start a cluster");
    if c.is_none() {
        assert!(
            std::env::var("SKIFF_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
            "PostgreSQL's initdb not found (install postgresql, or set SKIFF_PG_BIN)"
        );
        eprintln!("skipped: PostgreSQL not installed");
    }
    c
}

/// Each engine, fresh: SQLite in a temporary directory, and a database on
/// a test cluster (`None` when PostgreSQL is absent and not required).
async fn engines(
    name: &str,
) -> (
    tempfile::TempDir,
    Option<LocalCluster>,
    Vec<(&'static str, Arc<dyn Storage>)>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = Queue::open(&dir.path().join("jobs.db"))
        .await
        .expect("open");
    let mut out: Vec<(&'static str, Arc<dyn Storage>)> = vec![("sqlite", Arc::new(sqlite))];
    let cluster = cluster();
    if let Some(c) = &cluster {
        let pg = PgStore::open(&c.url(name).expect("a database"), "w1")
            .await
            .expect("open postgres");
        out.push(("postgres", Arc::new(pg)));
    }
    (dir, cluster, out)
}

/// Claim, a fenced-off late result, the real result, and its history.
#[tokio::test]
async fn test_claim_fence_and_record_on_both_engines() {
    let (_d, _c, engines) = engines("fence").await;
    for (name, s) in engines {
        let ids = submit(&*s, vec![job()]).await;
        let t = s.turn(&[], Some(&fits())).await.expect("turn");
        let c = t.claim.expect("claim").expect("a job");
        assert_eq!(c.id, ids[0].0, "{name}");
        assert_eq!(c.attempt, 1, "{name}");
        let late = ended(&c.id, 2, c.retry, JobState::Complete);
        let t = s.turn(&[late], None).await.expect("turn");
        assert_eq!(t.recorded, vec![None], "{name}: fenced");
        let j = s.get(&c.id).await.expect("get");
        assert_eq!(j.state, JobState::Running, "{name}");
        assert_eq!(j.attempt_list[0].state, JobState::Running, "{name}");
        assert_eq!(j.transitions.len(), 2, "{name}: queued, running");

        let t = s
            .turn(&[ended(&c.id, 1, c.retry, JobState::Error)], Some(&fits()))
            .await
            .expect("turn");
        assert_eq!(t.recorded, vec![Some(JobState::Error)], "{name}");
        assert!(t.claim.expect("claim").is_none(), "{name}: empty");
        let j = s.get(&c.id).await.expect("get");
        assert_eq!(j.state, JobState::Error, "{name}");
        let a = &j.attempt_list[0];
        assert_eq!(a.state, JobState::Error, "{name}");
        assert_eq!(a.exit_code, Some(3), "{name}");
        assert_eq!(a.oom_killed, Some(false), "{name}");
        let states: Vec<JobState> = j.transitions.iter().map(|t| t.state).collect();
        assert_eq!(
            states,
            [JobState::Queued, JobState::Running, JobState::Error],
            "{name}"
        );
    }
}

/// A failed attempt with retries left is put off; a cancel asked for while
/// it ran wins; a waiting job is cancelled at once.
#[tokio::test]
async fn test_retry_and_cancel_on_both_engines() {
    let (_d, _c, engines) = engines("retry").await;
    for (name, s) in engines {
        let retried = JobRequest {
            max_retries: Some(2),
            retry_delay: Some(60),
            ..job()
        };
        let ids = submit(&*s, vec![retried, job(), job()]).await;
        let c = s
            .turn(&[], Some(&fits()))
            .await
            .expect("turn")
            .claim
            .expect("claim")
            .expect("a job");
        assert_eq!(c.retry.max_retries, 2, "{name}");
        let t = s
            .turn(&[ended(&c.id, 1, c.retry, JobState::Timeout)], None)
            .await
            .expect("turn");
        assert_eq!(t.recorded, vec![Some(JobState::Delayed)], "{name}");
        let j = s.get(&c.id).await.expect("get");
        assert!(j.run_at > j.updated_at + 40_000, "{name}: backoff");
        let (promoted, next) = s.promote_delayed().await.expect("promote");
        assert_eq!(promoted, 0, "{name}: not due");
        assert_eq!(next, Some(j.run_at), "{name}");

        let c2 = s
            .turn(&[], Some(&fits()))
            .await
            .expect("turn")
            .claim
            .expect("claim")
            .expect("a job");
        assert_eq!(c2.id, ids[1].0, "{name}");
        assert!(s.cancel(&c2.id).await.expect("cancel"), "{name}: marked");
        assert!(
            !s.cancel(&ids[2].0).await.expect("cancel"),
            "{name}: at once"
        );
        let t = s
            .turn(&[ended(&c2.id, 1, c2.retry, JobState::Killed)], None)
            .await
            .expect("turn");
        assert_eq!(t.recorded, vec![Some(JobState::Cancelled)], "{name}");
        let j = s.get(&c2.id).await.expect("get");
        assert_eq!(j.attempt_list[0].state, JobState::Cancelled, "{name}");
        let waiting = s.get(&ids[2].0).await.expect("get");
        assert_eq!(waiting.state, JobState::Cancelled, "{name}");
        let err = s.cancel(&ids[2].0).await.expect_err("ended");
        assert!(err.to_string().contains("cancelled"), "{name}: {err}");
    }
}

/// Higher priority first, FIFO within one; a job that does not fit is
/// passed over; one key, one job.
#[tokio::test]
async fn test_order_admission_and_keys_on_both_engines() {
    let (_d, _c, engines) = engines("order").await;
    for (name, s) in engines {
        let big = JobRequest {
            memory: Some(crate::request::Size::Text("1g".into())),
            ..job()
        };
        let urgent = JobRequest {
            priority: Some(2),
            ..job()
        };
        let keyed = JobRequest {
            idempotency_key: Some("k1".into()),
            ..job()
        };
        let ids = submit(&*s, vec![job(), big, urgent, keyed.clone(), keyed.clone()]).await;
        assert!(ids[3].1 && !ids[4].1, "{name}: {ids:?}");
        assert_eq!(ids[3].0, ids[4].0, "{name}");
        let again = submit(&*s, vec![keyed]).await;
        assert_eq!(again, vec![(ids[3].0.clone(), false)], "{name}");
        let small = Admission {
            memory_bytes: 512 << 20,
            ..fits()
        };
        let mut order = Vec::new();
        loop {
            let t = s.turn(&[], Some(&small)).await.expect("turn");
            match t.claim.expect("claim") {
                Some(c) => order.push(c.id),
                None => break,
            }
        }
        assert_eq!(
            order,
            [ids[2].0.clone(), ids[0].0.clone(), ids[3].0.clone()],
            "{name}"
        );
        let counts = s.counts().await.expect("counts");
        let queued: i64 = counts
            .iter()
            .filter(|(st, _, _)| *st == JobState::Queued)
            .map(|c| c.2)
            .sum();
        assert_eq!(queued, 1, "{name}: the 1g job waits");
    }
}

/// Workers starting together on an empty database migrate it once; then
/// four workers claiming at once take each of 200 jobs exactly once
/// (`SKIP LOCKED`), and a worker's result for another's attempt is fenced.
#[tokio::test]
async fn test_postgres_workers_share_one_queue() {
    let Some(c) = cluster() else {
        return;
    };
    let url = c.url("fleet").expect("a database");
    let url = &url;
    let opens = (1..=4).map(|i| async move { PgStore::open(url, &format!("w{i}")).await });
    let workers: Vec<PgStore> = futures_util::future::join_all(opens)
        .await
        .into_iter()
        .map(|r| r.expect("open while others migrate"))
        .collect();
    let versions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(workers[0].pool())
        .await
        .expect("versions");
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations-postgres"))
        .expect("migrations")
        .count();
    assert_eq!(versions as usize, files, "each version applied once");

    let ids = submit(&workers[0], vec![job(); 200]).await;
    let claims = workers.iter().map(|w| async move {
        let mut mine = Vec::new();
        while let Some(c) = w
            .turn(&[], Some(&fits()))
            .await
            .expect("turn")
            .claim
            .expect("claim")
        {
            mine.push(c);
        }
        mine
    });
    let per_worker = futures_util::future::join_all(claims).await;
    let mut all: Vec<String> = per_worker.iter().flatten().map(|c| c.id.clone()).collect();
    all.sort();
    let mut want: Vec<String> = ids.into_iter().map(|(id, _)| id).collect();
    want.sort();
    assert_eq!(all, want, "every job claimed exactly once");

    // w2 reports a job that w1 holds: fenced by the worker, not recorded.
    let held = per_worker[0].first().expect("w1 claimed some");
    let wrong = ended(&held.id, held.attempt, held.retry, JobState::Complete);
    let t = workers[1]
        .turn(std::slice::from_ref(&wrong), None)
        .await
        .expect("turn");
    assert_eq!(t.recorded, vec![None]);
    assert_eq!(
        workers[1].get(&held.id).await.expect("get").state,
        JobState::Running
    );
    let t = workers[0].turn(&[wrong], None).await.expect("turn");
    assert_eq!(t.recorded, vec![Some(JobState::Complete)]);
}

/// Sixteen slots on four workers each record their last attempt and claim
/// the next job in one statement, as fast as they can: 2,000 jobs all end
/// complete, each claimed once, and no turn fails. With the claim not
/// gated on the record (`turn.rs`), PostgreSQL reported `deadlock
/// detected` here.
#[tokio::test]
async fn test_postgres_turns_record_and_claim_without_deadlock() {
    let Some(c) = cluster() else {
        return;
    };
    let url = c.url("turns").expect("a database");
    let mut workers = Vec::new();
    for i in 1..=4 {
        workers.push(Arc::new(
            PgStore::open(&url, &format!("w{i}")).await.expect("open"),
        ));
    }
    let ids = submit(&*workers[0], vec![job(); 2000]).await;
    let slots = workers.iter().flat_map(|w| (0..4).map(move |_| w.clone()));
    let runs = slots.map(|w| async move {
        let mut mine = Vec::new();
        let mut ended_last: Vec<Ended> = Vec::new();
        loop {
            let t = w.turn(&ended_last, Some(&fits())).await?;
            for r in &t.recorded {
                assert_eq!(*r, Some(JobState::Complete));
            }
            let Some(c) = t.claim? else {
                return Ok::<_, crate::error::QueueError>(mine);
            };
            ended_last = vec![ended(&c.id, c.attempt, c.retry, JobState::Complete)];
            ended_last[0].outcome.exit_code = Some(0);
            mine.push(c.id);
        }
    });
    let mut all = Vec::new();
    for r in futures_util::future::join_all(runs).await {
        all.extend(r.expect("a turn failed"));
    }
    all.sort();
    let mut want: Vec<String> = ids.into_iter().map(|(id, _)| id).collect();
    want.sort();
    assert_eq!(all, want, "every job claimed exactly once");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state <> 'complete'")
        .fetch_one(workers[0].pool())
        .await
        .expect("count");
    assert_eq!(left, 0, "every job recorded complete");
}

/// Attempts, transitions and outputs carry no foreign key on PostgreSQL
/// (migration 0005): the paths that write them run here (submit, claim,
/// the one-statement turn and a record alone, both with captured output,
/// a retry put off and promoted, a waiting job's cancel, the drain's
/// requeue, a lost worker's recovery, an API retry), and leave no row
/// without its job. (The capped claim and a running job's cancel write
/// through the same CTEs.)
#[tokio::test]
async fn test_postgres_children_always_have_their_job() {
    let Some(c) = cluster() else {
        return;
    };
    let outputs = tempfile::tempdir().expect("tmp");
    let s = PgStore::open(&c.url("children").expect("a database"), "w1")
        .await
        .expect("open")
        .with_output_dir(outputs.path().to_path_buf());
    let captured = |id: &str, n: i64| {
        let (out, err) = crate::launchers::output_names(id, n);
        std::fs::write(outputs.path().join(out), b"out").expect("write");
        std::fs::write(outputs.path().join(err), b"err").expect("write");
    };
    let retried = JobRequest {
        max_retries: Some(1),
        retry_delay: Some(0),
        ..job()
    };
    let ids = submit(&s, vec![retried, job(), job(), job(), job()]).await;
    let claim = |s: &PgStore| {
        let s = s.clone();
        async move {
            s.turn(&[], Some(&fits()))
                .await
                .expect("turn")
                .claim
                .expect("claim")
                .expect("a job")
        }
    };
    let a = claim(&s).await;
    captured(&a.id, 1);
    let t = s
        .turn(&[ended(&a.id, 1, a.retry, JobState::Error)], Some(&fits()))
        .await
        .expect("turn");
    assert_eq!(t.recorded, vec![Some(JobState::Delayed)]);
    let b = t.claim.expect("claim").expect("a job");
    s.promote_delayed().await.expect("promote");
    assert!(!s.cancel(&ids[2].0).await.expect("cancel a waiting job"));
    s.requeue_stopped(&[(b.id.clone(), b.attempt)])
        .await
        .expect("requeue");
    let d = claim(&s).await;
    assert_eq!(s.recover_mine().await.expect("recover").len(), 1);
    s.retry(&d.id).await.expect("retry");
    for _ in 0..3 {
        let c = claim(&s).await;
        captured(&c.id, c.attempt);
        let e = ended(&c.id, c.attempt, c.retry, JobState::Complete);
        assert_eq!(
            s.finish(&e).await.expect("finish"),
            Some(JobState::Complete)
        );
    }
    for table in ["attempts", "transitions", "outputs"] {
        let orphans: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM {table} x WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.id = x.job_id)"
        ))
        .fetch_one(s.pool())
        .await
        .expect("count");
        assert_eq!(orphans, 0, "{table} rows without their job");
    }
    for (table, least) in [("transitions", 15), ("outputs", 8)] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(s.pool())
            .await
            .expect("count");
        assert!(n >= least, "{n} rows written to {table}");
    }
}

/// One turn records the last attempt and claims the next job; a fenced
/// record in the same turn still claims.
#[tokio::test]
async fn test_a_turn_records_and_claims_on_both_engines() {
    let (_d, _c, engines) = engines("together").await;
    for (name, s) in engines {
        let ids = submit(&*s, vec![job(), job(), job()]).await;
        let first = s
            .turn(&[], Some(&fits()))
            .await
            .expect("turn")
            .claim
            .expect("claim")
            .expect("a job");
        let t = s
            .turn(
                &[ended(&first.id, 1, first.retry, JobState::Complete)],
                Some(&fits()),
            )
            .await
            .expect("turn");
        assert_eq!(t.recorded, vec![Some(JobState::Complete)], "{name}");
        let second = t.claim.expect("claim").expect("the second job");
        assert_eq!(second.id, ids[1].0, "{name}");
        let late = ended(&first.id, 1, first.retry, JobState::Error);
        let t = s.turn(&[late], Some(&fits())).await.expect("turn");
        assert_eq!(t.recorded, vec![None], "{name}: fenced");
        let third = t.claim.expect("claim").expect("the third job");
        assert_eq!(third.id, ids[2].0, "{name}");
        assert_eq!(
            s.get(&first.id).await.expect("get").state,
            JobState::Complete
        );
        assert_eq!(
            s.get(&second.id).await.expect("get").state,
            JobState::Running
        );
    }
}

/// A worker that stops heartbeating loses its attempts when the lease
/// runs out: another worker ends them as `killed` ("worker lost"),
/// retrying a job with retries left; the lost worker's next heartbeat
/// shows it holds nothing, and its late result is fenced.
#[tokio::test]
async fn test_postgres_expired_leases_are_reaped_and_fenced() {
    let Some(c) = cluster() else {
        return;
    };
    let url = c.url("leases").expect("a database");
    let w1 = PgStore::open(&url, "w1")
        .await
        .expect("open")
        .with_lease(std::time::Duration::from_millis(300));
    let w2 = PgStore::open(&url, "w2").await.expect("open");
    let retried = JobRequest {
        max_retries: Some(1),
        retry_delay: Some(1),
        ..job()
    };
    let ids = submit(&w1, vec![retried, job()]).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let t = w1.turn(&[], Some(&fits())).await.expect("turn");
        held.push(t.claim.expect("claim").expect("a job"));
    }
    let info = super::postgres::WorkerInfo {
        host: "h1".into(),
        slots: 2,
        version: "test".into(),
        ..Default::default()
    };
    let runs: Vec<(String, i64)> = held.iter().map(|c| (c.id.clone(), c.attempt)).collect();
    assert_eq!(
        w1.heartbeat(&info, &runs).await.expect("heartbeat").len(),
        2
    );
    assert!(
        w2.reap_expired().await.expect("reap").is_empty(),
        "leases live"
    );
    // w1 goes silent for longer than its lease.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let mut reaped = w2.reap_expired().await.expect("reap");
    reaped.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want = vec![
        (ids[0].0.clone(), JobState::Delayed),
        (ids[1].0.clone(), JobState::Killed),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(reaped, want);
    let j = w2.get(&ids[1].0).await.expect("get");
    assert_eq!(j.attempt_list[0].state, JobState::Killed);
    assert_eq!(j.attempt_list[0].reason.as_deref(), Some("worker lost"));
    assert!(
        w1.heartbeat(&info, &runs)
            .await
            .expect("heartbeat")
            .is_empty(),
        "lost both"
    );
    let late = ended(
        &held[1].id,
        held[1].attempt,
        held[1].retry,
        JobState::Complete,
    );
    let t = w1.turn(&[late], None).await.expect("turn");
    assert_eq!(t.recorded, vec![None], "a lost worker's result is fenced");
    assert_eq!(
        w2.get(&ids[1].0).await.expect("get").state,
        JobState::Killed
    );
}

/// The fleet view: a heartbeat makes a worker row; a silent one reads as
/// lost and is pruned. A submit by one worker wakes another's `LISTEN`;
/// with notifications off the wait is a poll.
#[tokio::test]
async fn test_postgres_workers_view_and_wakeups() {
    use super::postgres::Woken;
    use std::time::Duration;
    let Some(c) = cluster() else {
        return;
    };
    let url = c.url("view").expect("a database");
    let w1 = PgStore::open(&url, "w1").await.expect("open");
    let w2 = PgStore::open(&url, "w2").await.expect("open");
    let info = super::postgres::WorkerInfo {
        host: "h1".into(),
        slots: 2,
        memory_bytes: 1 << 30,
        cpus: 2.0,
        images: vec!["sha256:ab".into()],
        version: "test".into(),
        ..Default::default()
    };
    w1.heartbeat(&info, &[]).await.expect("heartbeat");
    let rows = w2.workers().await.expect("workers");
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].id.as_str(), rows[0].host.as_str()), ("w1", "h1"));
    assert_eq!(rows[0].images, r#"["sha256:ab"]"#);
    let now = crate::queue::now_ms();
    assert!(!rows[0].is_lost(now, Duration::from_secs(60)));
    assert!(rows[0].is_lost(now + 61_000, Duration::from_secs(60)));
    assert_eq!(
        w2.prune_workers(Duration::from_secs(60))
            .await
            .expect("prune"),
        0
    );
    assert_eq!(w2.prune_workers(Duration::ZERO).await.expect("prune"), 1);

    let mut listening = w2
        .wakeups(true, Duration::from_secs(60))
        .await
        .expect("listen");
    submit(&w1, vec![job()]).await;
    assert_eq!(listening.wait().await, Woken::Notified);
    let mut polling = w2
        .wakeups(false, Duration::from_millis(10))
        .await
        .expect("poll");
    assert_eq!(polling.wait().await, Woken::Polled);
}

/// Placement: a job whose image another live worker's store holds (with a
/// free slot) is left to it for the grace period; a job no such worker
/// holds, or one whose grace ran out, goes to whoever asks first.
#[tokio::test]
async fn test_postgres_placement_prefers_the_store_that_holds_the_image() {
    use super::postgres::Placement;
    use std::time::Duration;
    let Some(c) = cluster() else {
        return;
    };
    let url = c.url("placement").expect("a database");
    let w1 = PgStore::open(&url, "w1").await.expect("open");
    let w2 = PgStore::open(&url, "w2").await.expect("open");
    let grace = Duration::from_secs(3600);
    // Workers advertise tags in canonical form; a job's short reference
    // is normalised at submit to match.
    let canon = |s: &str| format!("docker.io/library/{s}:latest");
    w1.set_placement(Placement {
        images: vec![canon("img-a")],
        grace,
        ..Default::default()
    });
    w2.set_placement(Placement {
        images: vec![canon("img-b")],
        grace,
        ..Default::default()
    });
    let holds_b = super::postgres::WorkerInfo {
        host: "h2".into(),
        slots: 2,
        images: vec![canon("img-b")],
        version: "test".into(),
        ..Default::default()
    };
    w2.heartbeat(&holds_b, &[]).await.expect("heartbeat");
    let with = |image: &str| JobRequest {
        image: image.into(),
        ..Default::default()
    };
    let ids = submit(&w1, vec![with("img-b"), with("img-a"), with("img-c")]).await;
    let claim = |w: &PgStore| {
        let w = w.clone();
        async move {
            let t = w.turn(&[], Some(&fits())).await.expect("turn");
            t.claim.expect("claim").map(|c| c.id)
        }
    };
    // w1 passes over img-b (w2 holds it) for its own img-a, then img-c
    // (nobody holds it), then finds nothing it may take yet.
    assert_eq!(claim(&w1).await.as_ref(), Some(&ids[1].0));
    assert_eq!(claim(&w1).await.as_ref(), Some(&ids[2].0));
    assert_eq!(claim(&w1).await, None, "img-b is left to w2");
    assert_eq!(claim(&w2).await.as_ref(), Some(&ids[0].0));
    // Once the grace has run out (here: none), anyone takes it.
    let late = submit(&w1, vec![with("img-b")]).await;
    assert_eq!(claim(&w1).await, None, "within the grace");
    w1.set_placement(Placement {
        images: vec![canon("img-a")],
        grace: Duration::ZERO,
        ..Default::default()
    });
    assert_eq!(claim(&w1).await.as_ref(), Some(&late[0].0));
}

/// A draining worker's running attempt ends `killed` ("worker stopped")
/// and its job is queued again without using a retry; the stopped
/// attempt's late result is fenced off, and the job runs again.
#[tokio::test]
async fn test_requeue_stopped_on_both_engines() {
    let (_d, _c, engines) = engines("requeue").await;
    for (name, s) in engines {
        let ids = submit(&*s, vec![job()]).await;
        let claim = |s: Arc<dyn Storage>| async move {
            s.turn(&[], Some(&fits()))
                .await
                .expect("turn")
                .claim
                .expect("claim")
        };
        let c = claim(s.clone()).await.expect("a job");
        s.requeue_stopped(&[(c.id.clone(), c.attempt)])
            .await
            .expect("requeue");
        let j = s.get(&ids[0].0).await.expect("get");
        assert_eq!(j.state, JobState::Queued, "{name}");
        assert_eq!(j.max_retries, 1, "{name}: no retry used");
        assert_eq!(j.attempt_list[0].state, JobState::Killed, "{name}");
        assert_eq!(
            j.attempt_list[0].reason.as_deref(),
            Some("worker stopped"),
            "{name}"
        );
        let late = s
            .finish(&ended(&c.id, 1, c.retry, JobState::Complete))
            .await
            .expect("finish");
        assert_eq!(late, None, "{name}: fenced");
        s.requeue_stopped(&[(c.id.clone(), c.attempt)])
            .await
            .expect("requeue again");
        let again = s.get(&ids[0].0).await.expect("get");
        assert_eq!(again.transitions.len(), j.transitions.len(), "{name}");
        let c2 = claim(s.clone()).await.expect("queued again");
        assert_eq!((c2.id.as_str(), c2.attempt), (c.id.as_str(), 2), "{name}");
        let done = s
            .finish(&ended(&c2.id, 2, c2.retry, JobState::Complete))
            .await
            .expect("finish");
        assert_eq!(done, Some(JobState::Complete), "{name}");
    }
}

/// The caps of queues and code packages read back from either engine.
#[tokio::test]
async fn test_caps_on_both_engines() {
    const CODE: &str = "INSERT INTO code_packages (name, base_image, image_id, layer_bytes, \
         max_concurrency, created_at, updated_at) VALUES ('pkg', 'busybox', 'sha256:00', 0, 3, 0, 0)";
    let want = Caps {
        queues: [("q".to_string(), 2)].into(),
        codes: [("pkg".to_string(), 3)].into(),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = Queue::open(&dir.path().join("jobs.db"))
        .await
        .expect("open");
    assert_eq!(Storage::caps(&sqlite).await.expect("caps"), Caps::default());
    crate::queues::set(&sqlite, "q", Some(2))
        .await
        .expect("set");
    crate::queues::set(&sqlite, "uncapped", None)
        .await
        .expect("set");
    sqlx::query(CODE)
        .execute(sqlite.pool())
        .await
        .expect("insert");
    assert_eq!(Storage::caps(&sqlite).await.expect("caps"), want, "sqlite");
    let Some(c) = cluster() else { return };
    let pg = PgStore::open(&c.url("caps").expect("a database"), "w1")
        .await
        .expect("open postgres");
    assert_eq!(Storage::caps(&pg).await.expect("caps"), Caps::default());
    for q in [
        "INSERT INTO queues (name, max_concurrency, updated_at) VALUES ('q', 2, 0), ('uncapped', NULL, 0)",
        CODE,
    ] {
        sqlx::query(q).execute(pg.pool()).await.expect("insert");
    }
    assert_eq!(Storage::caps(&pg).await.expect("caps"), want, "postgres");
}

/// A draining worker requeues only the attempts it holds: another
/// worker's running job is left alone.
#[tokio::test]
async fn test_postgres_requeue_touches_only_this_workers_attempts() {
    let Some(c) = cluster() else { return };
    let url = c.url("requeue_mine").expect("a database");
    let w1 = PgStore::open(&url, "w1").await.expect("open w1");
    let w2 = PgStore::open(&url, "w2").await.expect("open w2");
    let ids = submit(&w1, vec![job()]).await;
    let claim = w1
        .turn(&[], Some(&fits()))
        .await
        .expect("turn")
        .claim
        .expect("claim")
        .expect("a job");
    w2.requeue_stopped(&[(claim.id.clone(), claim.attempt)])
        .await
        .expect("requeue");
    assert_eq!(
        w1.get(&ids[0].0).await.expect("get").state,
        JobState::Running
    );
    w1.requeue_stopped(&[(claim.id.clone(), claim.attempt)])
        .await
        .expect("requeue");
    assert_eq!(
        w1.get(&ids[0].0).await.expect("get").state,
        JobState::Queued
    );
}

/// Listing filters and pages alike on both engines; a finished job is
/// retried by hand, an unfinished one is a conflict.
#[tokio::test]
async fn test_list_and_retry_on_both_engines() {
    let (_d, _c, engines) = engines("list_retry").await;
    for (name, s) in engines {
        let labelled = JobRequest {
            label: Some("l1".into()),
            ..job()
        };
        let ids = submit(&*s, vec![labelled.clone(), job(), labelled]).await;
        let f = |label: Option<&str>, limit, after: Option<&str>| crate::queue::ListFilter {
            label: label.map(Into::into),
            limit,
            after: after.map(Into::into),
            ..Default::default()
        };
        let got = |jobs: Vec<crate::state::Job>| -> Vec<String> {
            jobs.into_iter().map(|j| j.id).collect()
        };
        let all = got(s.list(&f(None, None, None)).await.expect("list"));
        assert_eq!(all, [ids[0].0.as_str(), &ids[1].0, &ids[2].0], "{name}");
        let l1 = got(s.list(&f(Some("l1"), None, None)).await.expect("list"));
        assert_eq!(l1, [ids[0].0.as_str(), &ids[2].0], "{name}");
        let page = got(s
            .list(&f(None, Some(1), Some(&ids[0].0)))
            .await
            .expect("list"));
        assert_eq!(page, [ids[1].0.as_str()], "{name}");
        let newest = |limit, after: Option<&str>| crate::queue::ListFilter {
            newest_first: true,
            ..f(None, limit, after)
        };
        let all = got(s.list(&newest(None, None)).await.expect("list"));
        assert_eq!(all, [ids[2].0.as_str(), &ids[1].0, &ids[0].0], "{name}");
        let page = got(s
            .list(&newest(Some(1), Some(&ids[2].0)))
            .await
            .expect("list"));
        assert_eq!(page, [ids[1].0.as_str()], "{name}");
        let queued = crate::queue::ListFilter {
            state: Some(JobState::Queued),
            ..Default::default()
        };
        assert_eq!(s.list(&queued).await.expect("list").len(), 3, "{name}");

        let err = s.retry(&ids[0].0).await.expect_err("queued");
        assert!(
            err.to_string().contains("only a finished job"),
            "{name}: {err}"
        );
        let c = s
            .turn(&[], Some(&fits()))
            .await
            .expect("turn")
            .claim
            .expect("claim")
            .expect("a job");
        s.finish(&ended(&c.id, 1, c.retry, JobState::Error))
            .await
            .expect("finish");
        s.retry(&c.id).await.expect("retry");
        let j = s.get(&c.id).await.expect("get");
        assert_eq!(j.state, JobState::Queued, "{name}");
        let states: Vec<JobState> = j.transitions.iter().map(|t| t.state).collect();
        assert_eq!(
            states,
            [
                JobState::Queued,
                JobState::Running,
                JobState::Error,
                JobState::Queued
            ],
            "{name}"
        );
        assert!(s.retry("j-none").await.is_err(), "{name}");
    }
}

#[tokio::test]
async fn test_ended_per_minute_on_both_engines() {
    let (_d, _c, engines) = engines("ended_minutes").await;
    for (name, s) in engines {
        let before = crate::queue::now_ms();
        submit(&*s, vec![job(), job(), job()]).await;
        for state in [JobState::Complete, JobState::Error] {
            let c = s
                .turn(&[], Some(&fits()))
                .await
                .expect("turn")
                .claim
                .expect("claim")
                .expect("a job");
            s.finish(&ended(&c.id, 1, c.retry, state))
                .await
                .expect("finish");
        }
        // The third is still queued: not counted. Each minute is whole.
        let rows = s.ended_per_minute(before - 60_000).await.expect("counts");
        let total = |st| -> i64 { rows.iter().filter(|r| r.1 == st).map(|r| r.2).sum() };
        assert_eq!(
            (total(JobState::Complete), total(JobState::Error)),
            (1, 1),
            "{name}: {rows:?}"
        );
        assert!(rows.iter().all(|r| r.0 % 60_000 == 0), "{name}: {rows:?}");
        let later = s
            .ended_per_minute(crate::queue::now_ms() + 60_000)
            .await
            .expect("counts");
        assert!(later.is_empty(), "{name}: {later:?}");
    }
}

/// A queue's cap holds across the fleet: three workers claiming as fast as
/// they can, at once, start two jobs of a queue capped at two (and every
/// job of an uncapped one); when one ends, exactly one more starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_postgres_queue_cap_holds_across_workers() {
    use super::queue_store::QueueSettings;
    let Some(c) = cluster() else {
        return;
    };
    let url = c.url("fleet_caps").expect("a database");
    let mut workers = Vec::new();
    for i in 0..3 {
        workers.push(PgStore::open(&url, &format!("w{i}")).await.expect("open"));
    }
    workers[0]
        .set_queue_cap("capped", Some(2))
        .await
        .expect("cap");
    assert_eq!(
        workers[1].queue_caps().await.expect("caps"),
        [("capped".to_string(), Some(2))]
    );
    for w in &workers {
        w.caps().await.expect("caps");
    }
    let capped = JobRequest {
        queue: Some("capped".into()),
        ..job()
    };
    submit(&workers[0], vec![capped; 12]).await;
    submit(&workers[0], vec![job(); 3]).await;
    let claims = claim_all(&workers).await;
    let in_capped: Vec<_> = claims.iter().filter(|(_, c)| c.queue == "capped").collect();
    assert_eq!(in_capped.len(), 2, "{claims:?}");
    assert_eq!(claims.len(), 5, "{claims:?}");
    let (i, first) = in_capped[0];
    workers[*i]
        .finish(&ended(&first.id, 1, first.retry, JobState::Complete))
        .await
        .expect("finish");
    let more = claim_all(&workers).await;
    assert_eq!(more.len(), 1, "{more:?}");
    assert_eq!(more[0].1.queue, "capped");
}

/// Every claim `workers` make, each claiming as fast as it can, all at
/// once, until none gets a job: (worker index, claim).
pub(crate) async fn claim_all(workers: &[PgStore]) -> Vec<(usize, crate::queue::Claim)> {
    let tasks: Vec<_> = workers
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, w)| {
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(c) = w
                    .turn(&[], Some(&fits()))
                    .await
                    .expect("turn")
                    .claim
                    .expect("claim")
                {
                    got.push((i, c));
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    all
}
