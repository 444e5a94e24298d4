//! `--runtime runc` (and crun) give the same observable results as the
//! default libcontainer path on the same conformance suite
//! (`compat::conformance`).

mod support;

use support::privilege::skip_or_fail;
use support::run;
use support::run::{env, have};

fn conformance_on(runtime: &str) {
    let Some(e) = env() else { return };
    if !have(runtime) {
        return skip_or_fail(&format!("{runtime} is not installed"));
    }
    let mut cli = run::Cli {
        env: &e,
        runtime: Some(runtime.to_string()),
    };
    let failures = run::run_suite(&mut cli, &e.work_dir(), runtime);
    assert!(
        failures.is_empty(),
        "{runtime}: {} case(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    e.assert_clean("state left: ", "cgroups left: ");
}

#[test]
fn test_run_conformance_runc() {
    conformance_on("runc");
}

#[test]
fn test_run_conformance_crun() {
    conformance_on("crun");
}

fn accounting_on(e: &run::Env, runtime: Option<&str>) -> serde_json::Value {
    let out = e.run(
        runtime,
        &[
            "--json",
            "-m",
            "16m",
            run::BUSYBOX,
            "sh",
            "-c",
            "x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo survived",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(137),
        "{runtime:?}: {}",
        run::job_stderr(&out)
    );
    serde_json::from_str(run::stdout(&out).trim()).expect("json")
}

#[test]
fn test_run_runtimes_oom_accounting_parity() {
    // The runtime binaries create the job's cgroup where skiff asks and keep
    // it until `delete`, so skiff reads the same accounting as on its own path.
    let Some(e) = env() else { return };
    for rt in run::backends() {
        let v = accounting_on(&e, rt);
        assert_eq!(v["oom_killed"], true, "{rt:?}: {v}");
        assert_eq!(v["signal"], 9, "{rt:?}: {v}");
        assert!(
            v["peak_memory_bytes"].as_u64().unwrap_or(0) > 0,
            "{rt:?}: {v}"
        );
        assert!(v["cpu_usec"].as_u64().is_some(), "{rt:?}: {v}");
        assert_eq!(v["runtime"], rt.unwrap_or("libcontainer"), "{v}");
    }
    e.assert_clean("", "");
}

#[test]
fn test_run_runtimes_pool_launcher_mixes_backends() {
    // One launcher serves libcontainer and runc jobs in turn (the matrix and
    // a scheduler do this): same results, nothing left behind.
    use compat::conformance::Launch;
    let Some(e) = env() else { return };
    if !have("runc") {
        return skip_or_fail("runc is not installed");
    }
    let mut launcher = e.launcher();
    let job = runtime::JobSpec {
        command: ["sh", "-c", "echo $$; exit 7"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ..Default::default()
    };
    for i in 0..6 {
        let rt = if i % 2 == 0 {
            None
        } else {
            Some("runc".to_string())
        };
        launcher.set_runtime(rt.clone());
        let out = launcher.launch(run::BUSYBOX, &job).expect("launch");
        assert_eq!(out.result.exit_code, 7, "{rt:?}: {}", out.stderr);
        assert_eq!(out.stdout, "1\n", "{rt:?}");
        assert_eq!(out.result.runtime, rt.as_deref().unwrap_or("libcontainer"));
        assert!(out.result.cpu_usec.is_some(), "{rt:?}: {:?}", out.result);
    }
    assert!(launcher.finish().expect("exit").success());
    e.assert_clean("", "");
}
