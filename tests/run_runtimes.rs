//! `--runtime runc` (and crun) give the same observable results as the
//! default libcontainer path on the same conformance suite
//! (`compat::conformance`).

mod run_common;

use run_common::env;

fn have(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

fn conformance_on(runtime: &str) {
    let Some(e) = env() else { return };
    if !have(runtime) {
        if std::env::var("SKIFF_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
            panic!("{runtime} is not installed");
        }
        eprintln!("SKIPPED: {runtime} is not installed");
        return;
    }
    let mut cli = run_common::Cli {
        env: &e,
        runtime: Some(runtime.to_string()),
    };
    let failures = run_common::run_suite(&mut cli, &e.work_dir(), runtime);
    assert!(
        failures.is_empty(),
        "{runtime}: {} case(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        e.state_dirs().is_empty(),
        "state left: {:?}",
        e.state_dirs()
    );
    assert!(
        e.job_cgroups().is_empty(),
        "cgroups left: {:?}",
        e.job_cgroups()
    );
}

#[test]
fn test_run_conformance_runc() {
    conformance_on("runc");
}

#[test]
fn test_run_conformance_crun() {
    conformance_on("crun");
}

fn accounting_on(e: &run_common::Env, runtime: Option<&str>) -> serde_json::Value {
    let out = e.run(
        runtime,
        &[
            "--json",
            "-m",
            "16m",
            run_common::BUSYBOX,
            "sh",
            "-c",
            "x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo survived",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(137),
        "{runtime:?}: {}",
        run_common::job_stderr(&out)
    );
    serde_json::from_str(run_common::stdout(&out).trim()).expect("json")
}

#[test]
fn test_run_runtimes_oom_accounting_parity() {
    // The runtime binaries create the job's cgroup where skiff asks and keep
    // it until `delete`, so skiff reads the same accounting as on its own path.
    let Some(e) = env() else { return };
    let mut paths = vec![None];
    for r in ["runc", "crun"] {
        if have(r) {
            paths.push(Some(r));
        } else if std::env::var("SKIFF_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
            panic!("{r} is not installed");
        }
    }
    for rt in paths {
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
    assert!(e.state_dirs().is_empty(), "{:?}", e.state_dirs());
    assert!(e.job_cgroups().is_empty(), "{:?}", e.job_cgroups());
}

#[test]
fn test_run_runtimes_pool_launcher_mixes_backends() {
    // One launcher serves libcontainer and runc jobs in turn (the matrix and
    // a scheduler do this): same results, nothing left behind.
    use compat::conformance::Launch;
    let Some(e) = env() else { return };
    if !have("runc") {
        if std::env::var("SKIFF_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
            panic!("runc is not installed");
        }
        return;
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
        let out = launcher.launch(run_common::BUSYBOX, &job).expect("launch");
        assert_eq!(out.result.exit_code, 7, "{rt:?}: {}", out.stderr);
        assert_eq!(out.stdout, "1\n", "{rt:?}");
        assert_eq!(out.result.runtime, rt.as_deref().unwrap_or("libcontainer"));
        assert!(out.result.cpu_usec.is_some(), "{rt:?}: {:?}", out.result);
    }
    assert!(launcher.finish().expect("exit").success());
    assert!(e.state_dirs().is_empty(), "{:?}", e.state_dirs());
    assert!(e.job_cgroups().is_empty(), "{:?}", e.job_cgroups());
}
