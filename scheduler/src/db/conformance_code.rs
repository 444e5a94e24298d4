//! Code packages on both engines: the table alike; on a fleet, the layer
//! as pushed read back whole and checked, and a package's cap held across
//! workers.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::code_store::CodeStorage;
use super::conformance::{claim_all, cluster, ended, job, submit};
use super::postgres::PgStore;
use super::Storage;
use crate::code::Package;
use crate::error::QueueError;
use crate::queue::Queue;
use crate::request::JobRequest;
use crate::state::JobState;

fn package(name: &str, max: Option<i64>) -> Package {
    Package {
        name: name.into(),
        base_image: "busybox".into(),
        image_id: "sha256:00".into(),
        command: Some(vec!["sh".into(), "/app/run.sh".into()]),
        layer_bytes: 0,
        layer_digest: None,
        max_concurrency: max,
        created_at: 0,
        updated_at: 0,
    }
}

/// `len` bytes that differ from chunk to chunk.
fn layer_bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i / 7) as u8 ^ seed).collect()
}

#[tokio::test]
async fn test_code_packages_on_both_engines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layer = dir.path().join("layer.tar");
    let fetched = dir.path().join("fetched.tar");
    let q = Queue::open(&dir.path().join("jobs.db"))
        .await
        .expect("open");
    let mut engines: Vec<(&str, Arc<dyn CodeStorage>)> = vec![("sqlite", Arc::new(q))];
    let c = cluster();
    let mut pg = None;
    if let Some(c) = &c {
        let s = PgStore::open(&c.url("code").expect("a database"), "w1")
            .await
            .expect("open");
        pg = Some(s.clone());
        engines.push(("postgres", Arc::new(s)));
    }
    for (name, s) in &engines {
        // Two and a half chunks.
        let v1 = layer_bytes(5 << 19, 1);
        std::fs::write(&layer, &v1).expect("write");
        s.put_package(&package("app", Some(3)), &layer)
            .await
            .expect("put");
        let p = s.package("app").await.expect("get").expect("stored");
        assert_eq!(p.command, package("app", None).command, "{name}");
        assert_eq!(p.max_concurrency, Some(3), "{name}");
        assert!(s.package("other").await.expect("get").is_none(), "{name}");
        let got = s.fetch_layer("app", &fetched).await.expect("fetch");
        if *name == "sqlite" {
            // One host keeps no layers: its store has the image.
            assert!(got.is_none(), "{name}");
        } else {
            let want = format!("sha256:{:x}", Sha256::digest(&v1));
            assert_eq!(got.expect("fetched").layer_digest, Some(want), "{name}");
            assert_eq!(std::fs::read(&fetched).expect("read"), v1, "{name}");
            // A new push replaces the layer, shorter this time.
            let v2 = layer_bytes(100, 2);
            std::fs::write(&layer, &v2).expect("write");
            s.put_package(&package("app", None), &layer)
                .await
                .expect("put");
            s.fetch_layer("app", &fetched).await.expect("fetch");
            assert_eq!(std::fs::read(&fetched).expect("read"), v2, "{name}");
        }
        assert_eq!(s.packages().await.expect("list").len(), 1, "{name}");
        assert!(s.remove_package("app").await.expect("remove"), "{name}");
        assert!(!s.remove_package("app").await.expect("remove"), "{name}");
        assert!(s
            .fetch_layer("app", &fetched)
            .await
            .expect("fetch")
            .is_none());
    }
    let Some(pg) = pg else { return };
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM code_layers")
        .fetch_one(pg.pool())
        .await
        .expect("count");
    assert_eq!(left, 0, "a removed package's layer stays");
}

/// A layer changed in the database after its push is refused, naming the
/// package and both digests.
#[tokio::test]
async fn test_postgres_refuses_a_corrupted_code_layer() {
    let Some(c) = cluster() else { return };
    let pg = PgStore::open(&c.url("code_corrupt").expect("a database"), "w1")
        .await
        .expect("open");
    let dir = tempfile::tempdir().expect("tempdir");
    let layer = dir.path().join("layer.tar");
    std::fs::write(&layer, layer_bytes(3 << 19, 3)).expect("write");
    pg.put_package(&package("app", None), &layer)
        .await
        .expect("put");
    sqlx::query("UPDATE code_layers SET data = set_byte(data, 7, 0) WHERE seq = 1")
        .execute(pg.pool())
        .await
        .expect("corrupt");
    let err = pg
        .fetch_layer("app", &dir.path().join("fetched"))
        .await
        .expect_err("a corrupted layer is refused");
    assert!(matches!(err, QueueError::LayerDigest { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("code package app"), "{msg}");
}

/// A code package's cap holds across the fleet: three workers claiming at
/// once start two of its jobs; when one ends, exactly one more starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_postgres_code_cap_holds_across_workers() {
    let Some(c) = cluster() else { return };
    let url = c.url("fleet_code_caps").expect("a database");
    let mut workers = Vec::new();
    for i in 0..3 {
        workers.push(PgStore::open(&url, &format!("w{i}")).await.expect("open"));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let layer = dir.path().join("layer.tar");
    std::fs::write(&layer, b"code").expect("write");
    workers[0]
        .put_package(&package("capped", Some(2)), &layer)
        .await
        .expect("put");
    for w in &workers {
        w.caps().await.expect("caps");
    }
    let capped = JobRequest {
        image: String::new(),
        code: Some("capped".into()),
        ..job()
    };
    submit(&workers[0], vec![capped; 12]).await;
    submit(&workers[0], vec![job(); 3]).await;
    let claims = claim_all(&workers).await;
    let of_capped: Vec<_> = claims
        .iter()
        .filter(|(_, c)| c.request.code.as_deref() == Some("capped"))
        .collect();
    assert_eq!(of_capped.len(), 2, "{claims:?}");
    assert_eq!(claims.len(), 5, "{claims:?}");
    let (i, first) = of_capped[0];
    workers[*i]
        .finish(&ended(&first.id, 1, first.retry, JobState::Complete))
        .await
        .expect("finish");
    let more = claim_all(&workers).await;
    assert_eq!(more.len(), 1, "{more:?}");
    assert_eq!(more[0].1.request.code.as_deref(), Some("capped"));
}
