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
