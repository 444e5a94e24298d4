//! Running `skiff serve` in production: the systemd unit
//! (`contrib/systemd/skiff.service`) passes `systemd-analyze verify`; the
//! notify protocol (READY=1, STOPPING=1) on a real
//! NOTIFY_SOCKET; Prometheus metrics at `/metrics` after jobs ran; and the
//! TCP listener with its bearer token.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use scheduler::client::Client;
use serde_json::{json, Value};
use support::env::{have, repo, skiff_bin, test_dir};
use support::privilege::skip_or_fail;
use support::serve::{Worker, IMAGE};

fn sh(script: &str) -> Value {
    json!({ "image": IMAGE, "command": ["sh", "-c", script] })
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("job id").to_string()
}

fn unit_text() -> String {
    std::fs::read_to_string(repo().join("contrib/systemd/skiff.service")).expect("read the unit")
}

/// The value of `key=` in the unit (the last one set).
fn unit_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .next_back()
}

#[test]
fn test_systemd_unit_verifies_and_sets_the_worker_up() {
    let text = unit_text();
    for (k, v) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("WatchdogSec", "30s"),
        ("KillMode", "mixed"),
        ("Restart", "on-failure"),
        (
            "ExecStart",
            "/usr/local/bin/skiff --root /var/lib/skiff serve",
        ),
    ] {
        assert_eq!(unit_value(&text, k).as_deref(), Some(v), "{k}= in the unit");
    }
    // The stop timeout outlasts the default drain (30 s).
    let stop = unit_value(&text, "TimeoutStopSec").expect("TimeoutStopSec");
    let secs: u64 = stop
        .trim_end_matches('s')
        .parse()
        .expect("TimeoutStopSec in s");
    assert!(
        secs > 30,
        "TimeoutStopSec={stop} must exceed the drain timeout"
    );
    for absent in ["ProtectSystem", "SystemCallFilter", "NoNewPrivileges"] {
        assert!(
            unit_value(&text, absent).is_none(),
            "{absent}= would break container launches"
        );
    }

    if !have("systemd-analyze") {
        skip_or_fail("needs systemd-analyze (Debian package systemd)");
        return;
    }
    // verify checks that ExecStart's binary exists: check a copy whose
    // ExecStart is the binary under test, in a directory of its own (the
    // unit's name must stay skiff.service).
    let dir = test_dir("skiff-unit-");
    let copy = dir.path().join("skiff.service");
    std::fs::write(&copy, text.replace("/usr/local/bin/skiff", skiff_bin())).expect("write");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
    assert!(
        !stderr.contains("skiff.service"),
        "systemd-analyze complains about the unit:\n{stderr}"
    );
}

/// Datagrams on `sock` until one contains `want`, for at most `secs`.
fn await_notify(sock: &UnixDatagram, want: &str, secs: u64, seen: &mut Vec<String>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = msg.lines().any(|l| l == want);
                seen.push(msg);
                if hit {
                    return true;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("recv on the notify socket: {e}"),
        }
    }
    false
}

#[test]
fn test_notify_ready_and_stopping() {
    let dir = test_dir("skiff-notify-");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let path_s = path.to_str().expect("utf-8 path");
    let Some(mut w) = Worker::start_with_env(&[], &[("NOTIFY_SOCKET", path_s)]) else {
        return;
    };
    let mut seen = Vec::new();
    assert!(
        await_notify(&sock, "READY=1", 10, &mut seen),
        "no READY=1: {seen:?}\n{}",
        w.log()
    );
    let st = w.stop().expect("worker was running");
    assert!(st.success(), "skiff serve exited {st}\n{}", w.log());
    assert!(
        await_notify(&sock, "STOPPING=1", 2, &mut seen),
        "no STOPPING=1 after SIGTERM: {seen:?}\n{}",
        w.log()
    );
}

#[test]
fn test_metrics_after_jobs_ran() {
    let Some(w) = Worker::start(&[]) else { return };
    let ok = w.submit(sh("echo hi"));
    let bad = w.submit(sh("exit 3"));
    assert_eq!(w.wait(&id(&ok), 60)["state"], "complete");
    assert_eq!(w.wait(&id(&bad), 60)["state"], "error");
    let wants = [
        "# TYPE skiff_jobs gauge",
        "skiff_jobs{state=\"complete\",queue=\"default\"} 1",
        "skiff_jobs{state=\"error\",queue=\"default\"} 1",
        "# TYPE skiff_job_queue_wait_seconds histogram",
        "skiff_job_queue_wait_seconds_count 2",
        "# TYPE skiff_job_run_seconds histogram",
        "skiff_job_run_seconds_bucket{le=\"+Inf\"} 2",
        "# TYPE skiff_job_launch_seconds histogram",
        "skiff_job_launch_seconds_count 2",
        "skiff_launcher_slots{state=\"free\"} 2",
        "skiff_launcher_slots{state=\"busy\"} 0",
        "skiff_attempts_total{state=\"complete\"} 1",
        "skiff_job_failures_total{state=\"error\",reason=\"exit\"} 1",
    ];
    // The dispatcher records an attempt just after the queue commits its
    // end (which is when the job's waiters see it): scrape until it shows.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let (st, body) = w.call("GET", "/metrics", None);
        assert_eq!(st, 200, "{body}");
        let text = body.as_str().expect("text body").to_string();
        match wants.iter().find(|want| !text.contains(*want)) {
            None => break text,
            Some(want) if Instant::now() > deadline => {
                panic!("/metrics lacks {want:?}:\n{text}")
            }
            Some(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    // A state a job left reads 0, not its old count.
    assert!(
        !text.contains("skiff_jobs{state=\"running\",queue=\"default\"} 1"),
        "{text}"
    );
}

/// A port free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn call(
    addr: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let c = Client::tcp(addr, token.map(str::to_string));
    let r = rt
        .block_on(c.call(method, path, body.map(|b| b.to_string().into_bytes())))
        .expect("TCP call");
    (r.status, r.json())
}

#[test]
fn test_tcp_listener_needs_the_bearer_token() {
    let dir = test_dir("skiff-token-");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-Token\n").expect("write token");
    let addr = format!("127.0.0.1:{}", free_port());
    let Some(w) = Worker::start(&[
        "--listen",
        &addr,
        "--token-file",
        token_file.to_str().expect("utf-8"),
    ]) else {
        return;
    };
    let job = sh("echo tcp");
    let (st, v) = call(&addr, None, "POST", "/v1/jobs", Some(&job));
    assert_eq!(st, 401, "no token: {v}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    let (st, v) = call(&addr, Some("s3cret-Tokem"), "POST", "/v1/jobs", Some(&job));
    assert_eq!(st, 401, "wrong token: {v}");
    let (st, v) = call(&addr, Some("s3cret-Token"), "GET", "/v1/jobs", None);
    assert_eq!(st, 200, "right token: {v}");
    let (st, v) = call(&addr, Some(""), "GET", "/metrics", None);
    assert_eq!(st, 401, "empty token: {v}");
    // Open on TCP: /healthz only.
    let (st, v) = call(&addr, None, "GET", "/healthz", None);
    assert_eq!(st, 200, "{v}");
    let (st, j) = call(&addr, Some("s3cret-Token"), "POST", "/v1/jobs", Some(&job));
    assert_eq!(st, 201, "submit with the token: {j}");
    // The unix socket needs no token; the job is the same one.
    assert_eq!(w.wait(&id(&j), 60)["state"], "complete");
}

fn serve_refused(root: &Path, args: &[&str]) -> String {
    let out = Command::new(skiff_bin())
        .arg("--root")
        .arg(root)
        .arg("serve")
        .args(args)
        .output()
        .expect("run skiff serve");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "skiff serve {args:?} started: {stderr}"
    );
    stderr
}

#[test]
fn test_tcp_listener_refused_without_a_token() {
    let dir = test_dir("skiff-notoken-");
    let addr = format!("127.0.0.1:{}", free_port());
    let err = serve_refused(dir.path(), &["--listen", &addr]);
    assert!(err.contains("--token-file"), "{err}");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, " \n").expect("write");
    let err = serve_refused(
        dir.path(),
        &[
            "--listen",
            &addr,
            "--token-file",
            empty.to_str().expect("utf-8"),
        ],
    );
    assert!(err.contains("empty"), "{err}");
}
