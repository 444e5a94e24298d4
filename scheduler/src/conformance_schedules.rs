//! Schedules on both engines, and on a fleet: three workers firing the
//! same schedule at once make one job per slot.

use std::sync::Arc;

use crate::db::conformance::cluster;
use crate::db::postgres::PgStore;
use crate::db::Storage;
use crate::queue::{now_ms, ListFilter, Queue};
use crate::request::JobRequest;
use crate::schedules::{ScheduleRequest, Schedules};

fn every_second(start_at: i64, run_times: u64) -> ScheduleRequest {
    ScheduleRequest {
        job: JobRequest {
            image: "busybox".into(),
            ..Default::default()
        },
        cron: None,
        run_every: Some(1),
        start_at: Some(start_at),
        end_at: None,
        run_times: Some(run_times),
    }
}

/// Fire until the schedule is done (at most 10 s); how many jobs each
/// firer made.
async fn fire_until_done(firers: &[Schedules], id: &str) -> Vec<usize> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut made = vec![0; firers.len()];
    loop {
        let rounds = firers.iter().map(|s| s.fire_due());
        for (i, r) in futures_util::future::join_all(rounds)
            .await
            .into_iter()
            .enumerate()
        {
            made[i] += r.expect("fire").0;
        }
        if firers[0].get(id).await.expect("get").state == "done" {
            return made;
        }
        assert!(std::time::Instant::now() < deadline, "never done");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The schedule's jobs: one per slot, a second apart.
async fn assert_one_job_per_slot(store: &dyn Storage, id: &str, slots: usize, name: &str) {
    let jobs = store.list(&ListFilter::default()).await.expect("list");
    let mut keys: Vec<i64> = jobs
        .iter()
        .map(|j| {
            let key = j.request.idempotency_key.as_deref().expect("a key");
            let slot = key
                .strip_prefix(&format!("sched:{id}:"))
                .unwrap_or_else(|| panic!("{name}: key {key}"));
            slot.parse().expect("slot")
        })
        .collect();
    keys.sort();
    assert_eq!(keys.len(), slots, "{name}: {keys:?}");
    assert!(
        keys.windows(2).all(|w| w[1] - w[0] == 1000),
        "{name}: {keys:?}"
    );
}

#[tokio::test]
async fn test_schedules_fire_on_both_engines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = Queue::open(&dir.path().join("jobs.db"))
        .await
        .expect("open");
    let mut engines = vec![(
        "sqlite",
        Schedules::new(sqlite.clone()),
        Arc::new(sqlite) as Arc<dyn Storage>,
    )];
    let cluster = cluster();
    if let Some(c) = &cluster {
        let pg = PgStore::open(&c.url("schedules").expect("a database"), "w1")
            .await
            .expect("open postgres");
        let s = Schedules::on(Arc::new(pg.clone()), Arc::new(pg.clone()));
        engines.push(("postgres", s, Arc::new(pg)));
    }
    for (name, s, store) in engines {
        let now = now_ms();
        let v = every_second(now - 1500, 3).validate(now).expect("valid");
        let created = s.create(&v).await.expect("create");
        assert_eq!(s.list().await.expect("list").len(), 1, "{name}");
        let made = fire_until_done(std::slice::from_ref(&s), &created.id).await;
        assert_eq!(made, [3], "{name}");
        let done = s.get(&created.id).await.expect("get");
        assert_eq!(
            (done.run_count, done.next_at),
            (3, None),
            "{name}: {done:?}"
        );
        assert_one_job_per_slot(&*store, &created.id, 3, name).await;
        s.delete(&created.id).await.expect("delete");
        assert!(s.get(&created.id).await.is_err(), "{name}: deleted");
        assert!(s.list().await.expect("list").is_empty(), "{name}");
    }
}

#[tokio::test]
async fn test_postgres_workers_fire_each_slot_once() {
    let Some(c) = cluster() else {
        return;
    };
    let url = c.url("fleet_schedules").expect("a database");
    let mut workers = Vec::new();
    for i in 1..=3 {
        let pg = PgStore::open(&url, &format!("w{i}")).await.expect("open");
        workers.push(pg);
    }
    let firers: Vec<Schedules> = workers
        .iter()
        .map(|pg| Schedules::on(Arc::new(pg.clone()), Arc::new(pg.clone())))
        .collect();
    let now = now_ms();
    let v = every_second(now - 500, 4).validate(now).expect("valid");
    let created = firers[0].create(&v).await.expect("create");
    let made = fire_until_done(&firers, &created.id).await;
    assert_eq!(made.iter().sum::<usize>(), 4, "{made:?}");
    let done = firers[1].get(&created.id).await.expect("get");
    assert_eq!(done.run_count, 4, "{done:?}");
    assert_one_job_per_slot(&workers[2], &created.id, 4, "postgres").await;
}
