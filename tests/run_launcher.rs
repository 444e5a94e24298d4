//! The hidden `skiff launcher`: a single-threaded process that runs one job
//! per JSON request line and answers with one JSON line.

mod run_common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use run_common::{env, BUSYBOX};

#[test]
fn test_launcher_serves_requests_in_order() {
    let Some(e) = env() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let mut child = e
        .cmd()
        .arg("launcher")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn launcher");
    let mut input = child.stdin.take().expect("stdin");
    let mut replies = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for i in 0..3 {
        let out = dir.path().join(format!("out{i}"));
        let req = serde_json::json!({
            "image": BUSYBOX,
            "command": ["sh", "-c", format!("echo job{i}; yes | head -c 100000; exit {i}")],
            "stdout": out,
            "output_cap": 1000,
            "pids_limit": 16,
        });
        writeln!(input, "{req}").expect("send");
        let reply: serde_json::Value =
            serde_json::from_str(&replies.next().expect("reply").expect("line")).expect("json");
        assert_eq!(reply["ok"]["exit_code"], i, "{reply}");
        let text = std::fs::read(&out).expect("output");
        assert_eq!(text.len(), 1000, "output is capped");
        assert!(text.starts_with(format!("job{i}\n").as_bytes()));
        assert!(
            reply["ok"]["output_dropped_bytes"][0]
                .as_u64()
                .expect("dropped")
                > 0
        );
    }
    writeln!(input, "{{\"image\": \"no-such-image\"}}").expect("send");
    let reply: serde_json::Value =
        serde_json::from_str(&replies.next().expect("reply").expect("line")).expect("json");
    assert!(
        reply["error"]
            .as_str()
            .expect("error")
            .contains("no-such-image"),
        "{reply}"
    );
    drop(input);
    assert!(child.wait().expect("wait").success());
    assert!(e.state_dirs().is_empty());
    assert!(e.job_cgroups().is_empty());
}
