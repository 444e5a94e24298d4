//! `skiff bench import` in its smallest form: a 5 MB generated image, one
//! round, skiff and tar only. Checks that the results file exists and has
//! the expected shape; never checks timings.

mod support;

use std::path::Path;

use serde_json::Value;
use support::env::{num, skiff_on};

#[test]
fn bench_import_smallest_run_writes_parsable_json() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tmp.path().join("work");
    let out = tmp.path().join("out");
    let output = skiff_on(&tmp.path().join("store"))
        .args(["bench", "import", "--size-mb", "5", "--rounds", "1"])
        .args([
            "--warmup",
            "0",
            "--contenders",
            "skiff,tar,skiff-seed,skiff-pull",
            "--settle",
            "0",
        ])
        .args(["--quiet", "--json"])
        .arg("--workdir")
        .arg(&work)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run skiff");
    assert!(
        output.status.success(),
        "skiff bench import failed: {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );

    let path = out.join("import.json");
    let data = std::fs::read(&path).expect("import.json exists");
    let v: Value = serde_json::from_slice(&data).expect("import.json parses");
    let printed: Value = serde_json::from_slice(&output.stdout).expect("--json prints JSON");
    assert_eq!(printed, v, "--json prints what import.json holds");
    assert_eq!(v["benchmark"], "import");
    assert_eq!(v["rounds"], 1);
    for key in [
        "date",
        "host",
        "image",
        "order",
        "contenders",
        "skipped",
        "notes",
    ] {
        assert!(v.get(key).is_some(), "import.json lacks {key}");
    }
    assert!(v["host"]["kernel"].is_string());
    assert!(num(&v["image"], "uncompressed_bytes") > 0.0);
    assert!(v["image"]["layers"]
        .as_array()
        .is_some_and(|l| !l.is_empty()));

    let contenders = v["contenders"].as_array().expect("contenders is a list");
    let names: Vec<&str> = contenders
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["skiff", "tar", "skiff-seed", "skiff-pull"],
        "only the contenders asked for run"
    );
    for c in contenders {
        assert_eq!(c["samples_s"].as_array().map(Vec::len), Some(1));
        for key in ["median_s", "min_s", "max_s", "mb_per_s", "ratio_vs_skiff"] {
            assert!(num(c, key) > 0.0, "{key} of {} is not positive", c["name"]);
        }
        for key in [
            "cpu_samples_s",
            "cpu_median_s",
            "cpu_ratio_vs_skiff",
            "command",
        ] {
            assert!(c.get(key).is_some(), "{} lacks {key}", c["name"]);
        }
    }
    assert_eq!(num(&contenders[0], "ratio_vs_skiff"), 1.0);

    // The run output went to the trash and the trash was emptied; the
    // generated image stays cached for the next run.
    let trash = work.join("trash");
    assert!(!trash.exists() || std::fs::read_dir(&trash).expect("trash").count() == 0);
    assert!(Path::new(v["image"]["archive"].as_str().expect("archive path")).is_file());
}
