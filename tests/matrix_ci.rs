//! The CI slice of the compatibility matrix: `skiff matrix --kernels
//! host,6.1-v2` (this host, and bookworm's 6.1 booted in QEMU with cgroup
//! v2), with every installed runtime. Checks that the outputs exist and
//! parse, that every cell that ran passed, and that in the v2 VM the limits
//! and accounting cases went through skiff's cgroup v2 path.
//!
//! Needs root, qemu-system-x86_64, a static busybox, and apt (to fetch the
//! kernel into the cache once). Without them the test is skipped, unless
//! `SKIFF_REQUIRE_PRIVILEGED=1`.

mod support;

use std::path::Path;

use serde_json::Value;
use support::env::{have, Env};
use support::privilege::{is_root, prerequisite};

fn cell<'a>(m: &'a Value, kernel: &str, runtime: &str) -> &'a Value {
    m["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .find(|c| c["kernel"] == kernel && c["runtime"] == runtime)
        .unwrap_or_else(|| panic!("no cell {kernel} × {runtime}"))
}

#[test]
fn test_matrix_ci_slice_host_and_6_1_v2() {
    let ok = prerequisite(is_root(), "root")
        && prerequisite(
            have("qemu-system-x86_64"),
            "qemu-system-x86_64 (qemu-system-x86)",
        )
        && prerequisite(
            Path::new("/bin/busybox").exists(),
            "/bin/busybox (busybox-static)",
        )
        && prerequisite(
            have("apt-get")
                || Path::new("/var/cache/skiff/kernels").exists()
                || std::env::var_os("SKIFF_KERNEL_CACHE").is_some(),
            "apt-get or a kernel cache",
        );
    if !ok {
        return;
    }
    let env = Env::new();
    let out_dir = env.path("matrix");
    let out = env
        .skiff()
        .args([
            "matrix",
            "--kernels",
            "host,6.1-v2",
            "--timeout",
            "900",
            "--out",
        ])
        .arg(&out_dir)
        .output()
        .expect("spawn skiff matrix");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}\n{stdout}");

    // Every output exists and parses.
    let json = std::fs::read_to_string(out_dir.join("matrix.json")).expect("matrix.json");
    let m: Value = serde_json::from_str(&json).expect("matrix.json parses");
    let md = std::fs::read_to_string(out_dir.join("matrix.md")).expect("matrix.md");
    let html = std::fs::read_to_string(out_dir.join("matrix.html")).expect("matrix.html");
    let txt = std::fs::read_to_string(out_dir.join("matrix.txt")).expect("matrix.txt");
    assert!(md.contains("| kernel | cgroups |"), "{md}");
    assert!(html.starts_with("<!doctype html>") && html.contains("</table>"));
    assert!(txt.contains("6.1-v2"));

    let kernels: Vec<&str> = m["kernels"]
        .as_array()
        .expect("kernels")
        .iter()
        .map(|k| k["id"].as_str().expect("id"))
        .collect();
    assert_eq!(kernels, ["host", "6.1-v2"]);
    let vm = &m["kernels"][1];
    assert!(
        vm["release"]
            .as_str()
            .is_some_and(|r| r.starts_with("6.1.")),
        "{vm}"
    );
    assert_eq!(vm["check"]["cgroup_mode"], "unified", "{vm}");
    assert!(
        out_dir.join("vm/6.1-v2/console.log").exists(),
        "console log kept"
    );

    // Every cell that ran passed; libcontainer ran in both columns.
    for c in m["cells"].as_array().expect("cells") {
        let status = c["status"].as_str().expect("status");
        assert!(
            status == "pass" || status == "absent",
            "{} × {}: {status}: {}",
            c["kernel"],
            c["runtime"],
            serde_json::to_string_pretty(&c["failures"]).unwrap_or_default()
        );
    }
    for k in ["host", "6.1-v2"] {
        assert_eq!(cell(&m, k, "libcontainer")["status"], "pass");
    }
    // In the v2 VM, the limits and accounting cases passed, and the
    // latency case measured something.
    let lc = cell(&m, "6.1-v2", "libcontainer");
    let cases = lc["cases"].as_array().expect("cases");
    let limits: Vec<&Value> = cases.iter().filter(|c| c["area"] == "limits").collect();
    assert!(limits.len() >= 3, "{limits:?}");
    assert!(limits.iter().all(|c| c["passed"] == true), "{limits:?}");
    assert!(lc["launch_ms"].as_f64().is_some_and(|l| l > 0.0));
    assert!(out.status.success(), "skiff matrix failed: {}", out.status);
}

#[test]
fn test_matrix_rejects_a_bad_kernel_axis() {
    let env = Env::new();
    let out = env
        .skiff()
        .args(["matrix", "--kernels", "6.1-v3", "--out"])
        .arg(env.path("m"))
        .output()
        .expect("spawn");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the cgroup mode must be"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!env.path("m").join("matrix.json").exists());
}
