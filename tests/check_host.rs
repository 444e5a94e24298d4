//! `skiff check --json` against facts this test reads on its own: uname,
//! /proc/mounts, /proc/self/status, /proc/filesystems, /sys/fs/cgroup, and
//! an overlay mount with `volatile` made with util-linux's `unshare` and
//! `mount`.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::env::{vendor, Env};
use support::privilege::{is_root, prerequisite};

fn check_json(env: &Env, extra: &[&str]) -> (Value, i32) {
    let out = env.run(&[&["check", "--json"], extra].concat());
    let code = out.status.code().expect("exit code");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, code)
}

fn check<'a>(v: &'a Value, key: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["key"] == key)
        .unwrap_or_else(|| panic!("no check {key}"))
}

/// (mode, v1 controllers) from /proc/mounts.
fn cgroup_layout() -> (&'static str, BTreeSet<String>) {
    let mounts = std::fs::read_to_string("/proc/mounts").expect("/proc/mounts");
    let known = [
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "devices",
        "freezer",
        "net_cls",
        "net_prio",
        "blkio",
        "perf_event",
        "hugetlb",
        "pids",
        "rdma",
        "misc",
    ];
    let mut v1 = BTreeSet::new();
    let mut v2 = false;
    for l in mounts.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        match f.get(2) {
            Some(&"cgroup2") => v2 = true,
            Some(&"cgroup") => {
                for o in f[3].split(',') {
                    if known.contains(&o) {
                        v1.insert(o.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    let mode = match (!v1.is_empty(), v2) {
        (true, true) => "hybrid",
        (true, false) => "v1",
        (false, true) => "unified",
        (false, false) => "none",
    };
    (mode, v1)
}

fn cap_bnd_bit(bit: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .expect("CapBnd")
        .trim();
    u64::from_str_radix(hex, 16).expect("hex") & (1 << bit) != 0
}

/// Mount an overlay with `volatile` in a private mount namespace, with
/// util-linux tools.
fn overlay_volatile_works(dir: &Path) -> bool {
    let script = format!(
        "set -e; d={}; mount -t tmpfs tmpfs $d; mkdir $d/l $d/u $d/w $d/m; \
         mount -t overlay overlay -o lowerdir=$d/l,upperdir=$d/u,workdir=$d/w,volatile $d/m",
        dir.display()
    );
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn test_check_json_matches_host_facts() {
    if !prerequisite(is_root(), "root") {
        return;
    }
    let env = Env::new();
    let (v, code) = check_json(&env, &[]);
    let host = &v["host"];

    // Exit status and verdict agree.
    assert_eq!(v["exit_code"], code, "exit code vs JSON");
    let want_code = match v["verdict"].as_str() {
        Some("ok") => 0,
        Some("unusable") => 1,
        Some("degraded") => 2,
        other => panic!("verdict {other:?}"),
    };
    assert_eq!(code, want_code);

    // Kernel.
    let uname = Command::new("uname").arg("-r").output().expect("uname");
    let release = String::from_utf8_lossy(&uname.stdout).trim().to_string();
    assert_eq!(host["kernel"]["release"], release);

    // cgroups, from /proc/mounts and /sys/fs/cgroup.
    let (mode, v1) = cgroup_layout();
    assert_eq!(host["cgroups"]["mode"], mode, "cgroup mode");
    let got: BTreeSet<String> = host["cgroups"]["v1_controllers"]
        .as_array()
        .expect("v1_controllers")
        .iter()
        .map(|c| c.as_str().expect("str").to_string())
        .collect();
    assert_eq!(got, v1, "v1 controllers");
    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    assert_eq!(host["cgroups"]["driver"], if unified { "v2" } else { "v1" });
    if Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() {
        assert_eq!(host["cgroups"]["v2_mount"], "/sys/fs/cgroup/unified");
        let want: Vec<String> =
            std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
                .expect("controllers")
                .split_whitespace()
                .map(str::to_string)
                .collect();
        assert_eq!(host["cgroups"]["v2_controllers"], serde_json::json!(want));
    }
    if mode == "hybrid" || mode == "v1" {
        assert_eq!(check(&v, "cgroup.mode")["status"], "degraded");
        assert_ne!(code, 0, "a v1 or hybrid host is at best degraded");
        for c in ["memory", "pids"] {
            if v1.contains(c) {
                assert!(
                    host["cgroups"]["usable_controllers"]
                        .as_array()
                        .expect("usable")
                        .iter()
                        .any(|u| u == c),
                    "{c} should be usable: {}",
                    host["cgroups"]
                );
            }
        }
    }
    let fdm = std::fs::read_to_string("/proc/mounts")
        .expect("mounts")
        .lines()
        .any(|l| l.contains(" cgroup") && l.contains("favordynmods"));
    assert_eq!(host["cgroups"]["favordynmods"], fdm);

    // CAP_SYS_RESOURCE, bit 24 of CapBnd.
    let cap = cap_bnd_bit(24);
    assert_eq!(host["limits"]["cap_sys_resource_bounding"], cap);
    if !cap {
        assert_eq!(check(&v, "rlimits")["status"], "missing");
        assert_eq!(host["limits"]["raise_hard_rlimit"]["ok"], false);
    }

    // overlayfs, from /proc/filesystems and a mount of our own.
    let fs = std::fs::read_to_string("/proc/filesystems").expect("filesystems");
    if fs.lines().any(|l| l.ends_with("\toverlay")) {
        assert_eq!(host["overlay"]["mount"]["ok"], true);
        assert_eq!(check(&v, "overlay")["status"], "ok");
    }
    let scratch = env.path("ovl");
    std::fs::create_dir_all(&scratch).expect("mkdir");
    let volatile = overlay_volatile_works(&scratch);
    assert_eq!(
        host["overlay"]["volatile"]["ok"], volatile,
        "overlay volatile"
    );

    // Namespaces, with util-linux's unshare.
    let all_ns = Command::new("unshare")
        .args(["-m", "-p", "-f", "-n", "-u", "-i", "-U", "-C", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if all_ns {
        for ns in ["mount", "pid", "net", "uts", "ipc", "user", "cgroup"] {
            assert_eq!(host["namespaces"][ns]["ok"], true, "namespace {ns}");
        }
    }

    // The store: as root, skiff's whiteout form works on this filesystem.
    assert_eq!(host["store"]["whiteouts"]["ok"], true, "{}", host["store"]);

    // The store root does not exist yet, so its parent (this test's
    // directory) was probed: no scratch directory is left there.
    let leftovers: Vec<String> = std::fs::read_dir(env.dir.path())
        .expect("read test dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".skiff-check-"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

#[test]
fn test_check_text_has_one_line_per_check_and_verdict() {
    if !prerequisite(is_root(), "root") {
        return;
    }
    let env = Env::new();
    let (v, code) = check_json(&env, &[]);
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(code));
    let text = String::from_utf8_lossy(&out.stdout);
    for c in v["checks"].as_array().expect("checks") {
        let key = c["key"].as_str().expect("key");
        let status = c["status"].as_str().expect("status");
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().take(2).eq([status, key])),
            "no line `{status} {key}` in:\n{text}"
        );
    }
    assert!(text.lines().last().expect("lines").starts_with("verdict: "));
}

#[test]
fn test_check_image_launches_a_job() {
    if !prerequisite(is_root(), "root") {
        return;
    }
    let env = Env::new();
    let archive = vendor("busybox.tar");
    let (v, code) = check_json(
        &env,
        &["--image", archive.to_str().expect("utf-8"), "--runs", "3"],
    );
    let img = &v["image"];
    assert_eq!(img["runs"], 3);
    assert_eq!(img["succeeded"], 3, "{img}");
    assert!(img["launch_ms"].as_f64().expect("launch_ms") > 0.0);
    assert_eq!(check(&v, "image.launch")["status"], "ok");
    assert_ne!(code, 1);
    compat::matrix::remove_group_cgroups(&env.root());
}
