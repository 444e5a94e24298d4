//! `skiff run` behaves like `docker run` (issue 3): the conformance suite
//! (`compat::conformance`) on the default libcontainer path, through
//! `skiff run` and through a pool launcher, plus the behaviours that need a
//! live process (stdin, signals, streaming).

mod support;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use support::run;
use support::run::{env, job_stderr, stdout, BUSYBOX, COMPAT};

#[test]
fn test_run_conformance_libcontainer() {
    // Each case as its own `skiff run` process: the whole command line path.
    let Some(e) = env() else { return };
    let mut cli = run::Cli {
        env: &e,
        runtime: None,
    };
    let failures = run::run_suite(&mut cli, &e.work_dir(), "skiff run");
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    e.assert_clean("state left: ", "cgroups left: ");
}

#[test]
fn test_run_conformance_pool_launcher() {
    // The same cases through one `skiff launcher` process.
    let Some(e) = env() else { return };
    let mut launcher = e.launcher();
    let failures = run::run_suite(&mut launcher, &e.work_dir(), "launcher");
    assert!(launcher.finish().expect("launcher exit").success());
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    e.assert_clean("", "");
}

#[test]
fn test_run_env_file_and_host_env() {
    let Some(e) = env() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("env");
    std::fs::write(&f, "# comment\nA=1\nFROM_HOST\n\nB=two words\n").expect("write");
    let out = e
        .cmd()
        .env("FROM_HOST", "hostval")
        .args([
            "run",
            "--env-file",
            f.to_str().expect("utf8"),
            BUSYBOX,
            "sh",
            "-c",
            "echo $A $FROM_HOST $B",
        ])
        .output()
        .expect("run");
    assert_eq!(
        stdout(&out),
        "1 hostval two words\n",
        "{}",
        job_stderr(&out)
    );
}

#[test]
fn test_run_stdin_with_i() {
    let Some(e) = env() else { return };
    let mut child = e
        .cmd()
        .args(["run", "-i", BUSYBOX, "sh", "-c", "cat; echo end"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"line1\nline2\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(stdout(&out), "line1\nline2\nend\n", "{}", job_stderr(&out));
}

#[test]
// Reaped with waitpid, after the stdout handle moved out of the Child.
#[allow(clippy::zombie_processes)]
fn test_run_sigterm_is_forwarded() {
    let Some(e) = env() else { return };
    let child = e
        .cmd()
        .args([
            "run",
            BUSYBOX,
            "sh",
            "-c",
            "trap 'echo got-term; exit 5' TERM; echo ready; while true; do sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id() as i32;
    let mut out = child.stdout.expect("stdout");
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut buf).expect("ready");
    assert_eq!(&buf, b"ready\n");
    // SAFETY: signalling the child we spawned.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).expect("rest");
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rest, "got-term\n");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 5,
        "status {status:#x}"
    );
}

#[test]
fn test_run_json_fields() {
    let Some(e) = env() else { return };
    let out = e.run(None, &["--json", "--cpus", "0.5", "-c", "512", COMPAT]);
    assert_eq!(out.status.code(), Some(0), "{}", job_stderr(&out));
    let text = stdout(&out);
    let (job_out, json) = text.split_once('\n').expect("two lines");
    assert_eq!(job_out, "compat: default-cmd");
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("json");
    for k in [
        "exit_code",
        "signal",
        "oom_killed",
        "timed_out",
        "wall_ms",
        "launch_ms",
        "cpu_usec",
        "peak_memory_bytes",
    ] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    for k in [
        "lookup_ms",
        "rootfs_ms",
        "spec_ms",
        "create_ms",
        "start_ms",
        "wait_ms",
        "cleanup_ms",
    ] {
        assert!(v["phases"].get(k).is_some(), "missing phase {k}");
    }
}

#[test]
fn test_run_archive_path_is_imported() {
    let Some(e) = env() else { return };
    let a = run::vendor_archive("busybox");
    let out = e.run(None, &[a.to_str().expect("utf8"), "echo", "hello"]);
    assert_eq!(stdout(&out), "hello\n", "{}", job_stderr(&out));
}

#[test]
// Reaped with waitpid, after the stdout handle moved out of the Child.
#[allow(clippy::zombie_processes)]
fn test_run_output_streams_before_exit() {
    let Some(e) = env() else { return };
    let child = e
        .cmd()
        .args([
            "run",
            BUSYBOX,
            "sh",
            "-c",
            "echo first; sleep 5; echo second",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id() as i32;
    let mut out = child.stdout.expect("stdout");
    let mut buf = [0u8; 6];
    // "first" arrives while the job still sleeps.
    std::io::Read::read_exact(&mut out, &mut buf).expect("first");
    assert_eq!(&buf, b"first\n");
    // SAFETY: signalling and reaping our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    std::thread::sleep(Duration::from_millis(50));
}
