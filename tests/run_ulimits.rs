//! rlimits (issue 10, defect 3): a job inherits its caller's rlimits, as a
//! Docker job inherits the daemon's; `--ulimit NAME=SOFT[:HARD]` sets one,
//! never above the caller's hard limit. Checked on every backend, through a
//! pool launcher, and against the Docker engine when one runs here.

mod support;

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use compat::conformance::Launch;
use runtime::JobSpec;
use support::env::docker_load;
use support::privilege::skip_or_fail;
use support::run::{backends_and_warm, env, stdout, vendor_archive, BUSYBOX};

/// Distinctive limits for the caller, below any host's defaults.
const SOFT: u64 = 777;
const HARD: u64 = 888;

/// Lower this process's child's NOFILE to SOFT/HARD before exec.
fn with_nofile(mut c: Command) -> Command {
    // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
    unsafe {
        c.pre_exec(|| {
            let r = libc::rlimit {
                rlim_cur: SOFT,
                rlim_max: HARD,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c
}

fn text(out: &Output) -> String {
    format!("{}{}", stdout(out), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn test_jobs_inherit_the_callers_rlimits_and_take_ulimits() {
    let Some(e) = env() else { return };
    for runtime in backends_and_warm() {
        let label = runtime.unwrap_or("libcontainer");
        let run = |args: &[&str]| {
            let mut c = e.cmd();
            c.arg("run").args(support::run::runtime_args(runtime));
            with_nofile(c).args(args).output().expect("skiff run")
        };
        // Inherited: the caller's 777/888, not a fixed 1024/1024.
        let out = run(&[BUSYBOX, "sh", "-c", "ulimit -n; ulimit -Hn"]);
        assert!(out.status.success(), "{label}: {}", text(&out));
        assert_eq!(stdout(&out), format!("{SOFT}\n{HARD}\n"), "{label}");
        // --ulimit, within the caller's hard limit; others stay inherited.
        let out = run(&[
            "--ulimit",
            "nofile=100:200",
            "--ulimit",
            "nproc=50",
            BUSYBOX,
            "sh",
            "-c",
            "ulimit -n; ulimit -Hn; ulimit -u; ulimit -Hu",
        ]);
        assert!(out.status.success(), "{label}: {}", text(&out));
        assert_eq!(stdout(&out), "100\n200\n50\n50\n", "{label}");
        // Above the caller's hard limit: refused before launch, named.
        let out = run(&["--ulimit", "nofile=889", BUSYBOX, "true"]);
        assert_eq!(out.status.code(), Some(125), "{label}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("invalid --ulimit \"nofile=889\"")
                && err.contains("hard limit 889 is above skiff's own hard nofile limit (888)"),
            "{label}: {err}"
        );
    }
    // Bad values name the flag and the problem.
    for (arg, says) in [
        ("nofile", "expected NAME=SOFT[:HARD]"),
        ("files=1", "invalid ulimit type \"files\""),
        (
            "nofile=20:10",
            "soft limit must not be above the hard limit: 20 > 10",
        ),
        ("nofile=ten", "invalid nofile value \"ten\""),
    ] {
        let out = e.run(None, &["--ulimit", arg, BUSYBOX, "true"]);
        assert_eq!(out.status.code(), Some(125), "{arg}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{arg}: {err}");
    }
    // A pool launcher request carries `ulimits`, and inherits the rest
    // from the launcher.
    let mut c = e.cmd();
    c.arg("launcher").stderr(std::process::Stdio::null());
    let mut launcher =
        runtime::pool::Launcher::spawn(with_nofile(c)).expect("start skiff launcher");
    let job = |ulimits: &[&str]| JobSpec {
        command: vec![
            "sh".into(),
            "-c".into(),
            "ulimit -n; ulimit -Hn; ulimit -s".into(),
        ],
        ulimits: ulimits.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let out = launcher.launch(BUSYBOX, &job(&[])).expect("launch");
    let stack = out.stdout.lines().nth(2).unwrap_or_default().to_string();
    assert!(
        out.stdout.starts_with(&format!("{SOFT}\n{HARD}\n")),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let out = launcher
        .launch(BUSYBOX, &job(&["nofile=64:128", "stack=4194304"]))
        .expect("launch");
    assert_eq!(out.stdout, "64\n128\n4096\n", "{}", out.stderr);
    assert_ne!(stack, "4096", "the stack limit was inherited before");
}

#[test]
fn test_ulimits_match_docker() {
    let Some(e) = env() else { return };
    if let Err(why) = docker_load(&vendor_archive("busybox")) {
        skip_or_fail(&format!("no Docker engine: {why}"));
        return;
    }
    let script = "ulimit -n; ulimit -Hn; ulimit -u; ulimit -c; ulimit -s";
    for flags in [
        &["--ulimit", "nofile=512:1024"][..],
        &["--ulimit", "nproc=100", "--ulimit", "core=0:0"],
        &["--ulimit", "nofile=300", "--ulimit", "nofile=400:500"],
    ] {
        let mut args = vec!["--rm", "--network", "none"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[BUSYBOX, "sh", "-c", script]);
        let ours = e.run(None, &args);
        let theirs = Command::new("docker")
            .arg("run")
            .args(&args)
            .output()
            .expect("docker run");
        assert!(
            theirs.status.success(),
            "docker {flags:?}: {}",
            text(&theirs)
        );
        assert!(ours.status.success(), "skiff {flags:?}: {}", text(&ours));
        // Lines Docker does not set are inherited from dockerd here, and
        // from the test process for skiff: compare only those set by flags.
        let set = |o: &Output| -> Vec<String> {
            let lines: Vec<String> = stdout(o).lines().map(str::to_string).collect();
            let mut keep = Vec::new();
            for (i, name) in ["nofile", "nofile", "nproc", "core", "stack"]
                .iter()
                .enumerate()
            {
                if flags.iter().any(|f| f.starts_with(name)) {
                    keep.push(lines.get(i).cloned().unwrap_or_default());
                }
            }
            keep
        };
        assert_eq!(set(&ours), set(&theirs), "{flags:?}");
    }
}
