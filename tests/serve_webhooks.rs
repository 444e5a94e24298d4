//! `skiff serve`'s webhooks through the real API: a job's result POSTed to
//! a real HTTP receiver when it ends, retried while the target is down
//! without holding up the queue; and triggers (`/v1/hooks/{name}`) that turn
//! a request body into a job's payload.

mod support;

use std::net::TcpListener;
use std::time::Duration;

use serde_json::{json, Value};
use support::serve::{receiver, Worker, IMAGE};

fn sh(script: &str) -> Value {
    json!({ "image": IMAGE, "command": ["sh", "-c", script] })
}

#[test]
fn test_webhook_receives_the_finished_job() {
    let Some(w) = Worker::start(&[]) else { return };
    let (url, rx) = receiver(200);
    let mut job = sh("exit 4");
    job["webhook"] = json!(url);
    let j = w.submit(job);
    let id = j["id"].as_str().expect("id").to_string();
    let (headers, body) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("webhook POST");
    assert_eq!(body["id"], id.as_str(), "{body}");
    assert_eq!(body["state"], "error");
    assert_eq!(body["attempt_list"][0]["exit_code"], 4);
    assert!(
        headers
            .to_ascii_lowercase()
            .contains(&format!("x-skiff-job: {id}")),
        "{headers}"
    );
    // Recorded as delivered, once.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let j = w.job(&id);
        if j["webhook_deliveries"][0]["state"] == "delivered" {
            assert_eq!(j["webhook_deliveries"][0]["attempts"], 1);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{j}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "delivered twice"
    );
}

#[test]
fn test_a_down_webhook_target_is_retried_and_does_not_block_the_queue() {
    let Some(w) = Worker::start(&[]) else { return };
    // A port with nothing listening, and a target answering 500.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}/", l.local_addr().expect("addr"))
    };
    let (failing, rx) = receiver(500);
    let mut a = sh("true");
    a["webhook"] = json!(dead);
    let mut b = sh("true");
    b["webhook"] = json!(failing);
    let a = w.submit(a);
    let b = w.submit(b);
    // Later jobs run while those deliveries fail.
    let later: Vec<String> = (0..5)
        .map(|_| w.submit(sh("true"))["id"].as_str().expect("id").to_string())
        .collect();
    for id in &later {
        assert_eq!(w.wait(id, 60)["state"], "complete");
    }
    // The failing target is called again (backoff about 1 s, then 2 s).
    rx.recv_timeout(Duration::from_secs(30)).expect("first try");
    rx.recv_timeout(Duration::from_secs(30)).expect("a retry");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for id in [&a["id"], &b["id"]] {
        let id = id.as_str().expect("id");
        loop {
            let j = w.job(id);
            let d = &j["webhook_deliveries"][0];
            if d["state"] == "pending" && d["attempts"].as_i64().unwrap_or(0) >= 1 {
                assert!(
                    d["last_error"].as_str().is_some_and(|e| !e.is_empty()),
                    "{d}"
                );
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{j}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn test_trigger_turns_the_body_into_the_payload() {
    let Some(w) = Worker::start(&[]) else { return };
    let (st, h) = w.call(
        "PUT",
        "/v1/hooks/deploy",
        Some(&json!({ "image": IMAGE, "command": ["sh", "-c", "cat \"$PAYLOAD_FILE\""], "label": "hooked" })),
    );
    assert_eq!(st, 201, "{h}");
    let (st, _) = w.call("GET", "/v1/hooks/deploy", None);
    assert_eq!(st, 200);
    let (st, j) = w.call_raw("POST", "/v1/hooks/deploy", br#"{"ref":"main","sha":"abc"}"#);
    assert_eq!(st, 201, "{j}");
    let id = j["id"].as_str().expect("id");
    assert_eq!(j["label"], "hooked");
    assert_eq!(w.wait(id, 60)["state"], "complete");
    let (_, out) = w.call("GET", &format!("/v1/jobs/{id}/log"), None);
    assert_eq!(out, json!({"ref":"main","sha":"abc"}));
    // Bad input: unknown trigger, bad name, bad template, binary body.
    let (st, _) = w.call_raw("POST", "/v1/hooks/nope", b"x");
    assert_eq!(st, 404);
    let (st, e) = w.call_raw("POST", "/v1/hooks/deploy", &[0xff, 0xfe]);
    assert_eq!(st, 400, "{e}");
    let (st, e) = w.call(
        "PUT",
        "/v1/hooks/bad%20name",
        Some(&json!({ "image": IMAGE })),
    );
    assert_eq!(st, 400, "{e}");
    assert_eq!(e["field"], "name");
    let (st, e) = w.call(
        "PUT",
        "/v1/hooks/x",
        Some(&json!({ "image": IMAGE, "priority": 5 })),
    );
    assert_eq!(st, 400, "{e}");
    assert_eq!(e["field"], "priority");
    let (st, e) = w.call(
        "PUT",
        "/v1/hooks/x",
        Some(&json!({ "image": "missing-image" })),
    );
    assert_eq!(st, 400, "{e}");
    assert_eq!(e["field"], "image");
    let (st, _) = w.call("DELETE", "/v1/hooks/deploy", None);
    assert_eq!(st, 200);
    let (st, _) = w.call_raw("POST", "/v1/hooks/deploy", b"x");
    assert_eq!(st, 404);
}
