//! `--security-opt no-new-privileges=false` (issue 10, defect 5): skiff
//! sets `no_new_privs` by default, unlike Docker, so a setuid-root binary
//! in the image runs with the caller's uid; with the option off it gains
//! root as under Docker's default. Checked on every backend, and against
//! the Docker engine when one runs here.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use compat::conformance::Launch;
use runtime::JobSpec;
use support::env::{build_c, docker_load};
use support::privilege::skip_or_fail;
use support::run::{backends_and_warm, env, stdout, vendor_archive, Env, BUSYBOX};
use support::tar::{derive, layer, Entry};

const TAG: &str = "probe/setuid:1";

fn text(out: &Output) -> String {
    format!("{}{}", stdout(out), String::from_utf8_lossy(&out.stderr))
}

/// The euid probe, built static.
fn euid_probe() -> Option<PathBuf> {
    build_c(
        "euid-probe",
        "euid_probe.c",
        "euid_probe",
        &["-static", "-O"],
        "the euid probe",
    )
}

/// Busybox plus `/probe`, setuid root (mode 4755, owned by 0:0), as a
/// `docker save` archive at `path`.
fn setuid_image(path: &Path) -> Option<()> {
    let probe = std::fs::read(euid_probe()?).expect("read probe");
    let extra = layer(&[Entry::File("probe".into(), probe, 0o4755)]);
    derive(&vendor_archive("busybox"), TAG, Some(extra), |_| {}, path);
    Some(())
}

/// `skiff run [--runtime R] OPTS -u 1000 TAG /probe`.
fn run_probe(e: &Env, runtime: Option<&str>, opts: &[&str]) -> Output {
    let mut args = opts.to_vec();
    args.extend_from_slice(&["-u", "1000", TAG, "/probe"]);
    e.run(runtime, &args)
}

#[test]
fn test_no_new_privs_off_lets_setuid_binaries_gain_root() {
    let Some(e) = env() else { return };
    let archive = e.root.path().join("setuid.tar");
    let Some(()) = setuid_image(&archive) else {
        return;
    };
    let out = e.skiff(&["image", "import", archive.to_str().expect("utf8")]);
    assert!(out.status.success(), "import: {}", text(&out));
    for runtime in backends_and_warm() {
        let label = runtime.unwrap_or("libcontainer");
        // The default: no_new_privs is set, the setuid bit is ignored.
        for opts in [
            &[][..],
            &["--security-opt", "no-new-privileges"],
            &["--security-opt", "no-new-privileges=true"],
            &["--security-opt", "no-new-privileges:true"],
        ] {
            let out = run_probe(&e, runtime, opts);
            assert!(out.status.success(), "{label} {opts:?}: {}", text(&out));
            assert_eq!(stdout(&out), "euid=1000 uid=1000\n", "{label} {opts:?}");
        }
        // Off: the setuid bit works (the rootfs is not nosuid), with the
        // default seccomp filter still installed, and with it unconfined.
        for opts in [
            &["--security-opt", "no-new-privileges=false"][..],
            &["--security-opt", "no-new-privileges:false"],
            &[
                "--security-opt",
                "no-new-privileges=false",
                "--security-opt",
                "seccomp=unconfined",
            ],
        ] {
            let out = run_probe(&e, runtime, opts);
            assert!(out.status.success(), "{label} {opts:?}: {}", text(&out));
            assert_eq!(stdout(&out), "euid=0 uid=1000\n", "{label} {opts:?}");
        }
        // The seccomp filter is still there with no_new_privs off.
        let out = e.run(
            runtime,
            &[
                "--security-opt",
                "no-new-privileges=false",
                "-u",
                "1000",
                TAG,
                "grep",
                "^Seccomp:",
                "/proc/self/status",
            ],
        );
        assert_eq!(stdout(&out), "Seccomp:\t2\n", "{label}: {}", text(&out));
    }
    // A pool launcher request carries the field (JSON, libcontainer).
    let mut launcher = e.launcher();
    for (no_new_privileges, want) in [(true, "euid=1000"), (false, "euid=0")] {
        let job = JobSpec {
            command: vec!["/probe".into()],
            user: Some("1000".into()),
            no_new_privileges,
            ..Default::default()
        };
        let outcome = launcher.launch(TAG, &job).expect("launcher reply");
        assert_eq!(
            outcome.stdout,
            format!("{want} uid=1000\n"),
            "launcher no_new_privileges {no_new_privileges}: {}",
            outcome.stderr
        );
    }
    // Docker's default is no_new_privs off: the same image gives euid 0.
    match docker_load(&archive) {
        Ok(()) => {
            let theirs = Command::new("docker")
                .args([
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "-u",
                    "1000",
                    TAG,
                    "/probe",
                ])
                .output()
                .expect("docker run");
            assert_eq!(
                stdout(&theirs),
                "euid=0 uid=1000\n",
                "docker: {}",
                text(&theirs)
            );
            let _ = Command::new("docker").args(["rmi", TAG]).output();
        }
        Err(why) => skip_or_fail(&why),
    }
}

#[test]
fn test_no_new_privs_bad_values_are_refused() {
    let Some(e) = env() else { return };
    for opt in [
        "no-new-privileges=maybe",
        "no-new-privileges=",
        "no-new-privileges=0",
        "apparmor=unconfined",
    ] {
        let out = e.run(None, &["--security-opt", opt, BUSYBOX, "true"]);
        assert_eq!(out.status.code(), Some(125), "{opt}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--security-opt") && err.contains(opt),
            "{opt}: {err}"
        );
    }
}
