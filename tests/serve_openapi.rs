//! `scheduler/openapi.json` against the code: (a) its (path, method) pairs
//! are exactly those the routers in `scheduler/src/api/*.rs` declare; (b) a
//! live worker serves the file at `/v1/openapi.json` and routes every
//! operation in it; (c) real responses (submit, get, wait, list, batch,
//! 400, 404, 409, the other resources' lists) validate against the
//! operation's response schema, and their status codes are documented.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use regex::Regex;
use serde_json::{json, Map, Value};
use support::serve::{Worker, IMAGE};

const METHODS: [&str; 4] = ["get", "post", "put", "delete"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn spec_text() -> String {
    std::fs::read_to_string(repo().join("scheduler/openapi.json")).expect("read openapi.json")
}

fn spec() -> Value {
    serde_json::from_str(&spec_text()).expect("openapi.json is JSON")
}

/// Every (path, method) the spec documents.
fn spec_ops(spec: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for m in item.as_object().expect("path item").keys() {
            if METHODS.contains(&m.as_str()) {
                ops.insert((path.clone(), m.clone()));
            }
        }
    }
    ops
}

/// The index just past the parenthesis closing the one open before `from`.
fn close_paren(s: &str, from: usize) -> usize {
    let mut depth = 1;
    let mut in_str = false;
    let b = s.as_bytes();
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'\\' if in_str => i += 1,
            b'"' => in_str = !in_str,
            b'(' if !in_str => depth += 1,
            b')' if !in_str => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!("unbalanced .route( at byte {from}");
}

/// Every (path, method) the routers declare: each `.route("PATH", EXPR)`
/// in `scheduler/src/api/*.rs`, with each `get(`/`post(`/`put(`/`delete(`
/// of EXPR (a method router and its chained `.get(` ...).
fn routed_ops() -> BTreeSet<(String, String)> {
    let route = Regex::new(r#"\.route\(\s*"([^"]+)"\s*,"#).expect("regex");
    let method = Regex::new(r"(?:^|[^A-Za-z0-9_])(get|post|put|delete)\(").expect("regex");
    let dir = repo().join("scheduler/src/api");
    let mut ops = BTreeSet::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("read api dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "api sources: {files:?}");
    for f in files {
        let src = std::fs::read_to_string(&f).expect("read source");
        for c in route.captures_iter(&src) {
            let path = c[1].to_string();
            let start = c.get(0).expect("match").end();
            let end = close_paren(&src, start);
            let expr = &src[start..end - 1];
            let before = ops.len();
            for m in method.captures_iter(expr) {
                ops.insert((path.clone(), m[1].to_string()));
            }
            assert!(
                ops.len() > before,
                "{}: no method found for route {path}: {expr}",
                f.display()
            );
        }
    }
    ops
}

#[test]
fn test_spec_matches_routes() {
    let spec = spec();
    assert_eq!(spec["openapi"], "3.0.3");
    let documented = spec_ops(&spec);
    let routed = routed_ops();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routes missing from scheduler/openapi.json: {undocumented:?}\n\
         operations in scheduler/openapi.json no router serves: {unrouted:?}"
    );
    // Every operation has an id, and every $ref resolves.
    for (path, m) in &documented {
        let op = &spec["paths"][path][m];
        assert!(op["operationId"].is_string(), "{m} {path}: no operationId");
        assert!(op["responses"].is_object(), "{m} {path}: no responses");
    }
    let refs = Regex::new(r##""\$ref":\s*"#/components/(\w+)/(\w+)""##).expect("regex");
    let text = spec_text();
    for c in refs.captures_iter(&text) {
        assert!(
            spec["components"][&c[1]][&c[2]].is_object(),
            "dangling $ref #/components/{}/{}",
            &c[1],
            &c[2]
        );
    }
}

/// An OpenAPI 3.0 schema as JSON Schema 2020-12: `nullable` as a `null`
/// type, boolean `exclusiveMinimum`/`exclusiveMaximum` as numbers.
fn to_json_schema(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(to_json_schema).collect()),
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, v) in o {
                // Property names may be anything; only schema keywords change.
                if k == "properties" {
                    let props = v
                        .as_object()
                        .expect("properties")
                        .iter()
                        .map(|(k, v)| (k.clone(), to_json_schema(v)))
                        .collect();
                    out.insert(k.clone(), Value::Object(props));
                } else {
                    out.insert(k.clone(), to_json_schema(v));
                }
            }
            if out.remove("nullable") == Some(Value::Bool(true)) {
                if let Some(Value::String(t)) = out.get("type").cloned() {
                    out.insert("type".into(), json!([t, "null"]));
                }
            }
            for (ex, bound) in [
                ("exclusiveMinimum", "minimum"),
                ("exclusiveMaximum", "maximum"),
            ] {
                match out.get(ex) {
                    Some(Value::Bool(true)) => {
                        let b = out.remove(bound).expect("bound for exclusive");
                        out.insert(ex.into(), b);
                    }
                    Some(Value::Bool(false)) => {
                        out.remove(ex);
                    }
                    _ => {}
                }
            }
            Value::Object(out)
        }
        v => v.clone(),
    }
}

/// Check one real response against the spec: `status` is documented for
/// `method path` (the spec's path template), and a JSON body validates
/// against its schema.
fn check(spec: &Value, method: &str, path: &str, status: u16, body: &Value) {
    let op = &spec["paths"][path][method.to_lowercase()];
    assert!(op.is_object(), "{method} {path} not in the spec");
    let resp = &op["responses"][status.to_string()];
    assert!(
        resp.is_object(),
        "{method} {path}: status {status} is not documented: {body}"
    );
    let resp = match resp["$ref"].as_str() {
        Some(r) => {
            let name = r.rsplit('/').next().expect("ref name");
            &spec["components"]["responses"][name]
        }
        None => resp,
    };
    let Some(schema) = resp["content"]["application/json"]["schema"].as_object() else {
        return;
    };
    let mut doc = to_json_schema(&Value::Object(schema.clone()));
    doc["components"] = json!({ "schemas": to_json_schema(&spec["components"]["schemas"]) });
    doc["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    let v = jsonschema::draft202012::new(&doc)
        .unwrap_or_else(|e| panic!("{method} {path} {status}: bad schema: {e}"));
    let errors: Vec<String> = v
        .iter_errors(body)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: the response does not match the spec:\n{}\n{body:#}",
        errors.join("\n")
    );
}

fn unique_label(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("openapi-{what}-{}-{nanos:x}", std::process::id())
}

#[test]
fn test_served_spec_routes_and_responses() {
    let Some(w) = Worker::start(&[]) else {
        eprintln!("skipped: this host cannot run jobs");
        return;
    };
    let spec = spec();

    // (b) The served document is the file.
    let (st, served) = w.call("GET", "/v1/openapi.json", None);
    assert_eq!(st, 200, "{served}");
    assert_eq!(served, spec, "GET /v1/openapi.json differs from the file");

    // Every operation is routed: never the fallback 404 nor a 405.
    for (path, m) in spec_ops(&spec) {
        let concrete = path
            .replace("{id}", "j-00000000deadbeef")
            .replace("{name}", "openapi-nope");
        let method = m.to_uppercase();
        let body = matches!(m.as_str(), "post" | "put").then(|| json!({}));
        let (st, v) = w.call(&method, &concrete, body.as_ref());
        assert_ne!(st, 405, "{method} {concrete}: {v}");
        assert!(
            !(st == 404 && v["error"] == "no such route"),
            "{method} {concrete}: not routed: {v}"
        );
        assert!(st < 500, "{method} {concrete}: {st} {v}");
        // Whatever it answered must be documented (and match if JSON).
        if v.is_object() {
            check(&spec, &method, &path, st, &v);
        }
    }
    // The fallbacks are what the spec says of unknown paths and methods.
    let (st, v) = w.call("GET", "/v1/nope", None);
    assert_eq!((st, v["error"].as_str()), (404, Some("no such route")));
    let (st, v) = w.call("PATCH", "/v1/jobs", None);
    assert_eq!(st, 405, "{v}");

    // (c) Real responses against their schemas.
    let label = unique_label("real");
    let job = json!({
        "image": IMAGE,
        "command": ["sh", "-c", "echo hi; echo oops >&2"],
        "label": label,
        "priority": 2,
        "memory": "64m",
        "payload": "some data",
        "webhook": "http://127.0.0.1:9/openapi-hook",
    });
    let (st, v) = w.call("POST", "/v1/jobs", Some(&job));
    assert_eq!(st, 201, "{v}");
    check(&spec, "POST", "/v1/jobs", st, &v);
    let id = v["id"].as_str().expect("id").to_string();

    let (st, v) = w.call("GET", &format!("/v1/jobs/{id}/wait?timeout=60"), None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["state"], "complete", "{v}\n{}", w.log());
    check(&spec, "GET", "/v1/jobs/{id}/wait", st, &v);

    let (st, v) = w.call("GET", &format!("/v1/jobs/{id}"), None);
    assert_eq!(st, 200, "{v}");
    assert!(v["attempt_list"].is_array(), "{v}");
    assert!(v["webhook_deliveries"].is_array(), "{v}");
    check(&spec, "GET", "/v1/jobs/{id}", st, &v);

    let (st, v) = w.call("GET", &format!("/v1/jobs?label={label}"), None);
    assert_eq!(st, 200, "{v}");
    assert!(v["next"].is_null(), "{v}");
    check(&spec, "GET", "/v1/jobs", st, &v);
    let (st, v) = w.call("GET", "/v1/jobs?limit=1", None);
    assert_eq!(st, 200, "{v}");
    assert!(v["next"].is_string(), "{v}");
    check(&spec, "GET", "/v1/jobs", st, &v);

    let batch = json!({ "jobs": [
        { "image": IMAGE, "command": ["true"], "label": label, "delay": 3600 },
        { "image": IMAGE, "command": ["true"], "label": label, "delay": 3600,
          "idempotency_key": unique_label("key") },
    ]});
    let (st, v) = w.call("POST", "/v1/jobs", Some(&batch));
    assert_eq!(st, 201, "{v}");
    check(&spec, "POST", "/v1/jobs", st, &v);
    let delayed = v["jobs"][0]["id"].as_str().expect("id").to_string();

    // Cancel a delayed job (200), then again (409).
    let (st, v) = w.call("POST", &format!("/v1/jobs/{delayed}/cancel"), None);
    assert_eq!(st, 200, "{v}");
    check(&spec, "POST", "/v1/jobs/{id}/cancel", st, &v);
    let (st, v) = w.call("POST", &format!("/v1/jobs/{delayed}/cancel"), None);
    assert_eq!(st, 409, "{v}");
    check(&spec, "POST", "/v1/jobs/{id}/cancel", st, &v);

    // 400s, each naming the field.
    for (bad, field) in [
        (json!({ "image": IMAGE, "priority": 7 }), "priority"),
        (json!({ "image": IMAGE, "bogus": 1 }), ""),
        (
            json!({ "jobs": [{ "image": IMAGE, "timeout": 0 }] }),
            "jobs[0].timeout",
        ),
        (json!({ "command": ["true"] }), "image"),
    ] {
        let (st, v) = w.call("POST", "/v1/jobs", Some(&bad));
        assert_eq!(st, 400, "{bad}: {v}");
        if !field.is_empty() {
            assert_eq!(v["field"], field, "{bad}: {v}");
        }
        check(&spec, "POST", "/v1/jobs", st, &v);
    }
    for q in ["state=bogus", "limit=0", "bogus=1"] {
        let (st, v) = w.call("GET", &format!("/v1/jobs?{q}"), None);
        assert_eq!(st, 400, "{q}: {v}");
        check(&spec, "GET", "/v1/jobs", st, &v);
    }
    let (st, v) = w.call("GET", &format!("/v1/jobs/{id}/log?stream=both"), None);
    assert_eq!(st, 400, "{v}");
    check(&spec, "GET", "/v1/jobs/{id}/log", st, &v);
    let (st, v) = w.call("GET", &format!("/v1/jobs/{id}/log?stream=stderr"), None);
    assert_eq!((st, v), (200, json!("oops\n")));

    // 404s.
    let (st, v) = w.call("GET", "/v1/jobs/j-nope", None);
    assert_eq!(st, 404, "{v}");
    check(&spec, "GET", "/v1/jobs/{id}", st, &v);
    let (st, v) = w.call("GET", "/v1/hooks/nope", None);
    assert_eq!(st, 404, "{v}");
    check(&spec, "GET", "/v1/hooks/{name}", st, &v);

    // The other resources.
    let (st, v) = w.call(
        "PUT",
        "/v1/hooks/openapi",
        Some(&json!({ "image": IMAGE, "command": ["true"], "label": label })),
    );
    assert_eq!(st, 201, "{v}");
    check(&spec, "PUT", "/v1/hooks/{name}", st, &v);
    for (path, template) in [
        ("/v1/hooks", "/v1/hooks"),
        ("/v1/hooks/openapi", "/v1/hooks/{name}"),
        ("/v1/code", "/v1/code"),
        ("/v1/schedules", "/v1/schedules"),
        ("/healthz", "/healthz"),
    ] {
        let (st, v) = w.call("GET", path, None);
        assert_eq!(st, 200, "{path}: {v}");
        check(&spec, "GET", template, st, &v);
    }
    let (st, v) = w.call(
        "POST",
        "/v1/schedules",
        Some(&json!({
            "job": { "image": IMAGE, "command": ["true"], "label": label },
            "run_every": 3600, "run_times": 1,
            "start_at": 4_000_000_000_000i64,
        })),
    );
    assert_eq!(st, 201, "{v}");
    check(&spec, "POST", "/v1/schedules", st, &v);
    let sid = v["id"].as_str().expect("schedule id").to_string();
    let (st, v) = w.call("GET", &format!("/v1/schedules/{sid}"), None);
    assert_eq!(st, 200, "{v}");
    check(&spec, "GET", "/v1/schedules/{id}", st, &v);
    let (st, v) = w.call("DELETE", &format!("/v1/schedules/{sid}"), None);
    assert_eq!(st, 200, "{v}");
    check(&spec, "DELETE", "/v1/schedules/{id}", st, &v);
    let (st, v) = w.call("DELETE", "/v1/hooks/openapi", None);
    assert_eq!(st, 200, "{v}");
    check(&spec, "DELETE", "/v1/hooks/{name}", st, &v);

    // Retry the cancelled job (no webhook): 200, queued again.
    let (st, v) = w.call("POST", &format!("/v1/jobs/{delayed}/retry"), None);
    assert_eq!(st, 200, "{v}");
    check(&spec, "POST", "/v1/jobs/{id}/retry", st, &v);
}

/// The issue's API fuzzing: schemathesis (`.ci/schemathesis`) against a live
/// worker over TCP with its token finds no 5xx, no undocumented status and
/// no response that violates the spec.
#[test]
fn test_schemathesis_finds_no_server_error_or_spec_violation() {
    let st = std::path::Path::new("/opt/schemathesis/bin/schemathesis");
    let on_path = support::env::have("schemathesis");
    if !support::privilege::prerequisite(
        st.exists() || on_path,
        "schemathesis (.ci/setup-debian installs it)",
    ) {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let dir = tempfile::tempdir().expect("tmp");
    let token = dir.path().join("token");
    std::fs::write(&token, "schemathesis-token\n").expect("token");
    let addr = format!("127.0.0.1:{port}");
    let Some(w) = Worker::start(&[
        "--listen",
        &addr,
        "--token-file",
        token.to_str().expect("utf8"),
    ]) else {
        return;
    };
    let out = std::process::Command::new("bash")
        .arg(support::env::repo().join(".ci/schemathesis"))
        .arg(&addr)
        .arg(&token)
        .env("MAX_EXAMPLES", "20")
        .current_dir(dir.path())
        .output()
        .expect("run .ci/schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis failed:\n{text}\nworker log:\n{}",
        w.log()
    );
}
