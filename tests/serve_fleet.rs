//! Workers of a fleet: real `skiff serve` processes, each with a store of
//! its own, on one PostgreSQL cluster of the test's own (`--db
//! postgres://`). A job submitted to one worker runs on another; a
//! worker that dies loses its jobs to the others when its lease runs out;
//! a cancel through one worker stops a job that another runs.

mod support;

use std::time::Duration;

use scheduler::db::postgres::local::LocalCluster;
use serde_json::{json, Value};
use support::serve::{Worker, IMAGE};

/// A cluster, or `None` (skip) when PostgreSQL is not installed, which in
/// CI (`SKIFF_REQUIRE_PRIVILEGED=1`) fails instead.
fn cluster() -> Option<LocalCluster> {
    let c = LocalCluster::start().expect("start a PostgreSQL cluster");
    if c.is_none() {
        support::privilege::skip_or_fail("PostgreSQL's initdb not found (install postgresql)");
    }
    c
}

/// A worker of the fleet on `url`, with `args`, holding its jobs for a
/// 3 s lease.
fn worker(url: &str, args: &[&str]) -> Option<Worker> {
    let mut all = vec!["--db", url, "--lease", "3", "--launchers", "1"];
    all.extend_from_slice(args);
    Worker::start(&all)
}

fn worker_id(w: &Worker) -> String {
    std::fs::read_to_string(w.root().join("serve/worker-id"))
        .expect("worker id")
        .trim()
        .to_string()
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("job id").to_string()
}

fn sh(script: &str) -> Value {
    json!({ "image": IMAGE, "command": ["sh", "-c", script] })
}

/// Wait until `w`'s heartbeat is in the workers table (it is written
/// when the worker starts, before its API answers, but not awaited).
fn wait_heartbeat(w: &Worker, url: &str) {
    let want = worker_id(w);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = scheduler::db::postgres::PgStore::open(url, "test-reader")
            .await
            .expect("open");
        for _ in 0..200 {
            let rows = store.workers().await.expect("workers");
            if rows.iter().any(|r| r.id == want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no heartbeat from {want}");
    });
}

#[test]
fn test_a_job_submitted_to_one_worker_runs_on_another() {
    let Some(c) = cluster() else { return };
    let url = c.url("one_to_another").expect("a database");
    let Some(big) = worker(&url, &["--capacity-memory", "2g"]) else {
        return;
    };
    wait_heartbeat(&big, &url);
    let Some(small) = worker(&url, &["--capacity-memory", "256m", "--capacity-cpus", "8"]) else {
        return;
    };
    // 512 MiB never fits the small worker, but fits the fleet's largest.
    let mut job = sh("echo ran here");
    job["memory"] = json!("512m");
    let j = small.submit(job);
    let done = small.wait(&id(&j), 60);
    assert_eq!(done["state"], "complete", "{done}\n{}", big.log());
    assert_eq!(
        done["attempt_list"][0]["worker"],
        json!(worker_id(&big)),
        "{done}"
    );
    // Its output is served by every worker: the one that ran it, from
    // its file; the other, as stored with the attempt's result.
    for w in [&big, &small] {
        let (st, out) = w.call("GET", &format!("/v1/jobs/{}/log", id(&j)), None);
        assert_eq!((st, out), (200, json!("ran here\n")));
        let follow = format!("/v1/jobs/{}/log?follow=true", id(&j));
        let (st, out) = w.call("GET", &follow, None);
        assert_eq!((st, out), (200, json!("ran here\n")));
    }
    // Followed through a worker that does not run it, the output comes
    // once the attempt has ended.
    let mut late = sh("sleep 1; echo late");
    late["memory"] = json!("512m");
    let late = small.submit(late);
    let follow = format!("/v1/jobs/{}/log?follow=true", id(&late));
    small.wait_state(&id(&late), "running", 30);
    let (st, out) = small.call("GET", &follow, None);
    assert_eq!((st, out), (200, json!("late\n")));
    // One that no worker could ever fit is refused, naming the field.
    let mut huge = sh("true");
    huge["memory"] = json!("64g");
    let (st, v) = small.call("POST", "/v1/jobs", Some(&huge));
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["field"], "memory", "{v}");
    // Memory only the big worker has, with CPUs only the small one has:
    // no single worker could ever run it.
    let mut split = sh("true");
    split["memory"] = json!("512m");
    split["cpus"] = json!(4);
    let (st, v) = small.call("POST", "/v1/jobs", Some(&split));
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no worker has both"),
        "{v}"
    );
}

#[test]
fn test_a_draining_worker_keeps_its_leases() {
    let Some(c) = cluster() else { return };
    let url = c.url("drain_leases").expect("a database");
    let Some(mut draining) = worker(&url, &["--drain-timeout", "30"]) else {
        return;
    };
    let j = draining.submit(sh("sleep 6; echo done"));
    draining.wait_state(&id(&j), "running", 30);
    let Some(other) = worker(&url, &[]) else {
        return;
    };
    // SIGTERM: the drain waits for the job, twice as long as a lease;
    // heartbeats go on meanwhile, so the other worker's reaper leaves it.
    draining.stop();
    let done = other.wait(&id(&j), 60);
    assert_eq!(done["state"], "complete", "{done}\n{}", draining.log());
    assert_eq!(done["attempts"], 1, "{done}");
}

#[test]
fn test_a_killed_workers_job_is_retried_by_another_after_its_lease() {
    let Some(c) = cluster() else { return };
    let url = c.url("lost_worker").expect("a database");
    let Some(mut doomed) = worker(&url, &[]) else {
        return;
    };
    let mut job = sh("trap 'exit 143' TERM; sleep 30 & wait");
    job["max_retries"] = json!(1);
    job["retry_delay"] = json!(0);
    let j = doomed.submit(job);
    doomed.wait_state(&id(&j), "running", 30);
    let Some(other) = worker(&url, &[]) else {
        return;
    };
    doomed.kill9();
    // The lease (3 s) runs out; the other worker's reaper ends the attempt
    // and the retry runs there.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let v = loop {
        let v = other.job(&id(&j));
        if v["attempts"] == 2 && v["state"] == "running" {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never retried: {v}\n{}",
            other.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let attempts = v["attempt_list"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{v}");
    assert_eq!(attempts[0]["state"], "killed", "{v}");
    assert_eq!(attempts[0]["reason"], "worker lost", "{v}");
    assert_eq!(attempts[0]["worker"], json!(worker_id(&doomed)), "{v}");
    assert_eq!(attempts[1]["worker"], json!(worker_id(&other)), "{v}");
    // A cancel through the restarted worker stops the job the other runs.
    doomed.restart();
    let (st, v) = doomed.call("POST", &format!("/v1/jobs/{}/cancel", id(&j)), None);
    assert_eq!(st, 200, "{v}");
    let done = doomed.wait(&id(&j), 60);
    assert_eq!(done["state"], "cancelled", "{done}\n{}", other.log());
}

#[test]
fn test_hooks_webhooks_and_schedules_work_across_the_fleet() {
    let Some(c) = cluster() else { return };
    let url = c.url("fleet_tables").expect("a database");
    let Some(a) = worker(&url, &[]) else { return };
    let Some(b) = worker(&url, &[]) else { return };
    // A trigger defined through one worker fires through the other.
    let (st, v) = a.call("PUT", "/v1/hooks/greet", Some(&sh("cat \"$PAYLOAD_FILE\"")));
    assert_eq!(st, 201, "{v}");
    let (st, v) = b.call("GET", "/v1/hooks", None);
    assert_eq!((st, &v["hooks"][0]["name"]), (200, &json!("greet")), "{v}");
    let (st, j) = b.call_raw("POST", "/v1/hooks/greet", b"hello");
    assert_eq!(st, 201, "{j}");
    let done = a.wait(&id(&j), 60);
    assert_eq!(done["state"], "complete", "{done}");
    let (st, out) = a.call("GET", &format!("/v1/jobs/{}/log", id(&j)), None);
    assert_eq!((st, out), (200, json!("hello")));
    // A webhook: delivered once, though both workers send deliveries.
    let (hook_url, rx) = support::serve::receiver(200);
    let mut job = sh("exit 4");
    job["webhook"] = json!(hook_url);
    let j = b.submit(job);
    let (_, body) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("webhook POST");
    assert_eq!(body["id"], json!(id(&j)), "{body}");
    assert_eq!(body["state"], "error", "{body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = a.job(&id(&j));
        if v["webhook_deliveries"][0]["state"] == "delivered" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        rx.recv_timeout(Duration::from_secs(2)).is_err(),
        "delivered twice"
    );
    // A queue's cap set through one worker is seen through the other.
    let cap = json!({ "max_concurrency": 1 });
    let (st, v) = a.call("PUT", "/v1/queues/one-at-a-time", Some(&cap));
    assert_eq!(st, 200, "{v}");
    let (st, v) = b.call("GET", "/v1/queues", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["queues"],
        json!([{ "name": "one-at-a-time", "max_concurrency": 1 }]),
        "{v}"
    );
    // A schedule every second, three times: both workers fire, three jobs.
    let sched = json!({ "job": sh("true"), "run_every": 1, "run_times": 3 });
    let (st, s) = a.call("POST", "/v1/schedules", Some(&sched));
    assert_eq!(st, 201, "{s}");
    let path = format!("/v1/schedules/{}", id(&s));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = b.call("GET", &path, None);
        if v["state"] == "done" {
            assert_eq!(v["run_count"], 3, "{v}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, list) = a.call("GET", "/v1/jobs?limit=1000", None);
    let made = list["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter(|j| {
            j["request"]["idempotency_key"]
                .as_str()
                .is_some_and(|k| k.starts_with(&format!("sched:{}:", id(&s))))
        })
        .count();
    assert_eq!(made, 3, "{list}");
}

/// The id of package `name`'s image in the store at `root`, if any.
fn code_image_id(root: &std::path::Path, name: &str) -> Option<String> {
    let store = imagestore::Store::open(root).expect("open store");
    store
        .resolve(&format!("skiff-code/{name}:latest"))
        .ok()
        .map(|i| i.id.to_string())
}

/// Push package `name` through `w`: `run.sh` printing `word` and the
/// contents of `data.txt`; its JSON.
fn push_code(w: &Worker, name: &str, word: &str) -> Value {
    use support::tar::{layer, Entry};
    let tar = layer(&[
        Entry::Dir("app".into()),
        Entry::File(
            "app/run.sh".into(),
            format!("echo \"{word} $(cat /app/data.txt)\"\n").into_bytes(),
            0o644,
        ),
        Entry::File("app/data.txt".into(), b"hello".to_vec(), 0o644),
    ]);
    // command=["sh","/app/run.sh"], percent-encoded.
    let cmd = "%5B%22sh%22%2C%22%2Fapp%2Frun.sh%22%5D";
    let (st, v) = w.call_raw(
        "POST",
        &format!("/v1/code/{name}?image={IMAGE}&command={cmd}"),
        &tar,
    );
    assert_eq!(st, 201, "{v}");
    v
}

/// What `j` printed, read through `w`.
fn log_of(w: &Worker, j: &Value) -> Value {
    let (st, out) = w.call("GET", &format!("/v1/jobs/{}/log", id(j)), None);
    assert_eq!(st, 200, "{out}");
    out
}

#[test]
fn test_a_code_package_pushed_to_one_worker_runs_on_another() {
    let Some(c) = cluster() else { return };
    let url = c.url("code_packages").expect("a database");
    let Some(mut a) = worker(&url, &[]) else {
        return;
    };
    let Some(mut b) = worker(&url, &[]) else {
        return;
    };
    let v = push_code(&a, "app", "v1");
    let pushed = v["package"]["image_id"]
        .as_str()
        .expect("image id")
        .to_string();
    assert!(
        v["package"]["layer_digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{v}"
    );
    assert_eq!(code_image_id(&b.root(), "app"), None);
    // Every worker lists it.
    let (st, l) = b.call("GET", "/v1/code", None);
    assert_eq!((st, l["packages"][0]["name"].clone()), (200, json!("app")));

    // With the pushing worker gone, the other makes the image from the
    // layer in the database, with the same id, and runs the job.
    a.stop();
    let j = b.submit(json!({ "code": "app" }));
    let done = b.wait(&id(&j), 60);
    assert_eq!(done["state"], "complete", "{done}\n{}", b.log());
    assert_eq!(done["attempt_list"][0]["worker"], json!(worker_id(&b)));
    assert_eq!(log_of(&b, &j), json!("v1 hello\n"));
    assert_eq!(code_image_id(&b.root(), "app"), Some(pushed.clone()));

    // A new push through that worker reaches the first, whose store holds
    // the old image under the package's tag: it fetches the new one.
    let v2 = push_code(&b, "app", "v2");
    let pushed2 = v2["package"]["image_id"].as_str().expect("id").to_string();
    assert_ne!(pushed2, pushed);
    b.stop();
    a.restart();
    assert_eq!(code_image_id(&a.root(), "app"), Some(pushed));
    let j = a.submit(json!({ "code": "app" }));
    let done = a.wait(&id(&j), 60);
    assert_eq!(done["state"], "complete", "{done}\n{}", a.log());
    assert_eq!(log_of(&a, &j), json!("v2 hello\n"));
    assert_eq!(code_image_id(&a.root(), "app"), Some(pushed2));

    // Removed through one worker, the package is gone for all: a job
    // naming it is refused, naming the field.
    b.restart();
    let (st, v) = a.call("DELETE", "/v1/code/app", None);
    assert_eq!(st, 200, "{v}");
    let (st, v) = b.call("POST", "/v1/jobs", Some(&json!({ "code": "app" })));
    assert_eq!((st, v["field"].clone()), (400, json!("code")), "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no code package app"),
        "{v}"
    );
}
