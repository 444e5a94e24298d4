//! Warm sandboxes (issue 11): the conformance suite through them, isolation
//! between the jobs of successive sandboxes, accounting per job, `skiff gc`
//! after a SIGKILLed launcher, `image rm` while sandboxes wait, the TTL,
//! and a long run that leaks nothing. The security tests run through a warm
//! sandbox too (`run_security.rs`, `run_escapes.rs`: `skiff run --warm`).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use compat::conformance::{Launch, LaunchError, Outcome};
use runtime::pool::{Launcher, Reply, Request};
use runtime::warm::{WarmPolicy, WarmUse};
use runtime::JobSpec;
use support::run::{self, env, Env, BUSYBOX, COMPAT};

/// A pool launcher with warm sandboxes (`args` after `--warm`...), asking
/// for `policy` in every request.
fn warm_launcher(e: &Env, args: &[&str], policy: WarmPolicy) -> Launcher {
    let mut c = e.cmd();
    c.arg("launcher")
        .args(args)
        .stderr(std::process::Stdio::null());
    let mut l = Launcher::spawn(c).expect("start skiff launcher");
    l.set_warm_policy(Some(policy));
    l
}

/// `ROOT/run` entries of sandboxes (`w-…`).
fn sandboxes(e: &Env) -> Vec<String> {
    let mut v: Vec<String> = e
        .state_dirs()
        .into_iter()
        .filter(|d| d.starts_with("w-"))
        .collect();
    v.sort();
    v
}

/// Wait until `n` sandboxes are in stock (the launcher refills while idle).
fn wait_for_stock(e: &Env, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = sandboxes(e);
        if s.len() == n {
            // A sandbox dir appears before its init says it is ready: give
            // the launcher a moment to finish the one it is making.
            std::thread::sleep(Duration::from_millis(100));
            if sandboxes(e).len() == n {
                return s;
            }
        }
        assert!(Instant::now() < deadline, "stock of {n} not reached: {s:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn job(command: &[&str]) -> JobSpec {
    JobSpec {
        command: command.iter().map(|s| s.to_string()).collect(),
        // Explicit, so that a memory limit (per job) does not change the
        // shape through the default scratch size.
        scratch_size: Some(64 << 20),
        ..Default::default()
    }
}

fn run_ok(l: &mut Launcher, image: &str, j: &JobSpec) -> Outcome {
    let out = l.launch(image, j).expect("launch");
    assert_eq!(out.result.exit_code, 0, "{}", out.stderr);
    out
}

/// The conformance suite's launcher, checking that every job went through
/// a sandbox.
struct ThroughSandboxes {
    launcher: Launcher,
    hits: usize,
    made: usize,
}

impl Launch for ThroughSandboxes {
    fn launch(&mut self, image: &str, job: &JobSpec) -> Result<Outcome, LaunchError> {
        let out = self.launcher.launch(image, job)?;
        if out.result.exit_code != compat::conformance::EXIT_SKIFF_FAILED {
            match out.result.warm {
                Some(WarmUse::Hit) => self.hits += 1,
                Some(WarmUse::Made) => self.made += 1,
                other => panic!("{job:?} did not go through a sandbox: {other:?}"),
            }
        }
        Ok(out)
    }
}

#[test]
fn test_warm_conformance_suite_through_sandboxes() {
    let Some(e) = env() else { return };
    let launcher = warm_launcher(
        &e,
        &["--warm", "2", "--warm-per-key", "1"],
        WarmPolicy::Require,
    );
    let mut l = ThroughSandboxes {
        launcher,
        hits: 0,
        made: 0,
    };
    let failures = run::run_suite(&mut l, &e.work_dir(), "warm");
    assert!(failures.is_empty(), "{failures:#?}");
    // Cases of one shape follow each other: the stock served some.
    assert!(l.hits > 0 && l.made > 0, "hits {} made {}", l.hits, l.made);
    assert!(l.launcher.finish().expect("exit").success());
    e.assert_clean("state left: ", "cgroups left: ");
}

#[test]
fn test_warm_job_cannot_observe_a_previous_job() {
    let Some(e) = env() else { return };
    let mut l = warm_launcher(
        &e,
        &["--warm", "2", "--warm-per-key", "2"],
        WarmPolicy::Prefer,
    );
    let first = run_ok(&mut l, BUSYBOX, &job(&["true"]));
    assert_eq!(first.result.warm, Some(WarmUse::Miss));
    wait_for_stock(&e, 2);
    // Leaves files, shared memory, a process and an environment behind.
    let mut dirty = job(&[
        "sh",
        "-c",
        "echo x > /tmp/mark; echo x > /mark; echo x > /dev/shm/mark; \
         (sleep 30 &); echo $$ > /tmp/pid; hostname",
    ]);
    dirty.name = "dirty-job".into();
    dirty.env = vec!["SECRET=1".into()];
    let a = run_ok(&mut l, BUSYBOX, &dirty);
    assert_eq!(a.result.warm, Some(WarmUse::Hit), "{:?}", a.result);
    assert_eq!(a.stdout, "dirty-job\n");
    let mut look = job(&[
        "sh",
        "-c",
        "ls -A /tmp; ls -A /dev/shm; test -e /mark && echo mark; ps -o comm | grep -c sleep; \
         hostname; cat /etc/hostname; echo ${SECRET:-none}",
    ]);
    look.name = "looking-job".into();
    // The first look runs in the sandbox that waited while the dirty job
    // ran; the next ones in sandboxes made after it.
    for i in 0..3 {
        if i > 0 {
            wait_for_stock(&e, 2);
        }
        let b = l.launch(BUSYBOX, &look).expect("launch");
        assert_eq!(b.result.warm, Some(WarmUse::Hit), "{:?}", b.result);
        assert_eq!(
            b.stdout, "0\nlooking-job\nlooking-job\nnone\n",
            "a job saw another's traces: {}",
            b.stderr
        );
    }
    assert!(l.finish().expect("exit").success());
    e.assert_clean("state left: ", "cgroups left: ");
}

#[test]
fn test_warm_accounting_is_per_job() {
    let Some(e) = env() else { return };
    let mut l = warm_launcher(
        &e,
        &["--warm", "2", "--warm-per-key", "2"],
        WarmPolicy::Prefer,
    );
    let limited = |cmd: &[&str]| {
        let mut j = job(cmd);
        j.limits.memory_bytes = Some(24 << 20);
        j
    };
    let _ = run_ok(&mut l, BUSYBOX, &limited(&["true"]));
    wait_for_stock(&e, 2);
    let burn = run_ok(
        &mut l,
        BUSYBOX,
        &limited(&[
            "sh",
            "-c",
            "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done",
        ]),
    );
    assert_eq!(burn.result.warm, Some(WarmUse::Hit));
    wait_for_stock(&e, 2);
    let hog = l
        .launch(
            BUSYBOX,
            &limited(&["sh", "-c", "x=$(head -c 100000000 /dev/zero | tr '\\0' a)"]),
        )
        .expect("launch");
    assert_eq!(hog.result.warm, Some(WarmUse::Hit));
    assert_eq!(hog.result.exit_code, 137, "{:?}", hog.result);
    assert!(hog.result.oom_killed);
    wait_for_stock(&e, 2);
    let quiet = run_ok(&mut l, BUSYBOX, &limited(&["true"]));
    assert_eq!(quiet.result.warm, Some(WarmUse::Hit));
    let (burn_cpu, quiet_cpu) = (
        burn.result.cpu_usec.expect("burn cpu"),
        quiet.result.cpu_usec.expect("quiet cpu"),
    );
    eprintln!(
        "cpu: burner {burn_cpu} µs, true {quiet_cpu} µs; peak: hog {:?}, true {:?}",
        hog.result.peak_memory_bytes, quiet.result.peak_memory_bytes
    );
    // Nothing of the burner's CPU, the hog's OOM kill or its memory, nor of
    // a sandbox's set-up, is in the quiet job's figures.
    assert!(!quiet.result.oom_killed);
    assert!(quiet_cpu * 10 < burn_cpu, "{quiet_cpu} vs {burn_cpu}");
    let peak = quiet.result.peak_memory_bytes.expect("peak");
    assert!(peak > 0 && peak < 8 << 20, "true's peak {peak}");
    // A cold job's CPU includes its container's set-up (the init's work
    // inside the cgroup before execve); a warm job's starts at handoff.
    let cpu_of = |l: &mut Launcher, n: usize| -> Vec<u64> {
        let mut v: Vec<u64> = (0..n)
            .map(|_| {
                wait_for_stock(&e, 2);
                run_ok(l, BUSYBOX, &limited(&["true"]))
                    .result
                    .cpu_usec
                    .expect("cpu")
            })
            .collect();
        v.sort_unstable();
        v
    };
    let warm = cpu_of(&mut l, 5);
    l.set_warm_policy(Some(WarmPolicy::Off));
    let cold = cpu_of(&mut l, 5);
    eprintln!("true: warm cpu {warm:?} µs, cold cpu {cold:?} µs");
    assert!(warm[2] * 2 < cold[2], "warm {warm:?} vs cold {cold:?}");
    assert!(l.finish().expect("exit").success());
    e.assert_clean("state left: ", "cgroups left: ");
}

/// Processes of this store's jobs or sandboxes (their root is under it).
fn processes_rooted_in(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|p| {
                    std::fs::read_link(format!("/proc/{p}/root"))
                        .map(|r| r.to_string_lossy().contains(&needle))
                        .unwrap_or(false)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn test_warm_sandboxes_of_a_sigkilled_launcher_are_collected_by_gc() {
    let Some(e) = env() else { return };
    let root = std::fs::canonicalize(e.root.path()).expect("canon");
    let mut l = warm_launcher(
        &e,
        &["--warm", "3", "--warm-per-key", "3"],
        WarmPolicy::Prefer,
    );
    let _ = run_ok(&mut l, BUSYBOX, &job(&["true"]));
    wait_for_stock(&e, 3);
    // One job mid-run in a sandbox, two sandboxes waiting.
    let mut long = job(&["sleep", "60"]);
    long.name = "long-job".into();
    let req = Request {
        image: BUSYBOX.into(),
        job: long,
        ..Default::default()
    };
    let mut line = serde_json::to_vec(&req).expect("json");
    line.push(b'\n');
    l.send_raw(&line, &[]).expect("send");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !e.state_dirs().contains(&"long-job".to_string()) {
        assert!(Instant::now() < deadline, "the job did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: kill(2) of our child.
    unsafe { libc::kill(l.pid() as i32, libc::SIGKILL) };
    drop(l);
    let out = e.skiff(&["gc", "--json"]);
    assert!(out.status.success(), "{}", run::job_stderr(&out));
    let v: serde_json::Value = serde_json::from_str(run::stdout(&out).trim()).expect("json");
    let jobs: Vec<&str> = v["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j.as_str())
        .collect();
    assert!(jobs.contains(&"long-job"), "{v}");
    assert_eq!(
        jobs.iter().filter(|j| j.starts_with("w-")).count(),
        3,
        "{v}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_rooted_in(&root).is_empty() {
        assert!(
            Instant::now() < deadline,
            "processes left: {:?}",
            processes_rooted_in(&root)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    e.assert_clean("state left: ", "cgroups left: ");
    let leases = std::fs::read_dir(e.root.path().join("leases"))
        .map(|d| d.count())
        .unwrap_or(0);
    let out = e.skiff(&["gc", "--json"]);
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_dir(e.root.path().join("leases"))
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "leases left after gc (before: {leases})"
    );
}

#[test]
fn test_warm_image_rm_with_waiting_sandboxes() {
    let Some(e) = env() else { return };
    if !run::vendor_archive("compat").exists() {
        support::privilege::skip_or_fail("vendor-images/compat archive is missing");
        return;
    }
    let mut l = warm_launcher(
        &e,
        &["--warm", "2", "--warm-per-key", "2"],
        WarmPolicy::Prefer,
    );
    let _ = run_ok(&mut l, COMPAT, &job(&["true"]));
    wait_for_stock(&e, 2);
    // The sandboxes' leases do not block the removal.
    let rm = e.skiff(&["image", "rm", COMPAT]);
    assert!(rm.status.success(), "image rm: {}", run::job_stderr(&rm));
    match l.launch(COMPAT, &job(&["true"])).expect("launch") {
        o if o.result.exit_code == compat::conformance::EXIT_SKIFF_FAILED => {
            assert!(o.stderr.contains("no such image"), "{}", o.stderr)
        }
        o => panic!("ran on a removed image: {:?}", o.result),
    }
    // The idle launcher discards the stale sandboxes and makes none for a
    // removed image.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sandboxes(&e).is_empty() {
        assert!(
            Instant::now() < deadline,
            "stale sandboxes kept: {:?}",
            sandboxes(&e)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let gc = e.skiff(&["image", "gc", "--json"]);
    assert!(gc.status.success(), "image gc: {}", run::job_stderr(&gc));
    let v: serde_json::Value = serde_json::from_str(run::stdout(&gc).trim()).expect("json");
    eprintln!("image gc: {v}");
    // Other images still run, warm.
    let _ = run_ok(&mut l, BUSYBOX, &job(&["true"]));
    wait_for_stock(&e, 2);
    let again = run_ok(&mut l, BUSYBOX, &job(&["true"]));
    assert_eq!(again.result.warm, Some(WarmUse::Hit));
    assert!(l.finish().expect("exit").success());
    e.assert_clean("state left: ", "cgroups left: ");
}

#[test]
fn test_warm_ttl_replaces_old_sandboxes() {
    let Some(e) = env() else { return };
    let mut l = warm_launcher(&e, &["--warm", "1", "--warm-ttl", "1"], WarmPolicy::Prefer);
    let _ = run_ok(&mut l, BUSYBOX, &job(&["true"]));
    let before = wait_for_stock(&e, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = sandboxes(&e);
        if now.len() == 1 && now != before {
            break;
        }
        assert!(Instant::now() < deadline, "kept past its TTL: {now:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(l.finish().expect("exit").success());
    e.assert_clean("state left: ", "cgroups left: ");
}

/// Open fds (kinds), mounts in its namespace, children, threads.
fn holdings(pid: u32) -> (Vec<String>, usize, usize, usize) {
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let t = std::fs::read_link(e.path())
                        .map(|t| t.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    // pipe:[inode] → pipe; a sandbox's files → its kind.
                    let t = t.split(':').next().unwrap_or("").to_string();
                    match t.find("/w-") {
                        Some(i) => format!(
                            "{}/w-*{}",
                            &t[..i],
                            t[i + 3..]
                                .find('/')
                                .map(|j| &t[i + 3 + j..])
                                .or_else(|| t[i + 3..].find('.').map(|j| &t[i + 3 + j..]))
                                .unwrap_or("")
                        ),
                        None => t,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    fds.sort();
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|t| t.split_whitespace().count())
        .unwrap_or(0);
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0);
    (fds, mounts, children, threads)
}

fn private_dirty_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Private_Dirty:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn test_warm_many_jobs_leak_nothing() {
    // SKIFF_WARM_LEAK_JOBS jobs (default 5,000) through one launcher with
    // warm sandboxes: its fds, mounts, children and threads, the store's
    // state and cgroups are the same before and after; then nothing is left.
    let Some(e) = env() else { return };
    let n: usize = std::env::var("SKIFF_WARM_LEAK_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let root = std::fs::canonicalize(e.root.path()).expect("canon");
    let root_s = root.to_string_lossy().into_owned();
    let host_mounts = run::mounts_containing(&root_s);
    let mut l = warm_launcher(
        &e,
        &["--warm", "2", "--warm-per-key", "2"],
        WarmPolicy::Prefer,
    );
    let pid = l.pid();
    let plain = job(&["true"]);
    let mut limited = job(&["sh", "-c", "echo out; echo err >&2"]);
    limited.limits.memory_bytes = Some(32 << 20);
    limited.limits.pids = Some(16);
    let kinds = [(plain, 0), (limited, 0), (job(&["no-such-command"]), 127)];
    for (j, want) in &kinds {
        let o = l.launch(BUSYBOX, j).expect("launch");
        assert_eq!(o.result.exit_code, *want, "{}", o.stderr);
    }
    wait_for_stock(&e, 2);
    let before = holdings(pid);
    let cgroups_before = e.job_cgroups().len();
    let dirty_before = private_dirty_kb(pid);
    let mut hits = 0;
    for i in 0..n {
        let (j, want) = &kinds[if i % 50 == 49 { 2 } else { i % 2 }];
        let o = l.launch(BUSYBOX, j).expect("launch");
        assert_eq!(o.result.exit_code, *want, "job {i}: {}", o.stderr);
        if o.result.warm == Some(WarmUse::Hit) {
            hits += 1;
        }
    }
    wait_for_stock(&e, 2);
    let after = holdings(pid);
    let dirty_after = private_dirty_kb(pid);
    eprintln!(
        "{n} jobs, {hits} hits; launcher private dirty {dirty_before} → {dirty_after} kB; {after:?}"
    );
    assert_eq!(after, before, "the launcher leaked over {n} jobs");
    assert_eq!(e.job_cgroups().len(), cgroups_before, "cgroups leaked");
    assert!(
        dirty_after < dirty_before + 16 * 1024,
        "launcher memory grew: {dirty_before} → {dirty_after} kB"
    );
    assert!(hits > 0);
    assert!(l.finish().expect("exit").success());
    assert_eq!(run::mounts_containing(&root_s), host_mounts, "host mounts");
    e.assert_clean("state left: ", "cgroups left: ");
    assert!(processes_rooted_in(&root).is_empty(), "processes left");
}

#[test]
fn test_warm_request_reply_shapes() {
    // `warm` in a request is checked like any field; a refused policy names it.
    let Some(e) = env() else { return };
    let mut l = warm_launcher(&e, &["--warm", "1"], WarmPolicy::Prefer);
    let bad = br#"{"image":"skiff-vendor/busybox","warm":"always"}"#;
    let mut line = bad.to_vec();
    line.push(b'\n');
    l.send_raw(&line, &[]).expect("send");
    match l.read_reply().expect("reply") {
        Reply::Error(m) => assert!(m.contains("always"), "{m}"),
        r => panic!("{r:?}"),
    }
    let mut with_stdin = job(&["true"]);
    with_stdin.stdin = true;
    l.set_warm_policy(Some(WarmPolicy::Require));
    let o = l.launch(BUSYBOX, &with_stdin).expect("launch");
    assert!(o.stderr.contains("warm"), "{}", o.stderr);
    l.set_warm_policy(Some(WarmPolicy::Off));
    let o = run_ok(&mut l, BUSYBOX, &job(&["true"]));
    assert_eq!(o.result.warm, None);
    assert!(l.finish().expect("exit").success());
    e.assert_clean("state left: ", "cgroups left: ");
}
