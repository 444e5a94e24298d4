//! `skiff run` checks every value up front, as docker does (issue 8,
//! section 4): a clear error naming the flag and the accepted range, exit
//! 125, and nothing launched. Plus the mount order of the job's /etc files,
//! `--tmpfs PATH:OPTIONS`, archive arguments, and output write errors.

mod support;

use std::process::{Command, Output};

use support::privilege::skip_or_fail;
use support::run;
use support::run::{env, stdout, Env, BUSYBOX};

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `skiff run ARGS BUSYBOX sh -c 'touch /mark/ran'` with a marker volume:
/// asserts exit 125, a message with every `needle`, and that nothing ran.
fn refused(e: &Env, args: &[&str], needles: &[&str]) {
    let mark = tempfile::tempdir().expect("mark");
    let vol = format!("{}:/mark", mark.path().display());
    let mut all: Vec<&str> = vec!["-v", &vol];
    all.extend_from_slice(args);
    all.extend_from_slice(&[BUSYBOX, "sh", "-c", "touch /mark/ran"]);
    let out = e.run(None, &all);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(125), "{args:?}: {t}");
    let err = String::from_utf8_lossy(&out.stderr);
    for n in needles {
        assert!(err.contains(n), "{args:?}: expected {n:?} in: {t}");
    }
    assert!(!err.contains("panicked"), "{args:?}: {t}");
    assert!(
        !err.contains("create container") && !err.contains("ERROR"),
        "{args:?} failed only at create: {t}"
    );
    assert!(
        !mark.path().join("ran").exists(),
        "{args:?}: the job ran: {t}"
    );
    assert!(e.state_dirs().is_empty(), "{args:?}: {:?}", e.state_dirs());
}

#[test]
fn test_validation_refuses_bad_values_before_launch() {
    // Before: 1e20 durations panicked (exit 101); -1/NaN/1000 CPUs and huge
    // memory meant unlimited; 1k memory, 0.001 CPUs and pids 1 failed at
    // create with raw libcontainer errors; =x was passed through; a long
    // hostname failed in the init; a missing volume source said "failed to
    // prepare rootfs"; `--tmpfs relative` mounted /relative.
    let Some(e) = env() else { return };
    let long = "h".repeat(65);
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--timeout", "1e20"], vec!["--timeout", "8760h"]),
        (
            vec!["--stop-timeout", "1e20"],
            vec!["--stop-timeout", "8760h"],
        ),
        (
            vec!["--cpus", "-1"],
            vec!["--cpus", "range of CPUs is from 0.01 to"],
        ),
        (vec!["--cpus", "NaN"], vec!["--cpus", "range of CPUs"]),
        (vec!["--cpus", "1000"], vec!["--cpus", "CPUs available"]),
        (vec!["--cpus", "0.001"], vec!["--cpus", "range of CPUs"]),
        (vec!["-m", "99999999t"], vec!["--memory", "too large"]),
        (vec!["-m", "1e30"], vec!["--memory", "too large"]),
        (
            vec!["-m", "1k"],
            vec!["--memory", "minimum memory limit allowed is 6MB"],
        ),
        (
            vec!["--pids-limit", "1"],
            vec!["--pids-limit", "at least 2"],
        ),
        (
            vec!["--pids-limit", "-2"],
            vec!["--pids-limit", "0 or -1 for no limit"],
        ),
        (
            vec!["--cpu-shares", "1"],
            vec!["--cpu-shares", "2 to 262144"],
        ),
        (
            vec!["-e", "=x"],
            vec!["--env", "invalid environment variable: =x"],
        ),
        (
            vec!["--hostname", &long],
            vec!["--hostname", "1 to 64 bytes"],
        ),
        (
            vec!["-v", "/nonexistent-skiff-source:/x"],
            vec!["--volume", "/nonexistent-skiff-source does not exist"],
        ),
        (
            vec!["--tmpfs", "relative"],
            vec!["--tmpfs", "must be absolute"],
        ),
        (
            vec!["--tmpfs", "/x:bogus"],
            vec!["--tmpfs", "invalid tmpfs option \"bogus\""],
        ),
    ];
    for (args, needles) in &cases {
        refused(&e, args, needles);
    }
    assert!(e.job_cgroups().is_empty(), "{:?}", e.job_cgroups());
}

#[test]
fn test_validation_docker_limits_accepted() {
    // Docker's "no limit" spellings and the edges of each range still run.
    let Some(e) = env() else { return };
    for args in [
        &["--pids-limit", "0"][..],
        &["--pids-limit", "-1"],
        &["--pids-limit", "2"],
        &["--cpus", "0"],
        &["--cpus", "0.01"],
        &["-m", "6m"],
        &["--hostname", &"h".repeat(64)],
    ] {
        let mut all = args.to_vec();
        all.extend_from_slice(&[BUSYBOX, "true"]);
        let out = e.run(None, &all);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
}

/// `docker` with the vendored busybox loaded, or why not.
fn docker_with_busybox() -> Result<(), String> {
    support::env::docker_load(&run::vendor_archive("busybox"))
}

fn docker_run(args: &[&str]) -> Output {
    Command::new("docker")
        .args(["run", "--rm", "--network", "none"])
        .args(args)
        .output()
        .expect("docker run")
}

/// Docker (when it runs here) prints what skiff printed for `args`.
fn assert_docker_agrees(args: &[&str], ours: &Output) {
    match docker_with_busybox() {
        Ok(()) => {
            let theirs = docker_run(args);
            assert_eq!(
                String::from_utf8_lossy(&theirs.stdout),
                stdout(ours),
                "docker: {}",
                text(&theirs)
            );
        }
        Err(why) => skip_or_fail(&why),
    }
}

#[test]
fn test_validation_etc_volume_keeps_job_etc_files_like_docker() {
    // Before: `-v /etc:/etc` hid the job's hostname, hosts and resolv.conf
    // (its bind mounts came before the volume's).
    let Some(e) = env() else { return };
    // Each file must be the job's own, not the host's seen through the volume.
    let id = |p: &str| {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p).expect(p);
        format!("{}:{}", m.dev(), m.ino())
    };
    let script = format!(
        "cat /etc/hostname; \
         [ \"$(stat -c %d:%i /etc/hosts)\" != {} ] && echo own-hosts; \
         [ \"$(stat -c %d:%i /etc/resolv.conf)\" != {} ] && echo own-resolv; \
         grep -q localhost /etc/hosts && echo localhost",
        id("/etc/hosts"),
        id("/etc/resolv.conf")
    );
    let args = [
        "--hostname",
        "myjobhost",
        "-v",
        "/etc:/etc:ro",
        BUSYBOX,
        "sh",
        "-c",
        &script,
    ];
    let ours = e.run(None, &args);
    assert!(ours.status.success(), "{}", text(&ours));
    let want = "myjobhost\nown-hosts\nown-resolv\nlocalhost\n";
    assert_eq!(stdout(&ours), want, "{}", text(&ours));
    assert_docker_agrees(&args, &ours);
}

#[test]
fn test_validation_tmpfs_options_like_docker() {
    // Before: `--tmpfs /x:size=1m` created a directory named "x:size=1m".
    let Some(e) = env() else { return };
    let script = "grep ' /x ' /proc/mounts | cut -d' ' -f4 | tr , '\\n' | \
                  grep -E '^(size|mode|noexec|nosuid|nodev|ro|rw)' | sort; stat -c %a /x";
    let args = [
        "--tmpfs",
        "/x:size=1m,mode=700",
        BUSYBOX,
        "sh",
        "-c",
        script,
    ];
    let ours = e.run(None, &args);
    assert!(ours.status.success(), "{}", text(&ours));
    assert_eq!(
        stdout(&ours),
        "mode=700\nnodev\nnoexec\nnosuid\nrw\nsize=1024k\n700\n",
        "{}",
        text(&ours)
    );
    assert_docker_agrees(&args, &ours);
}

#[test]
fn test_validation_directory_is_not_an_archive() {
    // Before: `skiff run ../../etc` tried to import /etc as an archive.
    let Some(e) = env() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("notes.txt"), "not an archive").expect("file");
    for (arg, want) in [
        (dir.path().to_string_lossy().into_owned(), "is a directory"),
        (
            dir.path().join("notes.txt").to_string_lossy().into_owned(),
            "not a tar, gzip or zstd stream",
        ),
    ] {
        let out = e.run(None, &[&arg, "true"]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(125), "{t}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no image named"), "{t}");
        assert!(err.contains("not an archive file"), "{t}");
        assert!(
            err.contains(want) || (want == "is a directory" && err.contains("directory")),
            "{t}"
        );
        assert!(!err.contains("importing"), "{t}");
    }
    // A real archive path still imports and runs.
    let archive = run::vendor_archive("busybox");
    let out = e.run(None, &[archive.to_str().expect("utf8"), "echo", "ok"]);
    assert_eq!(stdout(&out), "ok\n", "{}", text(&out));
}

#[test]
fn test_validation_full_output_filesystem_fails_the_run() {
    // Before: skiff exited 0 and the output was silently lost.
    let Some(e) = env() else { return };
    let small = match support::mounts::SmallTmpfs::mount("64k") {
        Ok(t) => t,
        Err(why) => return skip_or_fail(&why),
    };
    let target = small.path().join("out");
    let out_file = std::fs::File::create(&target).expect("out file");
    let out = e
        .cmd()
        .args(["run", BUSYBOX, "sh", "-c", "yes | head -c 1000000"])
        .stdout(out_file)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("writing the job's stdout: No space left on device"),
        "{err}"
    );
    assert!(err.contains("bytes lost"), "{err}");
    assert!(e.state_dirs().is_empty());
}
