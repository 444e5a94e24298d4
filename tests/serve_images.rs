//! `/v1/images` through a real `skiff serve`: an archive uploaded and
//! imported (then run), the list, and bad archives refused naming the body.

mod support;

use serde_json::json;
use support::serve::Worker;

#[test]
fn test_uploaded_archive_is_imported_listed_and_runs() {
    let Some(w) = Worker::start(&[]) else { return };
    let archive = std::fs::read(support::env::vendor_archive("busybox")).expect("archive");
    let (st, r) = w.call_raw("POST", "/v1/images?tag=uploaded/busybox:1", &archive);
    assert_eq!(st, 201, "{r}");
    assert_eq!(r["images"].as_array().map(Vec::len), Some(1), "{r}");
    let (st, l) = w.call("GET", "/v1/images", None);
    assert_eq!(st, 200, "{l}");
    let tagged = l["images"].as_array().expect("images").iter().any(|i| {
        i["tags"].as_array().is_some_and(|t| {
            t.iter()
                .any(|t| t.as_str().is_some_and(|t| t.contains("uploaded/busybox:1")))
        })
    });
    assert!(tagged, "{l}");
    let j = w.submit(json!({ "image": "uploaded/busybox:1", "command": ["true"] }));
    assert_eq!(
        w.wait(j["id"].as_str().expect("id"), 60)["state"],
        "complete"
    );
}

#[test]
fn test_bad_archives_and_tags_are_refused() {
    let Some(w) = Worker::start(&[]) else { return };
    let (_, before) = w.call("GET", "/v1/images", None);
    for (query, body, field) in [
        (
            "",
            b"definitely not an image archive".repeat(30),
            Some("body"),
        ),
        ("", Vec::new(), Some("body")),
        ("?tag=Bad%20Tag%20!", b"x".to_vec(), Some("tag")),
        ("?bogus=1", b"x".to_vec(), None),
    ] {
        let (st, e) = w.call_raw("POST", &format!("/v1/images{query}"), &body);
        assert_eq!(st, 400, "{query}: {e}");
        if let Some(f) = field {
            assert_eq!(e["field"], f, "{e}");
        }
    }
    let (_, after) = w.call("GET", "/v1/images", None);
    assert_eq!(before, after, "a refused import changed the store");
}

#[test]
fn test_worker_pulls_a_missing_image_once_for_every_job_waiting_for_it() {
    if !support::privilege::gate(support::registry::missing_tools()) {
        return;
    }
    let dir = support::env::test_dir("skiff-serve-pull-");
    let reg = support::registry::Registry::plain(&dir.path().join("reg"));
    let archive = support::env::vendor_archive("busybox");
    reg.push(
        &format!("docker-archive:{}", archive.display()),
        "skiff/busybox:1",
        false,
    );
    let proxy = support::proxy::Proxy::start(&reg.url());
    let image = format!("{}/skiff/busybox:1", proxy.host());

    // Without a registry configured, the job is refused at submit.
    {
        let Some(w) = Worker::start(&[]) else { return };
        let (st, e) = w.call(
            "POST",
            "/v1/jobs",
            Some(&json!({ "image": image, "command": ["true"] })),
        );
        assert_eq!(st, 400, "{e}");
        assert_eq!(e["field"], "image", "{e}");
    }
    let Some(w) = Worker::start(&["--pull", "missing", "--insecure", "--launchers", "3"]) else {
        return;
    };
    let ids: Vec<String> = (0..6)
        .map(|i| {
            let j = w.submit(json!({ "image": image, "command": ["echo", format!("job {i}")] }));
            j["id"].as_str().expect("id").to_string()
        })
        .collect();
    for id in &ids {
        assert_eq!(w.wait(id, 120)["state"], "complete", "{}", w.log());
    }
    let manifest_gets = proxy
        .log()
        .iter()
        .filter(|l| l.contains("/manifests/1"))
        .count();
    assert_eq!(manifest_gets, 1, "one pull for six jobs: {:?}", proxy.log());
    // An image no registry has fails the job, naming it.
    let j = w.submit(
        json!({ "image": format!("{}/skiff/absent:1", proxy.host()), "command": ["true"] }),
    );
    let done = w.wait(j["id"].as_str().expect("id"), 120);
    assert_eq!(done["state"], "error", "{done}");
    let reason = done.to_string();
    assert!(
        reason.contains("skiff/absent:1") && reason.contains("not found"),
        "{done}"
    );
}
