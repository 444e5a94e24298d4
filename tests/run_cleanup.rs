//! Nothing outlives a job: mounts, cgroups, state directories, processes,
//! fds (counted in a pool launcher over 500 jobs). And a SIGKILLed `skiff`
//! is cleaned up by the next command.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use compat::conformance::Launch;
use runtime::JobSpec;
use support::run;
use support::run::{env, job_stderr, stdout, BUSYBOX};

/// Processes whose root directory is inside `dir` (i.e. jobs of this store).
fn processes_rooted_in(dir: &Path) -> usize {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .filter(|e| {
                    std::fs::read_link(e.path().join("root"))
                        .map(|r| r.to_string_lossy().contains(&needle))
                        .unwrap_or(false)
                })
                .count()
        })
        .unwrap_or(0)
}

/// Direct children of `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/stat"))
                        .ok()
                        .and_then(|s| {
                            let after = s.rsplit_once(')')?.1.to_string();
                            after.split_whitespace().nth(1)?.parse::<u32>().ok()
                        })
                        == Some(pid)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What a launcher holds: open fds, mounts in its (private) mount
/// namespace, child processes, threads.
#[derive(Debug, PartialEq, Eq)]
struct Holdings {
    fds: Vec<String>,
    mounts: usize,
    children: usize,
    threads: usize,
}

fn holdings(pid: u32) -> Holdings {
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let target = std::fs::read_link(e.path())
                        .map(|t| t.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    // pipe:[inode] and the like: keep the kind, not the inode.
                    let kind = target.split(':').next().unwrap_or("").to_string();
                    format!("{}={kind}", e.file_name().to_string_lossy())
                })
                .collect()
        })
        .unwrap_or_default();
    fds.sort();
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0);
    Holdings {
        fds,
        mounts,
        children: children_of(pid).len(),
        threads,
    }
}

fn job(command: &[&str]) -> JobSpec {
    JobSpec {
        command: command.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[test]
fn test_cleanup_leak_count_over_many_jobs() {
    // 500 jobs through ONE pool launcher: its fds, mounts, children and
    // threads afterwards equal those before, and nothing is left on the host.
    let Some(e) = env() else { return };
    let n: usize = std::env::var("SKIFF_LEAK_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let root = std::fs::canonicalize(e.root.path()).expect("canon");
    let root_s = root.to_string_lossy().into_owned();
    let host_mounts_before = run::mounts_containing(&root_s);
    let mut launcher = e.launcher();
    let pid = launcher.pid();
    let mut limited = job(&["sh", "-c", "sleep 0 & echo out; echo err >&2; wait"]);
    limited.limits.memory_bytes = Some(32 << 20);
    limited.limits.pids = Some(16);
    let mut timed = job(&["sleep", "10"]);
    timed.timeout = Some(Duration::from_millis(20));
    timed.stop_timeout = Duration::from_millis(10);
    let mut bad_user = job(&["true"]);
    bad_user.user = Some("ghost".into());
    // (job, expected exit status): plain, limits and output, own status,
    // not found (no launch), skiff error (no launch), timeout.
    let kinds: Vec<(JobSpec, i32)> = vec![
        (job(&["true"]), 0),
        (limited, 0),
        (job(&["sh", "-c", "exit 3"]), 3),
        (job(&["no-such-command"]), 127),
        (bad_user, 125),
        (timed, 137),
    ];
    let pick = |i: usize| -> usize {
        match i % 100 {
            97 => 3,
            98 => 4,
            99 => 5,
            k => k % 3,
        }
    };
    // One job of every kind first, so lazily opened fds are in the baseline.
    for (k, (j, want)) in kinds.iter().enumerate() {
        let out = launcher.launch(BUSYBOX, j).expect("launch");
        assert_eq!(out.result.exit_code, *want, "warm-up {k}: {}", out.stderr);
    }
    let before = holdings(pid);
    for i in 0..n {
        let (j, want) = &kinds[pick(i)];
        let out = launcher.launch(BUSYBOX, j).expect("launch");
        assert_eq!(out.result.exit_code, *want, "job {i}: {}", out.stderr);
    }
    let after = holdings(pid);
    assert_eq!(after, before, "the launcher leaked over {n} jobs");
    assert!(launcher.finish().expect("exit").success());
    assert_eq!(
        run::mounts_containing(&root_s),
        host_mounts_before,
        "host mounts leaked"
    );
    e.assert_clean("state dirs leaked: ", "cgroups leaked: ");
    assert_eq!(processes_rooted_in(&root), 0, "processes leaked");
}

#[test]
fn test_cleanup_leak_count_skiff_run_processes() {
    // The same through separate `skiff run` processes (fewer: each costs a
    // process start): their state, cgroups and jobs go with them.
    let Some(e) = env() else { return };
    let root = std::fs::canonicalize(e.root.path()).expect("canon");
    for i in 0..30 {
        let out = match i % 3 {
            0 => e.run(None, &[BUSYBOX, "true"]),
            1 => e.run(
                None,
                &[
                    "-m",
                    "32m",
                    "--pids-limit",
                    "16",
                    BUSYBOX,
                    "sh",
                    "-c",
                    "sleep 0 & wait",
                ],
            ),
            _ => e.run(None, &[BUSYBOX, "sh", "-c", "exit 3"]),
        };
        let want = if i % 3 == 2 { 3 } else { 0 };
        assert_eq!(
            out.status.code(),
            Some(want),
            "job {i}: {}",
            job_stderr(&out)
        );
    }
    e.assert_clean("", "");
    assert_eq!(processes_rooted_in(&root), 0, "processes leaked");
}

#[test]
fn test_cleanup_job_sees_only_stdio_fds() {
    let Some(e) = env() else { return };
    // The shell (pid 1) lists its own fds: stdio only, nothing leaked from skiff.
    let out = e.run(None, &[BUSYBOX, "sh", "-c", "ls /proc/$$/fd; true"]);
    assert_eq!(stdout(&out), "0\n1\n2\n", "{}", job_stderr(&out));
}

#[test]
fn test_cleanup_gc_after_sigkilled_skiff() {
    let Some(e) = env() else { return };
    let mut child = e
        .cmd()
        .args([
            "run",
            "--name",
            "orphan",
            "--scratch",
            "disk",
            BUSYBOX,
            "sleep",
            "60",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Wait until the job has started (its record holds the init pid).
    let record = e.root.path().join("run/orphan/job.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    let init_pid = loop {
        if let Ok(text) = std::fs::read_to_string(&record) {
            let v: serde_json::Value = serde_json::from_str(&text).expect("record");
            if let Some(p) = v["init_pid"].as_i64() {
                break p as i32;
            }
        }
        assert!(Instant::now() < deadline, "job did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(200));
    child.kill().expect("SIGKILL skiff");
    child.wait().expect("reap");
    assert!(
        Path::new(&format!("/proc/{init_pid}")).exists(),
        "the job should outlive its skiff"
    );
    let out = e.skiff(&["gc", "--json"]);
    assert!(out.status.success(), "{}", job_stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert_eq!(v["jobs"][0], "orphan", "{v}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{init_pid}/stat")).exists()
        && std::fs::read_to_string(format!("/proc/{init_pid}/stat"))
            .map(|s| !s.contains(") Z"))
            .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "orphan still running");
        std::thread::sleep(Duration::from_millis(20));
    }
    e.assert_clean("", "");
    let root = std::fs::canonicalize(e.root.path()).expect("canon");
    assert_eq!(run::mounts_containing(&root.to_string_lossy()), 0);
}

#[test]
fn test_cleanup_next_run_collects_orphans() {
    let Some(e) = env() else { return };
    let mut child = e
        .cmd()
        .args(["run", "--name", "orphan2", BUSYBOX, "sleep", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let record = e.root.path().join("run/orphan2/job.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&record).is_ok_and(|t| !t.contains("\"init_pid\":null")) {
        assert!(Instant::now() < deadline, "job did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill");
    child.wait().expect("reap");
    let out = e.run(None, &[BUSYBOX, "true"]);
    assert_eq!(out.status.code(), Some(0));
    e.assert_clean("", "");
}
