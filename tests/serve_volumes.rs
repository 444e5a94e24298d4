//! Host volumes for API jobs through a real `skiff serve`: off by default,
//! allowed only beneath `--allow-volume` directories, never through a
//! symlink, including one swapped in after the job was accepted.

mod support;

use std::path::Path;

use serde_json::json;
use support::serve::{Worker, IMAGE};

fn id(v: &serde_json::Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

fn log(w: &Worker, j: &serde_json::Value) -> String {
    let (st, out) = w.call("GET", &format!("/v1/jobs/{}/log", id(j)), None);
    assert_eq!(st, 200, "{out}");
    out.as_str().unwrap_or_default().to_string()
}

fn vol(host: &Path, rest: &str) -> String {
    format!("{}:{rest}", host.display())
}

/// Run `sh -c script` with `volume`; assert it completed; its stdout.
fn run_complete(w: &Worker, script: &str, volume: String) -> String {
    let j = w.submit(json!({
        "image": IMAGE,
        "command": ["sh", "-c", script],
        "volumes": [volume],
    }));
    let done = w.wait(&id(&j), 60);
    assert_eq!(done["state"], "complete", "{done}\n{}", w.log());
    log(w, &j)
}

#[test]
fn test_volumes_are_refused_when_the_worker_allows_none() {
    let Some(w) = Worker::start(&[]) else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let (st, v) = w.call(
        "POST",
        "/v1/jobs",
        Some(&json!({"image": IMAGE, "command": ["true"], "volumes": [vol(dir.path(), "/data")]})),
    );
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["field"], "volumes[0]", "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("--allow-volume"),
        "{v}"
    );
    // Malformed items are named too, whatever the worker allows.
    let (st, v) = w.call(
        "POST",
        "/v1/jobs",
        Some(&json!({"image": IMAGE, "volumes": ["relative:/data"]})),
    );
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["field"], "volumes[0]", "{v}");
}

#[test]
fn test_allowed_volumes_mount_read_only_or_read_write_and_nothing_else_does() {
    let allowed = tempfile::tempdir().expect("tmp");
    let outside = tempfile::tempdir().expect("tmp");
    let data = allowed.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::write(data.join("in.txt"), "from the host").expect("write");
    std::fs::write(outside.path().join("secret"), "host secret").expect("write");
    std::os::unix::fs::symlink(outside.path(), allowed.path().join("link")).expect("symlink");
    let allow = allowed.path().to_str().expect("utf8");
    let Some(w) = Worker::start(&["--allow-volume", allow]) else {
        return;
    };

    // Read-only: the job reads the file and cannot write.
    let out = run_complete(
        &w,
        "cat /data/in.txt; echo x > /data/new || echo refused",
        vol(&data, "/data:ro"),
    );
    assert_eq!(out.trim_end(), "from the hostrefused");
    assert!(!data.join("new").exists(), "a read-only volume was written");

    // Read-write: what the job writes is on the host.
    run_complete(&w, "echo written > /data/out.txt", vol(&data, "/data"));
    assert_eq!(
        std::fs::read_to_string(data.join("out.txt")).expect("read"),
        "written\n"
    );

    // Outside, through `..`, or through a symlink: 400 naming the item.
    for (host, want) in [
        (outside.path().to_path_buf(), "not beneath"),
        (allowed.path().join("data/../../x"), "`..`"),
        (allowed.path().join("link"), "symlink"),
        (allowed.path().join("link/secret"), "symlink"),
        (allowed.path().join("missing"), "does not exist"),
    ] {
        let (st, v) = w.call(
            "POST",
            "/v1/jobs",
            Some(&json!({"image": IMAGE, "command": ["true"],
                         "volumes": [vol(&data, "/ok"), vol(&host, "/data")]})),
        );
        assert_eq!(st, 400, "{}: {v}", host.display());
        assert_eq!(v["field"], "volumes[1]", "{}: {v}", host.display());
        assert!(
            v["error"].as_str().unwrap_or_default().contains(want),
            "{}: {v}",
            host.display()
        );
    }
}

/// A directory accepted at submit and replaced by a symlink to a host
/// directory before the job starts: the launch opens it again, refuses,
/// and the job never sees the host's file.
#[test]
fn test_a_symlink_swapped_in_after_submit_is_refused_at_launch() {
    let allowed = tempfile::tempdir().expect("tmp");
    let outside = tempfile::tempdir().expect("tmp");
    let data = allowed.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::write(outside.path().join("secret"), "host secret").expect("write");
    let allow = allowed.path().to_str().expect("utf8");
    let Some(w) = Worker::start(&["--allow-volume", allow]) else {
        return;
    };
    let j = w.submit(json!({
        "image": IMAGE,
        "command": ["cat", "/data/secret"],
        "volumes": [vol(&data, "/data:ro")],
        "delay": 2,
    }));
    assert_eq!(w.job(&id(&j))["state"], "delayed", "{j}");
    std::fs::rename(&data, allowed.path().join("was-data")).expect("rename");
    std::os::unix::fs::symlink(outside.path(), &data).expect("symlink");
    let done = w.wait(&id(&j), 60);
    assert_eq!(done["state"], "error", "{done}\n{}", w.log());
    let reason = done["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("volumes[0]") && reason.contains("symlink"),
        "{done}"
    );
    assert!(
        !log(&w, &j).contains("host secret"),
        "the job read the host"
    );
}
