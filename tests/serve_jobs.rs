//! `skiff serve`'s job rules, each through the real HTTP API of a real
//! worker: states and transitions, payload and output, retries, timeout,
//! cancel, priority, delay, admission, idempotency, bad input, crash
//! recovery and drain.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::serve::{Worker, IMAGE};

fn sh(script: &str) -> Value {
    json!({ "image": IMAGE, "command": ["sh", "-c", script] })
}

fn with(mut job: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().expect("object") {
        job[k] = v.clone();
    }
    job
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("job id").to_string()
}

fn states(job: &Value) -> Vec<String> {
    job["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .map(|t| t["state"].as_str().expect("state").to_string())
        .collect()
}

fn attempt(job: &Value, n: usize) -> &Value {
    &job["attempt_list"][n - 1]
}

/// A job that runs until SIGTERM (it exits at once on it) or `secs`.
fn long(secs: u32) -> Value {
    sh(&format!("trap 'exit 143' TERM; sleep {secs} & wait"))
}

#[test]
fn test_job_completes_with_payload_output_and_accounting() {
    let Some(w) = Worker::start(&[]) else { return };
    let j = w.submit(with(
        sh("echo out; cat \"$PAYLOAD_FILE\"; echo err >&2"),
        json!({ "payload": "the-payload", "label": "l1", "queue": "q1" }),
    ));
    assert!(j["state"] == "queued" || j["state"] == "running", "{j}");
    assert_eq!(j["payload_bytes"], 11);
    let done = w.wait(&id(&j), 60);
    assert_eq!(done["state"], "complete", "{done}");
    assert_eq!(states(&done), ["queued", "running", "complete"]);
    let a = attempt(&done, 1);
    assert_eq!(a["exit_code"], 0);
    assert_eq!(a["state"], "complete");
    assert!(
        a["cpu_usec"].as_i64().is_some() && a["wall_ms"].as_f64().is_some(),
        "{a}"
    );
    assert!(a["peak_memory_bytes"].as_i64().unwrap_or(0) > 0, "{a}");
    let (st, out) = w.call("GET", &format!("/v1/jobs/{}/log", id(&j)), None);
    assert_eq!(st, 200);
    assert_eq!(out, "out\nthe-payload");
    let (_, err) = w.call(
        "GET",
        &format!("/v1/jobs/{}/log?stream=stderr", id(&j)),
        None,
    );
    assert_eq!(err, "err\n");
    // Filters.
    let (_, l) = w.call("GET", "/v1/jobs?label=l1&queue=q1&state=complete", None);
    assert_eq!(l["jobs"].as_array().map(Vec::len), Some(1), "{l}");
    let (_, l) = w.call("GET", "/v1/jobs?label=nope", None);
    assert_eq!(l["jobs"].as_array().map(Vec::len), Some(0), "{l}");
}

#[test]
fn test_failed_job_retries_with_backoff_then_stays_in_error_and_can_be_retried_by_hand() {
    let Some(w) = Worker::start(&[]) else { return };
    let j = w.submit(with(
        sh("exit 3"),
        json!({ "max_retries": 2, "retry_delay": 1 }),
    ));
    let done = w.wait(&id(&j), 60);
    assert_eq!(done["state"], "error", "{done}");
    assert_eq!(done["attempts"], 3);
    assert_eq!(done["reason"], "exit 3");
    assert_eq!(
        states(&done),
        [
            "queued", "running", "delayed", "queued", "running", "delayed", "queued", "running",
            "error"
        ]
    );
    // Backoff: the second retry waited longer than the first (1 s, then 2 s, ±20%).
    let gap = |n: usize| {
        attempt(&done, n + 1)["started_at"].as_i64().expect("start")
            - attempt(&done, n)["ended_at"].as_i64().expect("end")
    };
    assert!(
        gap(1) >= 800 && gap(2) >= 1600,
        "gaps {} {}",
        gap(1),
        gap(2)
    );
    // By hand: one more attempt.
    let (st, r) = w.call("POST", &format!("/v1/jobs/{}/retry", id(&j)), None);
    assert_eq!(st, 200, "{r}");
    let again = w.wait(&id(&j), 60);
    assert_eq!(again["attempts"], 4, "{again}");
    assert_eq!(again["state"], "error");
    // A job that is not finished cannot be retried.
    let run = w.submit(long(30));
    w.wait_state(&id(&run), "running", 30);
    let (st, r) = w.call("POST", &format!("/v1/jobs/{}/retry", id(&run)), None);
    assert_eq!(st, 409, "{r}");
    w.call("POST", &format!("/v1/jobs/{}/cancel", id(&run)), None);
    w.wait(&id(&run), 60);
}

#[test]
fn test_timeout_ends_the_attempt_in_timeout() {
    let Some(w) = Worker::start(&[]) else { return };
    let j = w.submit(with(long(60), json!({ "timeout": 1 })));
    let done = w.wait(&id(&j), 60);
    assert_eq!(done["state"], "timeout", "{done}");
    assert_eq!(attempt(&done, 1)["state"], "timeout");
    let wall = attempt(&done, 1)["wall_ms"].as_f64().expect("wall");
    assert!(wall < 30_000.0, "the job was not stopped: {wall} ms");
}

#[test]
fn test_cancel_queued_and_running_jobs() {
    let Some(w) = Worker::start(&["--launchers", "1"]) else {
        return;
    };
    let running = w.submit(long(60));
    w.wait_state(&id(&running), "running", 30);
    let queued = w.submit(sh("true"));
    assert_eq!(w.job(&id(&queued))["state"], "queued");
    // Queued: dropped at once, never run.
    let (st, c) = w.call("POST", &format!("/v1/jobs/{}/cancel", id(&queued)), None);
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["state"], "cancelled");
    assert_eq!(c["attempts"], 0);
    // Running: SIGTERM; the attempt ends as cancelled.
    let (st, _) = w.call("POST", &format!("/v1/jobs/{}/cancel", id(&running)), None);
    assert_eq!(st, 200);
    let done = w.wait(&id(&running), 30);
    assert_eq!(done["state"], "cancelled", "{done}");
    assert_eq!(attempt(&done, 1)["state"], "cancelled");
    // A finished job cannot be cancelled; an unknown one is 404.
    let (st, _) = w.call("POST", &format!("/v1/jobs/{}/cancel", id(&running)), None);
    assert_eq!(st, 409);
    let (st, _) = w.call("POST", "/v1/jobs/j-0000000000000000/cancel", None);
    assert_eq!(st, 404);
}

#[test]
fn test_priority_orders_the_queue_fifo_within_a_priority() {
    let Some(w) = Worker::start(&["--launchers", "1"]) else {
        return;
    };
    let blocker = w.submit(long(60));
    w.wait_state(&id(&blocker), "running", 30);
    let mut order = Vec::new();
    for (name, p) in [("a0", 0), ("b2", 2), ("c1", 1), ("d2", 2), ("e0", 0)] {
        let j = w.submit(with(sh("true"), json!({ "priority": p, "label": name })));
        order.push((name, id(&j)));
    }
    w.call("POST", &format!("/v1/jobs/{}/cancel", id(&blocker)), None);
    let mut started: Vec<(i64, &str)> = order
        .iter()
        .map(|(name, jid)| {
            let j = w.wait(jid, 60);
            (attempt(&j, 1)["started_at"].as_i64().expect("start"), *name)
        })
        .collect();
    started.sort();
    let names: Vec<&str> = started.iter().map(|(_, n)| *n).collect();
    assert_eq!(names, ["b2", "d2", "c1", "a0", "e0"]);
}

#[test]
fn test_delay_holds_the_job_in_delayed() {
    let Some(w) = Worker::start(&[]) else { return };
    let j = w.submit(with(sh("true"), json!({ "delay": 2 })));
    assert_eq!(j["state"], "delayed");
    let done = w.wait(&id(&j), 60);
    assert_eq!(done["state"], "complete");
    assert_eq!(states(&done), ["delayed", "queued", "running", "complete"]);
    let waited = attempt(&done, 1)["started_at"].as_i64().expect("start")
        - done["created_at"].as_i64().expect("created");
    assert!(waited >= 2000, "started {waited} ms after submit");
}

#[test]
fn test_admission_keeps_memory_within_capacity_and_refuses_what_never_fits() {
    let Some(w) = Worker::start(&["--launchers", "2", "--capacity-memory", "100m"]) else {
        return;
    };
    let (st, e) = w.call(
        "POST",
        "/v1/jobs",
        Some(&with(sh("true"), json!({ "memory": "200m" }))),
    );
    assert_eq!(st, 400, "{e}");
    assert_eq!(e["field"], "memory");
    // Two 64 MiB jobs on two free launchers: they must not overlap.
    let a = w.submit(with(sh("sleep 1"), json!({ "memory": "64m" })));
    let b = w.submit(with(sh("sleep 1"), json!({ "memory": "64m" })));
    let (a, b) = (w.wait(&id(&a), 60), w.wait(&id(&b), 60));
    let span = |j: &Value| {
        let a = attempt(j, 1);
        (
            a["started_at"].as_i64().expect("s"),
            a["ended_at"].as_i64().expect("e"),
        )
    };
    let ((s1, e1), (s2, e2)) = (span(&a), span(&b));
    assert!(e1 <= s2 || e2 <= s1, "overlapped: {s1}-{e1} and {s2}-{e2}");
}

#[test]
fn test_idempotency_key_returns_the_first_job() {
    let Some(w) = Worker::start(&[]) else { return };
    let job = with(sh("true"), json!({ "idempotency_key": "order-17" }));
    let first = w.submit(job.clone());
    let (st, second) = w.call("POST", "/v1/jobs", Some(&job));
    assert_eq!(st, 200, "{second}");
    assert_eq!(id(&first), id(&second));
    let (_, l) = w.call("GET", "/v1/jobs", None);
    assert_eq!(l["jobs"].as_array().map(Vec::len), Some(1));

    // A key used twice in one batch is one job; a key seen before answers
    // with the first job; keyless jobs are new each time.
    let twice = with(sh("true"), json!({ "idempotency_key": "order-18" }));
    let batch = json!({ "jobs": [twice.clone(), sh("true"), twice, job] });
    let (st, b) = w.call("POST", "/v1/jobs", Some(&batch));
    assert_eq!(st, 201, "{b}");
    let ids: Vec<&str> = b["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 4, "{b}");
    assert_eq!(ids[0], ids[2], "one key, one job: {b}");
    assert_ne!(ids[0], ids[1]);
    assert_eq!(ids[3], id(&first), "the key of the first request: {b}");
    let (_, l) = w.call("GET", "/v1/jobs", None);
    assert_eq!(l["jobs"].as_array().map(Vec::len), Some(3), "{l}");
    // What the submit answered is what the job reads as, unless it moved
    // on meanwhile.
    let answered = &b["jobs"][1];
    assert_eq!(answered["transitions"][0]["state"], "queued", "{b}");
    let read = w.job(ids[1]);
    for field in [
        "id",
        "queue",
        "priority",
        "request",
        "payload_bytes",
        "max_retries",
        "created_at",
    ] {
        assert_eq!(
            answered[field], read[field],
            "{field}: {answered} vs {read}"
        );
    }
}

#[test]
fn test_bad_input_gets_a_4xx_naming_the_field() {
    let Some(w) = Worker::start(&[]) else { return };
    let cases: Vec<(Value, u16, &str)> = vec![
        (with(sh("true"), json!({ "bogus": 1 })), 400, ""),
        (with(sh("true"), json!({ "priority": 7 })), 400, "priority"),
        (
            with(sh("true"), json!({ "priority": "high" })),
            400,
            "priority",
        ),
        (with(sh("true"), json!({ "memory": -1 })), 400, "memory"),
        (with(sh("true"), json!({ "cpus": -2.0 })), 400, "cpus"),
        (with(sh("true"), json!({ "pids": -1 })), 400, "pids"),
        (with(sh("true"), json!({ "timeout": 0 })), 400, "timeout"),
        (
            with(sh("true"), json!({ "payload": "x".repeat((1 << 20) + 1) })),
            400,
            "payload",
        ),
        (json!({ "command": ["true"] }), 400, ""),
        (
            json!({ "image": "no-such-image", "command": ["true"] }),
            400,
            "image",
        ),
        (
            json!({ "jobs": [sh("true"), with(sh("true"), json!({"priority": 9}))] }),
            400,
            "jobs[1].priority",
        ),
        (json!({ "jobs": [] }), 400, "jobs"),
    ];
    for (body, status, field) in cases {
        let (st, e) = w.call("POST", "/v1/jobs", Some(&body));
        assert_eq!(st, status, "{body}: {e}");
        assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
        if !field.is_empty() {
            assert_eq!(e["field"], field, "{e}");
        }
    }
    let (st, e) = w.call_raw("POST", "/v1/jobs", b"{not json");
    assert_eq!(st, 400, "{e}");
    for (m, p, want) in [
        ("GET", "/v1/jobs/j-0000000000000000", 404),
        ("GET", "/v1/jobs?state=bogus", 400),
        ("GET", "/v1/jobs?limit=0", 400),
        ("GET", "/v1/jobs?unknown=1", 400),
        ("DELETE", "/v1/jobs", 405),
        ("GET", "/v2/nothing", 404),
    ] {
        let (st, e) = w.call(m, p, None);
        assert_eq!(st, want, "{m} {p}: {e}");
    }
    // Nothing was accepted by the bad requests.
    let (_, l) = w.call("GET", "/v1/jobs", None);
    assert_eq!(l["jobs"].as_array().map(Vec::len), Some(0), "{l}");
}

#[test]
fn test_killed_worker_recovers_running_jobs_and_retries_them() {
    let Some(mut w) = Worker::start(&[]) else {
        return;
    };
    let j = w.submit(with(
        sh("sleep 2"),
        json!({ "max_retries": 1, "retry_delay": 0 }),
    ));
    let k = w.submit(sh("sleep 30"));
    w.wait_state(&id(&j), "running", 30);
    w.wait_state(&id(&k), "running", 30);
    w.kill9();
    std::thread::sleep(Duration::from_millis(300));
    w.restart();
    // No job is left in running by the restart.
    assert_ne!(w.job(&id(&k))["state"], "running");
    let k = w.job(&id(&k));
    assert_eq!(k["state"], "killed", "{k}");
    assert_eq!(attempt(&k, 1)["reason"], "worker lost");
    let j = w.wait(&id(&j), 60);
    assert_eq!(j["state"], "complete", "{j}");
    assert_eq!(attempt(&j, 1)["state"], "killed");
    assert_eq!(attempt(&j, 1)["reason"], "worker lost");
    assert_eq!(attempt(&j, 2)["state"], "complete");
    assert_no_leftovers(&mut w);
}

#[test]
fn test_sigterm_drains_then_requeues_what_still_runs() {
    let Some(mut w) = Worker::start(&["--drain-timeout", "1"]) else {
        return;
    };
    let quick = w.submit(sh("sleep 0.3"));
    let slow = w.submit(long(60));
    w.wait_state(&id(&slow), "running", 30);
    let st = w.stop().expect("worker exited");
    assert!(st.success(), "serve exited {st}: {}", w.log());
    w.restart();
    assert_eq!(w.job(&id(&quick))["state"], "complete");
    let slow = w.job(&id(&slow));
    assert!(
        slow["state"] == "queued" || slow["state"] == "running",
        "{slow}"
    );
    assert_eq!(attempt(&slow, 1)["reason"], "worker stopped");
    w.call("POST", &format!("/v1/jobs/{}/cancel", id(&slow)), None);
    w.wait(&id(&slow), 60);
}

/// The recovery test: 1,000 short jobs, the worker SIGKILLed three
/// times during the run and restarted.
#[test]
fn test_a_thousand_jobs_survive_three_worker_kills() {
    let Some(mut w) = Worker::start(&["--launchers", "2"]) else {
        return;
    };
    let total = 1000;
    let jobs: Vec<Value> = (0..total)
        .map(|i| {
            with(
                sh("true"),
                json!({ "label": format!("n{}", i % 7), "max_retries": 2, "retry_delay": 0 }),
            )
        })
        .collect();
    let (st, v) = w.call("POST", "/v1/jobs", Some(&json!({ "jobs": jobs })));
    assert_eq!(st, 201, "{v}");
    let ids: Vec<String> = v["jobs"].as_array().expect("jobs").iter().map(id).collect();
    assert_eq!(ids.len(), total);
    let count_done = |w: &Worker| -> usize {
        let mut n = 0;
        let mut after = String::new();
        loop {
            let q = if after.is_empty() {
                "/v1/jobs?limit=1000".to_string()
            } else {
                format!("/v1/jobs?limit=1000&after={after}")
            };
            let (_, l) = w.call("GET", &q, None);
            let page = l["jobs"].as_array().expect("jobs");
            n += page.iter().filter(|j| j["state"] == "complete").count();
            match l["next"].as_str() {
                Some(next) => after = next.to_string(),
                None => return n,
            }
        }
    };
    for round in 0..3 {
        // Let some jobs finish, then crash the worker mid-run.
        let target = (round + 1) * total / 5;
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while count_done(&w) < target && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        w.kill9();
        w.restart();
    }
    let mut by_state: HashMap<String, usize> = HashMap::new();
    for jid in &ids {
        let j = w.wait(jid, 300);
        *by_state
            .entry(j["state"].as_str().expect("state").to_string())
            .or_default() += 1;
        if j["state"] == "complete" {
            let ran = j["attempt_list"]
                .as_array()
                .expect("attempts")
                .iter()
                .any(|a| a["state"] == "complete" && a["exit_code"] == 0);
            assert!(ran, "complete without a completed attempt: {j}");
        }
    }
    assert_eq!(by_state.values().sum::<usize>(), total, "{by_state:?}");
    assert!(!by_state.contains_key("running"), "{by_state:?}");
    assert_no_leftovers(&mut w);
}

/// Stop the worker; then no job directory, cgroup or mount of the store is left.
fn assert_no_leftovers(w: &mut Worker) {
    let st = w.stop().expect("worker exited");
    assert!(st.success(), "serve exited {st}: {}", w.log());
    std::thread::sleep(Duration::from_millis(300));
    w.env
        .assert_clean("job directories left: ", "job cgroups left: ");
    let root = w.root().to_string_lossy().into_owned();
    assert_eq!(
        support::run::mounts_containing(&root),
        0,
        "mounts left under {root}"
    );
}

#[test]
fn test_log_follow_streams_until_the_attempt_ends() {
    let Some(w) = Worker::start(&[]) else { return };
    let j = w.submit(sh("echo a; sleep 1; echo b; sleep 1; echo c"));
    w.wait_state(&id(&j), "running", 30);
    // Started while the job runs; answered in full only once it has ended.
    let (st, out) = w.call("GET", &format!("/v1/jobs/{}/log?follow=true", id(&j)), None);
    assert_eq!(st, 200);
    assert_eq!(out, "a\nb\nc\n");
    assert_eq!(w.job(&id(&j))["state"], "complete");
}

/// The memory bound: an idle worker's RSS stays under 50 MB (after
/// it ran jobs, launchers excluded: they are processes of their own).
#[test]
fn test_idle_worker_rss_is_under_50_mb() {
    let Some(w) = Worker::start(&[]) else { return };
    let jobs: Vec<Value> = (0..50).map(|_| sh("true")).collect();
    let (st, v) = w.call("POST", "/v1/jobs", Some(&json!({ "jobs": jobs })));
    assert_eq!(st, 201, "{v}");
    for j in v["jobs"].as_array().expect("jobs") {
        w.wait(&id(j), 60);
    }
    let pid = w.child.as_ref().expect("running").id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    assert!(rss_kb < 50 * 1024, "idle worker RSS {rss_kb} kB");
}

#[test]
fn test_submit_follow_streams_output_and_exits_with_the_job_status() {
    let Some(w) = Worker::start(&[]) else { return };
    let out = std::process::Command::new(support::env::skiff_bin())
        .arg("--root")
        .arg(w.root())
        .args([
            "submit",
            "--follow",
            IMAGE,
            "sh",
            "-c",
            "echo a; sleep 1; echo b >&2; echo c; exit 5",
        ])
        .output()
        .expect("skiff submit --follow");
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\nc\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("b\n"),
        "{out:?}"
    );
}

#[test]
fn test_queue_max_concurrency_caps_the_queue_only() {
    let Some(w) = Worker::start(&["--launchers", "2"]) else {
        return;
    };
    let (st, v) = w.call(
        "PUT",
        "/v1/queues/one",
        Some(&json!({ "max_concurrency": 1 })),
    );
    assert_eq!(st, 200, "{v}");
    for bad in [json!({ "max_concurrency": 0 }), json!({ "max": 1 })] {
        let (st, e) = w.call("PUT", "/v1/queues/one", Some(&bad));
        assert_eq!(st, 400, "{bad}: {e}");
    }
    let a = w.submit(with(sh("sleep 1"), json!({ "queue": "one" })));
    let b = w.submit(with(sh("sleep 1"), json!({ "queue": "one" })));
    let other = w.submit(sh("sleep 1"));
    let span = |j: &Value| {
        let a = attempt(j, 1);
        (
            a["started_at"].as_i64().expect("s"),
            a["ended_at"].as_i64().expect("e"),
        )
    };
    let (a, b, other) = (
        w.wait(&id(&a), 60),
        w.wait(&id(&b), 60),
        w.wait(&id(&other), 60),
    );
    let ((s1, e1), (s2, e2), (s3, _)) = (span(&a), span(&b), span(&other));
    assert!(
        e1 <= s2 || e2 <= s1,
        "queue one ran two at once: {s1}-{e1} and {s2}-{e2}"
    );
    // The other queue's job ran beside them, not after both.
    assert!(s3 < e1.max(e2), "the other queue waited: {s3} vs {e1} {e2}");
    let (_, l) = w.call("GET", "/v1/queues", None);
    assert_eq!(l["queues"][0]["max_concurrency"], 1, "{l}");
}
