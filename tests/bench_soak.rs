//! `skiff bench soak` in its smallest form: 20 jobs through 2 launchers, a
//! sample every 10. Checks the sample lines, the summary, the verdict and
//! the JSON file; never checks timings.
//!
//! Needs root, overlayfs, cgroups and the vendored busybox image; without
//! them it prints why and skips, unless `SKIFF_REQUIRE_PRIVILEGED=1`.

mod support;

use serde_json::Value;
use support::env::{skiff_on, vendor_archive};
use support::privilege::gate;
use support::run::missing_prerequisite;

#[test]
fn bench_soak_smallest_run_samples_and_finds_no_leak() {
    if !gate(missing_prerequisite()) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let json = tmp.path().join("out").join("soak.json");
    let output = skiff_on(&tmp.path().join("unused-store"))
        .args(["bench", "soak", "--jobs", "20", "--every", "10", "--quiet"])
        .arg("--image")
        .arg(vendor_archive("busybox"))
        .arg("--workdir")
        .arg(tmp.path().join("work"))
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run skiff");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "skiff bench soak failed: {}: {}\n{stdout}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );

    // A baseline line, one per 10 jobs, the summary and the verdict.
    let samples: Vec<&str> = stdout.lines().filter(|l| l.starts_with("jobs ")).collect();
    assert_eq!(samples.len(), 3, "baseline + 2 samples in:\n{stdout}");
    for (line, n) in samples.iter().zip(["0", "10", "20"]) {
        assert_eq!(line.split_whitespace().nth(1), Some(n), "{line}");
        for word in [
            "rss", "fds", "mounts", "cgroups", "run", "leases", "failed 0",
        ] {
            assert!(line.contains(word), "{word} missing from {line}");
        }
    }
    assert!(stdout.contains("latency median"), "{stdout}");
    assert!(stdout.contains("leaks: none"), "{stdout}");
    assert!(stdout.contains("soak: OK"), "{stdout}");

    // The JSON file.
    let v: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("soak.json exists")).expect("parses");
    assert_eq!(v["benchmark"], "soak");
    assert_eq!(v["jobs"], 20);
    assert_eq!(v["launchers"], 2);
    for key in ["date", "host", "job_mix", "baseline", "samples", "summary"] {
        assert!(v.get(key).is_some(), "soak.json lacks {key}");
    }
    let samples = v["samples"].as_array().expect("samples is a list");
    assert_eq!(samples.len(), 2);
    for s in samples {
        let launchers = s["launchers"].as_array().expect("launchers is a list");
        assert_eq!(launchers.len(), 2);
        for l in launchers {
            assert!(l["rss_kib"].as_u64().is_some_and(|r| r > 0), "{l}");
            assert!(l["fds"].as_u64().is_some_and(|f| f > 0), "{l}");
            assert!(l["mounts"].as_u64().is_some_and(|m| m > 0), "{l}");
        }
    }
    let summary = &v["summary"];
    assert_eq!(summary["jobs"], 20);
    assert_eq!(summary["failures"], 0);
    assert_eq!(summary["leaks"].as_array().map(Vec::len), Some(0));
    for key in ["job_cgroups_left", "run_entries_left", "leases_left"] {
        assert_eq!(summary[key], 0, "{key}");
    }
    assert!(summary["latency_median_ms"].as_f64().is_some());
    assert!(summary["latency_p99_ms"].as_f64().is_some());
}
