//! Webhook triggers and webhook deliveries on both engines; on a fleet,
//! two workers leasing at once never take the same delivery.

use std::sync::Arc;

use super::hook_store::HookStorage;
use super::postgres::PgStore;
use super::webhook_store::{DeliveryUpdate, WebhookStorage};
use super::Storage;
use crate::claim::Admission;
use crate::finish::Ended;
use crate::queue::{now_ms, Outcome, Queue};
use crate::request::JobRequest;
use crate::state::JobState;

type Engines = Vec<(
    &'static str,
    Arc<dyn Storage>,
    Arc<dyn HookStorage>,
    Arc<dyn WebhookStorage>,
)>;

async fn engines(
    name: &str,
) -> (
    tempfile::TempDir,
    Option<super::postgres::local::LocalCluster>,
    Engines,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(&dir.path().join("jobs.db"))
        .await
        .expect("open");
    let mut out: Engines = vec![(
        "sqlite",
        Arc::new(q.clone()),
        Arc::new(q.clone()),
        Arc::new(q),
    )];
    let cluster = super::conformance::cluster();
    if let Some(c) = &cluster {
        let pg = PgStore::open(&c.url(name).expect("a database"), "w1")
            .await
            .expect("open postgres");
        out.push((
            "postgres",
            Arc::new(pg.clone()),
            Arc::new(pg.clone()),
            Arc::new(pg),
        ));
    }
    (dir, cluster, out)
}

/// Submit a job with a webhook, run it and end it: its id.
async fn ended_with_webhook(s: &dyn Storage) -> String {
    let job = JobRequest {
        image: "busybox".into(),
        webhook: Some("http://127.0.0.1:9/done".into()),
        ..Default::default()
    };
    s.submit(vec![job.validate().expect("valid")])
        .await
        .expect("submit");
    let fits = Admission {
        memory_bytes: u64::MAX >> 1,
        cpus: 64.0,
        ..Default::default()
    };
    let c = s
        .turn(&[], Some(&fits))
        .await
        .expect("turn")
        .claim
        .expect("claim")
        .expect("a job");
    let e = Ended {
        id: c.id.clone(),
        n: 1,
        retry: c.retry,
        outcome: Outcome {
            state: Some(JobState::Complete),
            exit_code: Some(0),
            ..Default::default()
        },
    };
    s.finish(&e).await.expect("finish");
    c.id
}

#[tokio::test]
async fn test_hooks_on_both_engines() {
    let (_d, _c, engines) = engines("hooks").await;
    for (name, _, h, _) in engines {
        assert!(
            h.put_hook("b", "{\"image\":\"x\"}", 1).await.expect("put"),
            "{name}"
        );
        assert!(h.put_hook("a", "{}", 2).await.expect("put"), "{name}");
        assert!(
            !h.put_hook("b", "{\"image\":\"y\"}", 3).await.expect("put"),
            "{name}"
        );
        assert_eq!(
            h.hook("b").await.expect("get").as_deref(),
            Some("{\"image\":\"y\"}"),
            "{name}"
        );
        let names: Vec<String> = h
            .hooks()
            .await
            .expect("list")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["a", "b"], "{name}");
        assert!(h.remove_hook("a").await.expect("remove"), "{name}");
        assert!(!h.remove_hook("a").await.expect("remove"), "{name}");
        assert_eq!(h.hook("a").await.expect("get"), None, "{name}");
    }
}

#[tokio::test]
async fn test_webhook_deliveries_on_both_engines() {
    let (_d, _c, engines) = engines("deliveries").await;
    for (name, s, _, w) in engines {
        let id = ended_with_webhook(&*s).await;
        let now = now_ms();
        let due = w.lease_deliveries(now, 60_000, 32).await.expect("lease");
        assert_eq!(due.len(), 1, "{name}: {due:?}");
        assert_eq!(
            (due[0].job_id.as_str(), due[0].attempts),
            (id.as_str(), 0),
            "{name}"
        );
        // Leased: not taken again until the lease ends.
        let again = w.lease_deliveries(now, 60_000, 32).await.expect("lease");
        assert!(again.is_empty(), "{name}: {again:?}");
        let failed = DeliveryUpdate {
            state: "pending",
            attempts: 1,
            next_at: now - 1,
            error: Some("refused".into()),
            now,
        };
        w.update_delivery(due[0].id, &failed).await.expect("record");
        assert_eq!(
            w.deliveries(&id).await.expect("deliveries"),
            [("pending".to_string(), 1, Some("refused".to_string()))],
            "{name}"
        );
        let retry = w.lease_deliveries(now, 60_000, 32).await.expect("lease");
        assert_eq!(retry.len(), 1, "{name}");
        let ok = DeliveryUpdate {
            state: "delivered",
            attempts: 2,
            next_at: now,
            error: None,
            now,
        };
        w.update_delivery(retry[0].id, &ok).await.expect("record");
        assert_eq!(
            w.deliveries(&id).await.expect("deliveries"),
            [("delivered".to_string(), 2, None)],
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_postgres_workers_lease_each_delivery_once() {
    let Some(c) = super::conformance::cluster() else {
        return;
    };
    let url = c.url("fleet_deliveries").expect("a database");
    let mut workers = Vec::new();
    for i in 0..4 {
        workers.push(PgStore::open(&url, &format!("w{i}")).await.expect("open"));
    }
    const N: usize = 120;
    for _ in 0..N {
        ended_with_webhook(&workers[0]).await;
    }
    // Four workers lease three at a time, at once, until none is left.
    let now = now_ms();
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|w| {
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = w.lease_deliveries(now, 60_000, 3).await.expect("lease");
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got.into_iter().map(|d| d.id));
                }
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.expect("task"));
    }
    let leased = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!((leased, ids.len()), (N, N), "a delivery leased twice");
}
