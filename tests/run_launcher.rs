//! The hidden `skiff launcher`: a single-threaded process that runs one job
//! per JSON request line on a socketpair (output sinks passed as
//! descriptors, or as paths confined beneath `--output-dir`) and answers
//! with one JSON line on the same socket.

mod support;

use std::os::fd::AsFd;

use runtime::pool::{Reply, Request, Sink, MAX_REQUEST_BYTES};
use runtime::JobSpec;

use support::privilege::skip_or_fail;
use support::run::{env, BUSYBOX};

fn job(script: &str) -> JobSpec {
    JobSpec {
        command: vec!["sh".into(), "-c".into(), script.into()],
        limits: runtime::Limits {
            pids: Some(16),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn error_of(reply: Reply) -> String {
    match reply {
        Reply::Error(e) => e,
        Reply::Ok(r) => panic!("expected an error reply, got {r:?}"),
    }
}

#[test]
fn test_launcher_serves_requests_in_order() {
    let Some(e) = env() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let mut launcher = e.launcher_with_output_dir(dir.path());
    for i in 0..3 {
        let out = std::fs::File::create(dir.path().join(format!("fd{i}"))).expect("out");
        let req = Request {
            image: BUSYBOX.into(),
            job: job(&format!(
                "echo job{i}; yes | head -c 100000; echo err{i} >&2; exit {i}"
            )),
            stdout: Some(Sink::Fd(0)),
            stderr: Some(Sink::Path(format!("err{i}").into())),
            output_cap: Some(1000),
            ..Default::default()
        };
        let reply = launcher
            .request_with_fds(&req, &[out.as_fd()])
            .expect("reply");
        let Reply::Ok(r) = reply else {
            panic!("job {i}: {reply:?}")
        };
        assert_eq!(r.exit_code, i);
        let text = std::fs::read(dir.path().join(format!("fd{i}"))).expect("output");
        assert_eq!(text.len(), 1000, "output is capped");
        assert!(text.starts_with(format!("job{i}\n").as_bytes()));
        assert!(r.output_dropped_bytes[0] > 0);
        assert!(r.output_errors.is_empty(), "{:?}", r.output_errors);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(format!("err{i}"))).expect("err"),
            format!("err{i}\n")
        );
    }
    let e2 = error_of(
        launcher
            .request(&Request {
                image: "no-such-image".into(),
                ..Default::default()
            })
            .expect("reply"),
    );
    assert!(e2.contains("no-such-image"), "{e2}");
    assert!(launcher.finish().expect("exit").success());
    assert!(e.state_dirs().is_empty());
    assert!(e.job_cgroups().is_empty());
}

#[test]
fn test_launcher_output_paths_confined() {
    // Before: `"stdout": "/proc/self/fd/1"` was the launcher's reply stream
    // (a job could forge replies), and a symlink to a root-owned file was
    // followed and appended to.
    let Some(e) = env() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "root-owned\n").expect("victim");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("out dir");
    std::os::unix::fs::symlink(&victim, out.join("link")).expect("symlink");
    std::os::unix::fs::symlink("/proc/self/fd", out.join("fds")).expect("symlink");
    let mut launcher = e.launcher_with_output_dir(&out);
    for (path, why) in [
        ("/proc/self/fd/1", "relative"),
        ("../victim", "relative"),
        ("link", "symlinks"),
        ("fds/1", "symlinks"),
    ] {
        let req = Request {
            image: BUSYBOX.into(),
            job: job("echo '{\"ok\":{\"exit_code\":99}}'"),
            stdout: Some(Sink::Path(path.into())),
            ..Default::default()
        };
        let err = error_of(launcher.request(&req).expect("reply"));
        assert!(err.contains(why), "{path}: {err}");
    }
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "root-owned\n"
    );
    // Replies stay in step: the next request gets its own reply.
    let req = Request {
        image: BUSYBOX.into(),
        job: job("exit 7"),
        ..Default::default()
    };
    let Reply::Ok(r) = launcher.request(&req).expect("reply") else {
        panic!("the launcher stopped serving")
    };
    assert_eq!(r.exit_code, 7);
    // The protocol socket is not the launcher's stdin or stdout, and it is
    // close-on-exec: nothing the launcher starts can inherit it.
    let pid = launcher.pid();
    for fd in [0, 1] {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let m = std::fs::metadata(format!("/proc/{pid}/fd/{fd}")).expect("stat");
        assert!(
            m.file_type().is_char_device() && m.rdev() == libc::makedev(1, 3),
            "launcher fd {fd} is not /dev/null"
        );
    }
    let mut sockets = 0;
    for ent in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("fds") {
        let ent = ent.expect("fd");
        let target = std::fs::read_link(ent.path()).unwrap_or_default();
        if target.to_string_lossy().starts_with("socket:") {
            sockets += 1;
            let info = std::fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                ent.file_name().to_string_lossy()
            ))
            .expect("fdinfo");
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
                .expect("flags");
            assert_ne!(
                flags & libc::O_CLOEXEC as u32,
                0,
                "socket fd {:?} is inheritable",
                ent.file_name()
            );
        }
    }
    assert!(sockets >= 1, "the launcher holds its protocol socket");
    assert!(launcher.finish().expect("exit").success());
}

#[test]
fn test_launcher_without_output_dir_refuses_paths() {
    let Some(e) = env() else { return };
    let mut launcher = e.launcher();
    let req = Request {
        image: BUSYBOX.into(),
        job: job("true"),
        stdout: Some(Sink::Path("out".into())),
        ..Default::default()
    };
    let err = error_of(launcher.request(&req).expect("reply"));
    assert!(err.contains("--output-dir"), "{err}");
    let req = Request {
        image: BUSYBOX.into(),
        job: job("true"),
        stdout: Some(Sink::Fd(1)),
        ..Default::default()
    };
    let f = tempfile::tempfile().expect("tmp");
    let err = error_of(
        launcher
            .request_with_fds(&req, &[f.as_fd()])
            .expect("reply"),
    );
    assert!(err.contains("descriptor 1 was not sent"), "{err}");
}

/// Peak resident memory of a process, in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[test]
fn test_launcher_request_size_capped_and_resynchronised() {
    // Before: a 200 MB line was read whole (1.24 GB peak RSS).
    let Some(e) = env() else { return };
    let mut launcher = e.launcher();
    let mut line = br#"{"image":"x","name":""#.to_vec();
    line.resize(64 * MAX_REQUEST_BYTES, b'a');
    line.extend_from_slice(b"\"}\n");
    launcher.send_raw(&line, &[]).expect("send");
    let err = error_of(launcher.read_reply().expect("reply"));
    assert!(err.contains("request too large"), "{err}");
    let hwm = vm_hwm_kib(launcher.pid());
    assert!(
        hwm < 64 * 1024,
        "a {} MiB request took the launcher to {hwm} KiB",
        line.len() >> 20
    );
    // The next line is served normally.
    let req = Request {
        image: BUSYBOX.into(),
        job: job("exit 3"),
        ..Default::default()
    };
    let Reply::Ok(r) = launcher.request(&req).expect("reply") else {
        panic!("not resynchronised")
    };
    assert_eq!(r.exit_code, 3);
    assert!(launcher.finish().expect("exit").success());
}

#[test]
fn test_launcher_unknown_and_invalid_fields_refused() {
    // Before: a misspelt field was silently ignored and the job ran.
    let Some(e) = env() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let mut launcher = e.launcher();
    for (body, want) in [
        (
            format!(r#"{{"image":"{BUSYBOX}","command":["true"],"pids_limt":4}}"#),
            "unknown request field \"pids_limt\"",
        ),
        (
            format!(
                r#"{{"image":"{BUSYBOX}","command":["true"],"timeout_ms":18446744073709551615}}"#
            ),
            "timeout_ms",
        ),
        (
            format!(r#"{{"image":"{BUSYBOX}","command":["true"],"cpus":1000}}"#),
            "cpus",
        ),
        (
            format!(r#"{{"image":"{BUSYBOX}","command":["true"],"pids_limit":1}}"#),
            "pids_limit",
        ),
        (
            format!(r#"{{"image":"{BUSYBOX}","command":["true"],"tmpfs":["/x:bogus"]}}"#),
            "invalid tmpfs option",
        ),
        (
            format!(
                r#"{{"image":"{BUSYBOX}","command":["true"],"volumes":["{}/missing:/x"]}}"#,
                dir.path().display()
            ),
            "does not exist",
        ),
    ] {
        launcher
            .send_raw(format!("{body}\n").as_bytes(), &[])
            .expect("send");
        let err = error_of(launcher.read_reply().expect("reply"));
        assert!(err.contains(want), "{body}: {err}");
    }
    assert!(launcher.finish().expect("exit").success());
    assert!(e.state_dirs().is_empty());
}

#[test]
fn test_launcher_output_write_error_reported() {
    // Before: the reply said ok with 0 bytes dropped and the output was lost.
    let Some(e) = env() else { return };
    let small = match support::mounts::SmallTmpfs::mount("64k") {
        Ok(t) => t,
        Err(why) => return skip_or_fail(&why),
    };
    let out = std::fs::File::create(small.path().join("out")).expect("out");
    let mut launcher = e.launcher();
    let req = Request {
        image: BUSYBOX.into(),
        job: job("yes | head -c 1000000"),
        stdout: Some(Sink::Fd(0)),
        output_cap: Some(10 << 20),
        ..Default::default()
    };
    let Reply::Ok(r) = launcher
        .request_with_fds(&req, &[out.as_fd()])
        .expect("reply")
    else {
        panic!("job did not run")
    };
    assert_eq!(r.output_errors.len(), 1, "{r:?}");
    let oe = &r.output_errors[0];
    assert_eq!(oe.stream, "stdout");
    assert!(oe.error.contains("No space left on device"), "{oe:?}");
    let kept = std::fs::metadata(small.path().join("out"))
        .expect("meta")
        .len();
    assert_eq!(oe.bytes_lost + kept, 1_000_000, "{oe:?}, {kept} kept");
    assert!(launcher.finish().expect("exit").success());
}

/// `reply_before_cleanup`: the reply carries the finished result (exit
/// status, accounting, output), and the job is torn down before the next
/// request is read: the same name runs again at once, and nothing is left
/// when the launcher ends.
#[test]
fn test_launcher_reply_before_cleanup_tears_down_before_the_next_request() {
    let Some(e) = env() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let mut launcher = e.launcher_with_output_dir(dir.path());
    for i in 0..3 {
        let mut j = job(&format!("echo run{i}; exit {i}"));
        j.name = "again".into();
        let req = Request {
            image: BUSYBOX.into(),
            job: j,
            stdout: Some(Sink::Path(format!("out{i}").into())),
            reply_before_cleanup: true,
            ..Default::default()
        };
        let reply = launcher.request(&req).expect("reply");
        let Reply::Ok(r) = reply else {
            panic!("run {i} of the same name: {reply:?}")
        };
        assert_eq!(r.exit_code, i);
        assert_eq!(r.name, "again");
        assert!(r.cpu_usec.is_some(), "accounting is read before the reply");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(format!("out{i}"))).expect("out"),
            format!("run{i}\n"),
            "the output is complete when the reply comes"
        );
    }
    assert!(launcher.finish().expect("exit").success());
    assert!(e.state_dirs().is_empty(), "{:?}", e.state_dirs());
    assert!(e.job_cgroups().is_empty(), "{:?}", e.job_cgroups());
}
