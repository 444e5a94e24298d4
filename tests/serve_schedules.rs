//! `skiff serve`'s schedules through the real API: a template fired every
//! second a set number of times, bad schedules refused naming the field, a
//! slot fired once across SIGKILLs of the worker, and delete stopping it.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::serve::{Worker, IMAGE};

fn unique_label(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("sched-{what}-{}-{nanos:x}", std::process::id())
}

/// The jobs carrying `label`, in submission order.
fn jobs_by_label(w: &Worker, label: &str) -> Vec<Value> {
    let (st, v) = w.call("GET", &format!("/v1/jobs?label={label}&limit=1000"), None);
    assert_eq!(st, 200, "list jobs: {v}");
    v["jobs"].as_array().cloned().unwrap_or_default()
}

/// Each job's slot (from its idempotency key `sched:<id>:<slot>`);
/// asserts every job came from schedule `id`.
fn slots(jobs: &[Value], id: &str) -> Vec<i64> {
    jobs.iter()
        .map(|j| {
            let key = j["request"]["idempotency_key"]
                .as_str()
                .unwrap_or_else(|| panic!("job without a key: {j}"));
            let slot = key
                .strip_prefix(&format!("sched:{id}:"))
                .unwrap_or_else(|| panic!("key {key:?} is not schedule {id}'s"));
            slot.parse()
                .unwrap_or_else(|e| panic!("key {key:?}: slot: {e}"))
        })
        .collect()
}

fn create(w: &Worker, body: Value) -> Value {
    let (st, v) = w.call("POST", "/v1/schedules", Some(&body));
    assert_eq!(st, 201, "create {body}: {v}\n{}", w.log());
    assert!(
        v["id"].as_str().is_some_and(|id| id.starts_with("s-")),
        "{v}"
    );
    v
}

fn wait_for_jobs(w: &Worker, label: &str, n: usize, secs: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let jobs = jobs_by_label(w, label);
        if jobs.len() >= n {
            return jobs;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} jobs labelled {label} after {secs} s\n{}",
            jobs.len(),
            w.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn test_every_second_three_times_makes_three_jobs() {
    let Some(w) = Worker::start(&[]) else { return };
    let label = unique_label("three");
    let s = create(
        &w,
        json!({
            "job": { "image": IMAGE, "command": ["true"], "label": label },
            "run_every": 1,
            "run_times": 3,
        }),
    );
    let id = s["id"].as_str().expect("id").to_string();
    assert!(s["next_at"].as_i64().is_some(), "{s}");
    assert_eq!(s["state"], "active", "{s}");
    assert_eq!(s["run_count"], 0, "{s}");

    let deadline = Instant::now() + Duration::from_secs(30);
    let s = loop {
        let (st, s) = w.call("GET", &format!("/v1/schedules/{id}"), None);
        assert_eq!(st, 200, "{s}");
        if s["state"] == "done" {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "schedule never done: {s}\n{}",
            w.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(s["run_count"], 3, "{s}");
    assert!(s["next_at"].is_null(), "{s}");

    // Nothing more fires once it is done.
    std::thread::sleep(Duration::from_millis(2500));
    let jobs = jobs_by_label(&w, &label);
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    let sl = slots(&jobs, &id);
    assert_eq!(sl.len(), sl.iter().collect::<BTreeSet<_>>().len(), "{sl:?}");
    for pair in sl.windows(2) {
        assert_eq!(pair[1] - pair[0], 1000, "slots a second apart: {sl:?}");
    }
    assert_eq!(s["last_run_at"].as_i64(), sl.last().copied(), "{s}");
    for j in &jobs {
        let id = j["id"].as_str().expect("job id");
        let done = w.wait(id, 60);
        assert_eq!(done["state"], "complete", "{done}");
        assert_eq!(done["label"], label.as_str(), "{done}");
    }

    // It is listed, as done.
    let (st, v) = w.call("GET", "/v1/schedules", None);
    assert_eq!(st, 200, "{v}");
    let listed = v["schedules"].as_array().expect("schedules");
    assert!(
        listed
            .iter()
            .any(|x| x["id"] == id.as_str() && x["state"] == "done"),
        "{v}"
    );
}

#[test]
fn test_bad_schedules_are_refused_naming_the_field() {
    let Some(w) = Worker::start(&[]) else { return };
    let job = json!({ "image": IMAGE, "command": ["true"] });
    let cases = [
        ("cron", json!({ "job": job, "cron": "every tuesday" })),
        ("cron", json!({ "job": job, "cron": "61 * * * *" })),
        ("cron", json!({ "job": job, "cron": "0 0 * * * *" })),
        ("cron", json!({ "job": job, "cron": "" })),
        (
            "cron",
            json!({ "job": job, "cron": "* * * * *", "run_every": 5 }),
        ),
        ("cron", json!({ "job": job })),
        ("run_every", json!({ "job": job, "run_every": 0 })),
        ("run_every", json!({ "job": job, "run_every": -1 })),
        (
            "run_times",
            json!({ "job": job, "run_every": 5, "run_times": 0 }),
        ),
        (
            "end_at",
            json!({ "job": job, "run_every": 5, "end_at": 1000 }),
        ),
        (
            "job.image",
            json!({ "job": { "image": "no-such/image:1" }, "run_every": 5 }),
        ),
        (
            "job.image",
            json!({ "job": { "command": ["true"] }, "run_every": 5 }),
        ),
        (
            "job.image",
            json!({ "job": { "image": "" }, "run_every": 5 }),
        ),
        (
            "job.idempotency_key",
            json!({ "job": { "image": IMAGE, "idempotency_key": "k" }, "run_every": 5 }),
        ),
        (
            "job.priority",
            json!({ "job": { "image": IMAGE, "priority": 9 }, "run_every": 5 }),
        ),
        ("job", json!({ "run_every": 5 })),
        ("bogus", json!({ "job": job, "run_every": 5, "bogus": 1 })),
        (
            "job.bogus",
            json!({ "job": { "image": IMAGE, "bogus": 1 }, "run_every": 5 }),
        ),
    ];
    for (field, body) in cases {
        let (st, v) = w.call("POST", "/v1/schedules", Some(&body));
        assert_eq!(st, 400, "{body}: {v}");
        assert!(v["error"].is_string(), "{body}: {v}");
        if field == "bogus" || field == "job.bogus" {
            // An unknown field: refused; serde names it in the message.
            assert!(
                v["error"].as_str().is_some_and(|e| e.contains("bogus")),
                "{v}"
            );
        } else {
            assert_eq!(v["field"], field, "{body}: {v}");
        }
    }
    let (st, v) = w.call_raw("POST", "/v1/schedules", b"{not json");
    assert_eq!(st, 400, "{v}");
    let (st, v) = w.call("GET", "/v1/schedules/s-0000000000000000", None);
    assert_eq!(st, 404, "{v}");
    let (st, v) = w.call("DELETE", "/v1/schedules/s-0000000000000000", None);
    assert_eq!(st, 404, "{v}");
    // Nothing was stored.
    let (st, v) = w.call("GET", "/v1/schedules", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["schedules"], json!([]), "{v}");

    // A good cron schedule: its first slot is a whole minute ahead.
    let s = create(&w, json!({ "job": job, "cron": "*/5 * * * *" }));
    let next = s["next_at"].as_i64().expect("next_at");
    assert_eq!(next % 300_000, 0, "{s}");
    assert!(next > s["created_at"].as_i64().expect("created_at"), "{s}");
}

#[test]
fn test_a_slot_fires_once_across_sigkills() {
    let Some(mut w) = Worker::start(&[]) else {
        return;
    };
    let label = unique_label("crash");
    let s = create(
        &w,
        json!({
            "job": { "image": IMAGE, "command": ["true"], "label": label },
            "run_every": 1,
        }),
    );
    let id = s["id"].as_str().expect("id").to_string();
    // Kill the worker right after a fire, three times over.
    for round in 1..=3 {
        let before = jobs_by_label(&w, &label).len();
        wait_for_jobs(&w, &label, before + 1, 30);
        w.kill9();
        w.restart();
        eprintln!("round {round}: killed after {} job(s)", before + 1);
    }
    wait_for_jobs(&w, &label, jobs_by_label(&w, &label).len() + 2, 30);
    let (st, v) = w.call("DELETE", &format!("/v1/schedules/{id}"), None);
    assert_eq!(st, 200, "{v}");
    std::thread::sleep(Duration::from_millis(1500));

    let jobs = jobs_by_label(&w, &label);
    let sl = slots(&jobs, &id);
    let unique: BTreeSet<i64> = sl.iter().copied().collect();
    assert_eq!(unique.len(), sl.len(), "a slot made two jobs: {sl:?}");
    assert!(sl.len() >= 5, "{sl:?}");
    let first = sl[0];
    for s in &sl {
        assert_eq!((s - first) % 1000, 0, "slots on the second grid: {sl:?}");
    }
    let (st, v) = w.call("GET", &format!("/v1/schedules/{id}"), None);
    assert_eq!(st, 404, "{v}");
    // A job running when the worker was killed ends `killed` (worker lost,
    // no retries); every other one completes.
    for j in &jobs {
        let done = w.wait(j["id"].as_str().expect("job id"), 60);
        assert!(
            done["state"] == "complete"
                || (done["state"] == "killed" && done["reason"] == "worker lost"),
            "{done}"
        );
    }
}

#[test]
fn test_delete_stops_a_schedule() {
    let Some(w) = Worker::start(&[]) else { return };
    let label = unique_label("delete");
    let s = create(
        &w,
        json!({
            "job": { "image": IMAGE, "command": ["true"], "label": label },
            "run_every": 1,
        }),
    );
    let id = s["id"].as_str().expect("id").to_string();
    wait_for_jobs(&w, &label, 2, 30);
    let (st, v) = w.call("DELETE", &format!("/v1/schedules/{id}"), None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["deleted"], true, "{v}");
    let (st, v) = w.call("GET", &format!("/v1/schedules/{id}"), None);
    assert_eq!(st, 404, "{v}");
    let (st, v) = w.call("DELETE", &format!("/v1/schedules/{id}"), None);
    assert_eq!(st, 404, "{v}");
    let (st, v) = w.call("GET", "/v1/schedules", None);
    assert_eq!(st, 200, "{v}");
    assert!(
        !v["schedules"]
            .as_array()
            .expect("schedules")
            .iter()
            .any(|x| x["id"] == id.as_str()),
        "{v}"
    );
    // A fire under way when it was deleted may still land; then nothing.
    std::thread::sleep(Duration::from_millis(500));
    let n = jobs_by_label(&w, &label).len();
    std::thread::sleep(Duration::from_millis(3000));
    assert_eq!(jobs_by_label(&w, &label).len(), n, "fired after delete");
}
