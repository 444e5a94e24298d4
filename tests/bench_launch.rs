//! `skiff bench launch` in its smallest form: 3 rounds, skiff, the warm
//! pool and the floor only, no throughput. Checks that the table prints and
//! that the results file and the CDF plot (SVG and PNG) exist and parse,
//! with the warm pool's hit counts and the skiff contenders' CPU breakdown
//! by process; never checks timings.
//!
//! Needs root, overlayfs, cgroups and the vendored busybox image; without
//! them it prints why and skips, unless `SKIFF_REQUIRE_PRIVILEGED=1`.

mod support;

use std::path::Path;

use serde_json::Value;
use support::env::{num, skiff_on, vendor_archive};
use support::privilege::gate;
use support::run::missing_prerequisite;

/// What a bench needs: a `skiff run` host (root, overlayfs, cgroups, the
/// vendored busybox) and util-linux's `unshare`, or skip or fail.
fn prerequisites() -> bool {
    gate(missing_prerequisite().or_else(|| {
        (!Path::new("/usr/bin/unshare").exists() && !Path::new("/bin/unshare").exists())
            .then(|| "unshare (util-linux) is not installed".to_string())
    }))
}

#[test]
fn bench_launch_smallest_run_writes_table_json_and_plots() {
    if !prerequisites() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let output = skiff_on(&tmp.path().join("unused-store"))
        .args([
            "bench",
            "launch",
            "--rounds",
            "3",
            "--contenders",
            "skiff,skiff-warm,floor",
        ])
        .args(["--no-throughput", "--warmup", "1", "--quiet"])
        .arg("--image")
        .arg(vendor_archive("busybox"))
        .arg("--workdir")
        .arg(tmp.path().join("work"))
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run skiff");
    remove_store_cgroups(&tmp.path().join("work"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "skiff bench launch failed: {}: {}\n{stdout}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );

    // The table: a header, one row per contender, the goals.
    let header = stdout
        .lines()
        .find(|l| l.starts_with("contender"))
        .unwrap_or_else(|| panic!("no table header in:\n{stdout}"));
    for col in ["median", "p95", "p99", "vs skiff", "vs floor"] {
        assert!(header.contains(col), "header lacks {col}: {header}");
    }
    assert!(
        header.contains("warm hits"),
        "header lacks warm hits: {header}"
    );
    for name in ["skiff ", "skiff-warm ", "floor "] {
        assert!(
            stdout.lines().any(|l| l.starts_with(name)),
            "no row for {name} in:\n{stdout}"
        );
    }
    assert!(stdout.contains("goals (issue 3)"), "{stdout}");
    assert!(
        stdout.contains("cpu per job by process"),
        "no CPU breakdown in:\n{stdout}"
    );

    // The results file.
    let data = std::fs::read(out.join("launch.json")).expect("launch.json exists");
    let v: Value = serde_json::from_slice(&data).expect("launch.json parses");
    assert_eq!(v["benchmark"], "launch");
    assert_eq!(v["schema"], 2);
    assert_eq!(v["rounds"], 3);
    for key in [
        "date",
        "host",
        "host_facts",
        "job",
        "contenders",
        "skipped",
        "phases",
        "throughput",
        "goals",
        "plots",
        "notes",
    ] {
        assert!(v.get(key).is_some(), "launch.json lacks {key}");
    }
    assert!(v["host_facts"]["cgroup_mounts"].is_array());
    let contenders = v["contenders"].as_array().expect("contenders is a list");
    let names: Vec<&str> = contenders
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["skiff", "skiff-warm", "floor"],
        "only the contenders asked for run (skipped: {})",
        v["skipped"]
    );
    for c in contenders {
        assert_eq!(c["samples_ms"].as_array().map(Vec::len), Some(3));
        for key in [
            "median_ms",
            "p95_ms",
            "p99_ms",
            "min_ms",
            "max_ms",
            "ratio_vs_skiff",
            "ratio_vs_floor",
        ] {
            assert!(num(c, key) > 0.0, "{key} of {} is not positive", c["name"]);
        }
        let skiff = c["name"] != "floor";
        // How the jobs used warm sandboxes: every timed launch counted once.
        let warm = &c["warm"];
        if skiff {
            let counts: Vec<u64> = ["hit", "made", "miss", "unknown"]
                .iter()
                .map(|k| {
                    warm[k]
                        .as_u64()
                        .unwrap_or_else(|| panic!("warm.{k} of {}: {warm}", c["name"]))
                })
                .collect();
            assert_eq!(counts.iter().sum::<u64>(), 3, "{}: {warm}", c["name"]);
            if c["name"] == "skiff-warm" {
                assert_eq!(counts[3], 0, "the warm pool reports every job: {warm}");
                assert_eq!(
                    counts[1], 0,
                    "policy prefer makes no sandbox on a job's path"
                );
            }
        } else {
            assert!(warm.is_null(), "floor has no warm counts: {warm}");
        }
        // CPU per job by process: non-negative parts that add up to the total.
        let b = &c["cpu_breakdown"];
        if !skiff {
            assert!(b.is_null(), "floor has no CPU breakdown: {b}");
            continue;
        }
        assert_eq!(b["jobs"], 3, "{}: {b}", c["name"]);
        let total = num(b, "total_ms");
        assert!(total > 0.0, "{}: {b}", c["name"]);
        let parts = b["parts"].as_array().expect("parts is a list");
        assert!(parts.len() >= 2, "{}: {b}", c["name"]);
        let mut sum = 0.0;
        for p in parts {
            assert!(p["name"].is_string() && p["what"].is_string(), "{p}");
            let ms = p["ms"].as_f64().expect("ms is a number");
            assert!(ms >= 0.0, "{}: negative part {p}", c["name"]);
            sum += ms;
        }
        assert!(
            (sum - total).abs() <= 0.001 * total.max(1.0),
            "{}: parts sum to {sum}, total {total}",
            c["name"]
        );
    }
    assert_eq!(
        v["throughput"].as_array().map(Vec::len),
        Some(0),
        "--no-throughput"
    );
    let phases = v["phases"].as_array().expect("phases is a list");
    assert_eq!(
        phases.first().map(|p| &p["contender"]),
        Some(&"skiff".into())
    );
    let goals = v["goals"].as_array().expect("goals is a list");
    assert_eq!(goals.len(), 4);

    // The CDF plot, as SVG and PNG, named in launch.json.
    let plots: Vec<&str> = v["plots"]
        .as_array()
        .expect("plots is a list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for f in ["latency-cdf.svg", "latency-cdf.png"] {
        assert!(
            plots.contains(&f),
            "launch.json does not name {f}: {plots:?}"
        );
    }
    let svg = std::fs::read_to_string(out.join("latency-cdf.svg")).expect("SVG exists");
    let start = svg.trim_start();
    assert!(
        start.starts_with("<svg") || start.starts_with("<?xml"),
        "not an SVG: {}",
        &start[..start.len().min(80)]
    );
    assert!(svg.trim_end().ends_with("</svg>"), "truncated SVG");
    let png = std::fs::read(out.join("latency-cdf.png")).expect("PNG exists");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG (magic bytes)"
    );
    assert!(png.len() > 1000, "PNG too small: {} bytes", png.len());
}

/// The bench's stores keep their `skiff/<key>` cgroups between runs; this
/// test's stores are going away, so remove theirs (found by their `blobs/`).
fn remove_store_cgroups(dir: &std::path::Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if !p.is_dir() || p.is_symlink() {
            continue;
        }
        if p.join("blobs").is_dir() {
            if let Ok(root) = std::fs::canonicalize(&p) {
                compat::matrix::remove_group_cgroups(&root);
            }
        } else {
            remove_store_cgroups(&p);
        }
    }
}
