//! `skiff bench queue` in a small form: 300 jobs in batches of 100 through
//! a real `skiff serve` and through the bare launcher pool, one round of
//! each. Checks the table, the JSON file and that every job completed, and
//! that the private store is gone afterwards; never checks timings.
//!
//! Needs root, overlayfs, cgroups and the vendored busybox image; without
//! them it prints why and skips, unless `SKIFF_REQUIRE_PRIVILEGED=1`.

mod support;

use serde_json::Value;
use support::env::{skiff_on, vendor_archive};
use support::privilege::gate;
use support::run::missing_prerequisite;

const JOBS: u64 = 300;

#[test]
fn bench_queue_quick_run_completes_every_job_and_reports() {
    if !gate(missing_prerequisite()) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let out_dir = tmp.path().join("out");
    let work = tmp.path().join("work");
    let output = skiff_on(&tmp.path().join("unused-store"))
        .args(["bench", "queue", "--quick", "--quiet"])
        .args(["--jobs", &JOBS.to_string(), "--batch", "100"])
        .arg("--image")
        .arg(vendor_archive("busybox"))
        .arg("--workdir")
        .arg(&work)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .expect("run skiff");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "skiff bench queue failed: {}: {}\n{stdout}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    for word in [
        "skiff serve (HTTP)",
        "bare launcher pool",
        "medians:",
        "goals",
    ] {
        assert!(stdout.contains(word), "{word} missing from:\n{stdout}");
    }
    assert!(
        !tmp.path().join("unused-store").exists(),
        "the --root store was touched"
    );
    assert!(
        !work.join("queue").join("store").exists(),
        "the private store was left behind"
    );

    let v: Value = serde_json::from_slice(
        &std::fs::read(out_dir.join("queue.json")).expect("queue.json exists"),
    )
    .expect("queue.json parses");
    assert_eq!(v["benchmark"], "queue");
    assert_eq!(v["jobs"], JOBS);
    assert_eq!(v["batch"], 100);
    assert_eq!(v["launchers"], 2);
    assert_eq!(v["rounds"], 1);
    assert_eq!(v["command"], serde_json::json!(["true"]));
    for key in ["date", "host", "image_id", "summary", "goals"] {
        assert!(v.get(key).is_some(), "queue.json lacks {key}");
    }

    let serve = v["serve"].as_array().expect("serve rounds");
    assert_eq!(serve.len(), 1);
    let s = &serve[0];
    assert_eq!(s["completed"], JOBS, "{s}");
    assert_eq!(s["failed"], 0, "{s}");
    assert_eq!(s["listed_complete"], JOBS, "{s}");
    assert_eq!(s["enqueue"]["jobs"], JOBS);
    assert_eq!(s["enqueue"]["batches"], 3);
    assert!(s["enqueue"]["jobs_per_s"].as_f64().is_some_and(|r| r > 0.0));
    for key in ["submit_to_start_ms", "submit_to_complete_ms", "run_ms"] {
        assert!(s[key]["p50"].as_f64().is_some(), "{key}: {s}");
        assert!(s[key]["p99"].as_f64().is_some(), "{key}: {s}");
    }
    assert!(s["steady_jobs_per_s"].as_f64().is_some_and(|r| r > 0.0));
    assert!(
        s["worker_exit"]
            .as_str()
            .is_some_and(|e| e.contains("exit status: 0")),
        "{s}"
    );

    let pool = v["pool"].as_array().expect("pool rounds");
    assert_eq!(pool.len(), 1);
    let p = &pool[0];
    assert_eq!(p["completed"], JOBS, "{p}");
    assert_eq!(p["failed"], 0, "{p}");
    assert!(p["steady_jobs_per_s"].as_f64().is_some_and(|r| r > 0.0));
    assert_eq!(p["launcher_exits"].as_array().map(Vec::len), Some(2));

    let sum = &v["summary"];
    assert_eq!(sum["failed"], 0);
    for key in [
        "serve_jobs_per_s",
        "pool_jobs_per_s",
        "ratio",
        "overhead",
        "enqueue_jobs_per_s",
    ] {
        assert!(sum[key].as_f64().is_some(), "summary lacks {key}: {sum}");
    }
    let goals = v["goals"].as_array().expect("goals");
    assert_eq!(goals.len(), 2);
    for g in goals {
        assert!(g["met"].is_boolean(), "{g}");
    }
}

/// `skiff bench queue --noop`: labelled as no-op jobs in the table and the
/// JSON, a round of each engine on a private PostgreSQL cluster, every
/// figure present; the cluster is gone afterwards. Never checks timings.
/// The benchmarks that start a PostgreSQL cluster run one at a time:
/// each checks afterwards that no cluster of the benchmark's is left, which
/// the other's would fail.
static POSTGRES: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn bench_queue_noop_is_labelled_and_measures_both_engines() {
    let _one_at_a_time = POSTGRES.lock().unwrap_or_else(|e| e.into_inner());
    if !gate(missing_prerequisite()) {
        return;
    }
    if !std::path::Path::new("/usr/lib/postgresql").exists() {
        assert!(
            std::env::var("SKIFF_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
            "PostgreSQL is not installed"
        );
        eprintln!("skipped: PostgreSQL is not installed");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let out_dir = tmp.path().join("out");
    let output = skiff_on(&tmp.path().join("unused-store"))
        .args(["bench", "queue", "--noop", "--quick", "--quiet"])
        .args(["--jobs", "500", "--batch", "100"])
        .arg("--workdir")
        .arg(tmp.path().join("work"))
        .arg("--out")
        .arg(&out_dir)
        .output()
        .expect("run skiff");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "skiff bench queue --noop failed: {}: {}\n{stdout}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("NO-OP JOBS"), "unlabelled:\n{stdout}");
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("queue-noop.json")).expect("queue-noop.json"),
    )
    .expect("json");
    assert!(v["kind"]
        .as_str()
        .is_some_and(|k| k.starts_with("NO-OP JOBS")));
    let rounds = v["rounds"].as_array().expect("rounds");
    let engines: Vec<&str> = rounds.iter().filter_map(|r| r["engine"].as_str()).collect();
    assert_eq!(engines, ["sqlite", "postgres"]);
    for r in rounds {
        for f in ["enqueue_jobs_per_s", "dequeue_jobs_per_s"] {
            assert!(r[f].as_f64().is_some_and(|x| x > 0.0), "{f} in {r}");
        }
        assert!(r["submit_to_start_ms"]["p50"].is_number(), "{r}");
    }
    let pg_left = std::process::Command::new("pgrep")
        .args(["-f", "skiff-pg-"])
        .output()
        .expect("pgrep");
    assert!(
        pg_left.stdout.is_empty(),
        "a PostgreSQL of the benchmark's is still running: {}",
        String::from_utf8_lossy(&pg_left.stdout)
    );
}

/// `skiff bench queue --fleet`: a round of one and of two workers on a
/// private PostgreSQL cluster, every job completed, both sizes measured
/// with a ratio to one worker; no store, worker or cluster is left.
/// Never checks timings.
#[test]
fn bench_queue_fleet_measures_each_fleet_size() {
    let _one_at_a_time = POSTGRES.lock().unwrap_or_else(|e| e.into_inner());
    if !gate(missing_prerequisite()) {
        return;
    }
    if !std::path::Path::new("/usr/lib/postgresql").exists() {
        assert!(
            std::env::var("SKIFF_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
            "PostgreSQL is not installed"
        );
        eprintln!("skipped: PostgreSQL is not installed");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let out_dir = tmp.path().join("out");
    let work = tmp.path().join("work");
    let output = skiff_on(&tmp.path().join("unused-store"))
        .args(["bench", "queue", "--fleet", "--quick", "--quiet"])
        .args(["--jobs", "60", "--batch", "20", "--hosts", "2"])
        .arg("--workdir")
        .arg(&work)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .expect("run skiff");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "skiff bench queue --fleet failed: {}: {}\n{stdout}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("ratios, not scaling"), "{stdout}");
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("queue-fleet.json")).expect("queue-fleet.json"),
    )
    .expect("json");
    let sizes = v["sizes"].as_array().expect("sizes");
    assert_eq!(sizes.len(), 2, "{v}");
    for (k, s) in sizes.iter().enumerate() {
        assert_eq!(s["workers"], k + 1, "{s}");
        assert_eq!(s["failed"], 0, "{s}");
        assert!(
            s["steady_jobs_per_s"].as_f64().is_some_and(|x| x > 0.0),
            "{s}"
        );
    }
    assert_eq!(sizes[0]["ratio_to_one"], 1.0, "{v}");
    for r in v["rounds"].as_array().expect("rounds") {
        assert_eq!(r["serve"]["completed"], 60, "{r}");
    }
    let left: Vec<_> = std::fs::read_dir(work.join("queue-fleet"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !left
            .iter()
            .any(|n| n.to_string_lossy().starts_with("store")),
        "stores left: {left:?}"
    );
    let pg_left = std::process::Command::new("pgrep")
        .args(["-f", "skiff-pg-"])
        .output()
        .expect("pgrep");
    assert!(
        pg_left.stdout.is_empty(),
        "a PostgreSQL of the benchmark's is still running: {}",
        String::from_utf8_lossy(&pg_left.stdout)
    );
}
