//! `skiff gc` leaves no `skiff/<store key>` cgroup of its store behind once
//! its jobs have ended, in any mounted hierarchy, also when the jobs ran
//! from another cgroup than `gc` does (issue 10, defect 8).

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use support::run::{env, job_stderr, stdout, store_key, BUSYBOX};

/// Mount points of the cgroup hierarchies (v1 and v2), from mountinfo.
fn cgroup_mounts() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split_whitespace().next()?;
            let mount = pre.split_whitespace().nth(4)?;
            matches!(fstype, "cgroup" | "cgroup2").then(|| PathBuf::from(mount))
        })
        .collect()
}

/// Every `…/skiff/<key>` directory in every mounted hierarchy.
fn store_group_dirs(key: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for mount in cgroup_mounts() {
        let mut todo = vec![mount];
        while let Some(dir) = todo.pop() {
            for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let p = e.path();
                if e.file_name() == key && dir.file_name().is_some_and(|n| n == "skiff") {
                    out.push(p);
                } else {
                    todo.push(p);
                }
            }
        }
    }
    out
}

/// A child cgroup of the caller's deepest v1 cgroup (the one skiff bases its
/// jobs on), removed again with everything skiff left under it.
struct SubCgroup {
    /// `<hierarchy>/<caller's path>/<name>` in the hierarchy that holds it.
    procs_dir: PathBuf,
    /// `<caller's path>/<name>`, relative.
    rel: PathBuf,
}

impl SubCgroup {
    fn new() -> Option<SubCgroup> {
        if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            return None; // v1 only: on v2 jobs go beside the caller's cgroup
        }
        let text = fs::read_to_string("/proc/self/cgroup").ok()?;
        let (ctrl, path) = text
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, ':');
                let (id, ctrls, p) = (f.next()?, f.next()?, f.next()?);
                (id != "0" && !ctrls.starts_with("name=")).then_some((ctrls, p))
            })
            .max_by_key(|(_, p)| p.len())?;
        let ctrl = ctrl.split(',').next()?;
        let rel = Path::new(path.trim_start_matches('/'))
            .join(format!("skiff-gc-test-{}", std::process::id()));
        let procs_dir = Path::new("/sys/fs/cgroup").join(ctrl).join(&rel);
        fs::create_dir_all(&procs_dir).ok()?;
        Some(SubCgroup { procs_dir, rel })
    }
}

impl Drop for SubCgroup {
    fn drop(&mut self) {
        for mount in cgroup_mounts() {
            let sub = mount.join(&self.rel);
            if let Ok(rd) = fs::read_dir(sub.join("skiff")) {
                for e in rd.flatten().filter(|e| e.path().is_dir()) {
                    let _ = fs::remove_dir(e.path());
                }
            }
            let _ = fs::remove_dir(sub.join("skiff"));
            let _ = fs::remove_dir(&sub);
        }
    }
}

#[test]
fn test_gc_removes_the_store_group_cgroups_in_every_hierarchy() {
    let Some(e) = env() else { return };
    let key = store_key(&fs::canonicalize(e.root.path()).expect("canon"));
    // Jobs from this test's cgroup, and from a child cgroup (as when jobs
    // run from a service and `gc` from a timer or a shell elsewhere).
    let sub = SubCgroup::new();
    for i in 0..3 {
        let out = e.run(None, &[BUSYBOX, "true"]);
        assert_eq!(out.status.code(), Some(0), "job {i}: {}", job_stderr(&out));
        if let Some(sub) = &sub {
            let procs = sub.procs_dir.join("cgroup.procs");
            let out = std::process::Command::new("sh")
                .args(["-c", "echo $$ > \"$1\" && shift && exec \"$@\"", "sh"])
                .arg(&procs)
                .arg(support::run::skiff_bin())
                .args(["run", BUSYBOX, "true"])
                .env("SKIFF_ROOT", e.root.path())
                .env_remove("SKIFF_RUNTIME")
                .stdin(std::process::Stdio::null())
                .output()
                .expect("spawn sh");
            assert_eq!(
                out.status.code(),
                Some(0),
                "job {i} from {}: {}",
                sub.procs_dir.display(),
                job_stderr(&out)
            );
        }
    }
    let before = store_group_dirs(&key);
    assert!(!before.is_empty(), "the jobs made no group cgroup");

    // While a launcher of the store lives, gc leaves its groups and says so.
    let mut child = e
        .cmd()
        .args(["run", "--name", "alive", BUSYBOX, "sleep", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let record = e.root.path().join("run/alive/job.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !fs::read_to_string(&record).is_ok_and(|t| !t.contains("\"init_pid\":null")) {
        assert!(std::time::Instant::now() < deadline, "job did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = e.skiff(&["gc", "--json"]);
    assert!(out.status.success(), "{}", job_stderr(&out));
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert_eq!(report["launchers_alive"], true, "{report}");
    assert_eq!(report["group_cgroups"], 0, "{report}");
    assert!(before.iter().all(|d| d.is_dir()), "gc removed a group");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    let out = e.skiff(&["gc", "--json"]);
    assert!(out.status.success(), "{}", job_stderr(&out));
    let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    let left = store_group_dirs(&key);
    assert!(
        left.is_empty(),
        "gc left {left:?} (report {report}; before: {before:?})"
    );
    assert_eq!(
        report["group_cgroups"].as_u64(),
        Some(before.len() as u64),
        "{report}"
    );
    // The shared `skiff` parents stay: other stores create their groups there.
    for dir in &before {
        assert!(dir.parent().is_some_and(Path::is_dir), "{dir:?}'s parent");
    }
}
