//! Code packages through a real `skiff serve`: a directory pushed with
//! `skiff code push` becomes one layer above a base image, jobs name the
//! package, a new push replaces it, and a hostile tar stays inside.

mod support;

use std::process::Command;

use serde_json::json;
use support::serve::{Worker, IMAGE};
use support::tar::{layer, Entry};

fn skiff(w: &Worker, args: &[&str]) -> std::process::Output {
    Command::new(support::env::skiff_bin())
        .arg("--root")
        .arg(w.root())
        .args(args)
        .output()
        .expect("run skiff")
}

/// `skiff code push --json` of `dir` as package `name` with the command
/// `sh /app/run.sh` and `extra` options; asserts it succeeded; its JSON.
fn push_sh(w: &Worker, extra: &[&str], name: &str, dir: &std::path::Path) -> serde_json::Value {
    let mut args = vec!["code", "push", "--json", "--image", IMAGE];
    args.extend(["--command", r#"["sh","/app/run.sh"]"#]);
    args.extend(extra);
    args.extend([name, dir.to_str().expect("utf8")]);
    let out = skiff(w, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn test_pushed_code_runs_above_its_base_image() {
    let Some(w) = Worker::start(&[]) else { return };
    let src = tempfile::tempdir().expect("tmp");
    std::fs::write(
        src.path().join("run.sh"),
        "echo \"code v1: $(cat /app/data.txt)\"\n",
    )
    .expect("write");
    std::fs::write(src.path().join("data.txt"), "hello").expect("write");
    let v = push_sh(&w, &[], "app", src.path());
    // The base's layers are reused; only the code layer is unpacked.
    assert_eq!(v["layers_unpacked"], 1, "{v}");
    assert!(v["layers_reused"].as_u64().unwrap_or(0) >= 1, "{v}");

    // The package's default command, from the CLI.
    let out = skiff(&w, &["submit", "--wait", "code:app"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "code v1: hello\n");
    // A command of the job's own, through the API; the base image's files are there.
    let j = w.submit(
        json!({ "code": "app", "command": ["sh", "-c", "cat /app/data.txt; ls /bin/busybox"] }),
    );
    let id = j["id"].as_str().expect("id");
    assert_eq!(w.wait(id, 60)["state"], "complete");
    let (_, log) = w.call("GET", &format!("/v1/jobs/{id}/log"), None);
    assert_eq!(log, "hello/bin/busybox\n");

    // A new push replaces the code.
    std::fs::write(src.path().join("data.txt"), "v2").expect("write");
    let out = skiff(
        &w,
        &[
            "code",
            "push",
            "--image",
            IMAGE,
            "--command",
            r#"["sh","/app/run.sh"]"#,
            "app",
            src.path().to_str().expect("utf8"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = skiff(&w, &["submit", "--wait", "code:app"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "code v1: v2\n");

    let out = skiff(&w, &["code", "ls"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("app"),
        "{out:?}"
    );
    let out = skiff(&w, &["code", "rm", "app"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (st, e) = w.call("POST", "/v1/jobs", Some(&json!({ "code": "app" })));
    assert_eq!(st, 400, "{e}");
    assert_eq!(e["field"], "code");
}

#[test]
fn test_bad_code_packages_are_refused_and_hostile_tars_stay_inside() {
    let Some(w) = Worker::start(&[]) else { return };
    let push = |name: &str, query: &str, body: &[u8]| {
        w.call_raw("POST", &format!("/v1/code/{name}?{query}"), body)
    };
    let tar = layer(&[Entry::File("app/x".into(), b"x".to_vec(), 0o644)]);
    for (name, query, body, field) in [
        ("Bad Name", format!("image={IMAGE}"), tar.clone(), "name"),
        ("ok", String::new(), tar.clone(), "image"),
        ("ok", "image=no-such-image".into(), tar.clone(), "image"),
        (
            "ok",
            format!("image={IMAGE}&command=notjson"),
            tar.clone(),
            "command",
        ),
        ("ok", format!("image={IMAGE}"), Vec::new(), "body"),
        (
            "ok",
            format!("image={IMAGE}"),
            b"this is not a tar archive at all".repeat(40),
            "body",
        ),
    ] {
        let name = name.replace(' ', "%20");
        let (st, e) = push(&name, &query, &body);
        assert_eq!(st, 400, "{name} {query}: {e}");
        assert_eq!(e["field"], field, "{e}");
    }
    let (st, e) = push("ok", &format!("image={IMAGE}&bogus=1"), &tar);
    assert_eq!(st, 400, "{e}");

    // A symlink to the host's /etc, then a file through it.
    let marker = format!("skiff-code-escape-{}", std::process::id());
    let hostile = layer(&[
        Entry::Symlink("app".into(), "/etc".into()),
        Entry::File(format!("app/{marker}"), b"pwned".to_vec(), 0o644),
    ]);
    let (st, _) = push("evil", &format!("image={IMAGE}"), &hostile);
    assert!(st == 201 || st == 400, "status {st}");
    assert!(
        !std::path::Path::new("/etc").join(&marker).exists(),
        "the code layer wrote the host's /etc"
    );
    // Nothing of the refused pushes was kept.
    let (_, l) = w.call("GET", "/v1/code", None);
    let names: Vec<&str> = l["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(names.iter().all(|n| *n == "evil"), "{names:?}");
}

/// `skiff code push --max-concurrency 1`: the package's jobs run one at a
/// time while another image's job runs beside them.
#[test]
fn test_code_package_max_concurrency_caps_the_package_only() {
    let Some(w) = Worker::start(&["--launchers", "2"]) else {
        return;
    };
    let src = tempfile::tempdir().expect("tmp");
    std::fs::write(src.path().join("run.sh"), "sleep 1\n").expect("write");
    let v = push_sh(&w, &["--max-concurrency", "1"], "capped", src.path());
    assert_eq!(v["package"]["max_concurrency"], 1, "{v}");
    let (st, e) = w.call_raw("POST", "/v1/code/bad?image=x&max_concurrency=0", b"");
    assert_eq!(st, 400, "{e}");
    assert_eq!(e["field"], "max_concurrency", "{e}");

    let a = w.submit(json!({ "code": "capped" }));
    let b = w.submit(json!({ "code": "capped" }));
    let other = w.submit(json!({ "image": IMAGE, "command": ["sleep", "1"] }));
    let span = |j: &serde_json::Value| {
        let a = &j["attempt_list"][0];
        (
            a["started_at"].as_i64().expect("s"),
            a["ended_at"].as_i64().expect("e"),
        )
    };
    let id = |j: &serde_json::Value| j["id"].as_str().expect("id").to_string();
    let (a, b, other) = (
        w.wait(&id(&a), 60),
        w.wait(&id(&b), 60),
        w.wait(&id(&other), 60),
    );
    for j in [&a, &b, &other] {
        assert_eq!(j["state"], "complete", "{j}");
    }
    let ((s1, e1), (s2, e2), (s3, _)) = (span(&a), span(&b), span(&other));
    assert!(
        e1 <= s2 || e2 <= s1,
        "package capped ran two at once: {s1}-{e1} and {s2}-{e2}"
    );
    assert!(
        s3 < e1.max(e2),
        "the other image's job waited: {s3} vs {e1} {e2}"
    );
}
