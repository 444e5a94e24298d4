//! The `skiff run` tests' environment: a fresh store root per test with the
//! vendored images imported, a ready `skiff` command, and cleanup (and a
//! leak check) even when the test fails; the conformance suite through
//! `skiff run`, the syscall probe, the backends to run on.
//!
//! These tests need root, overlayfs and cgroups (see [`super::privilege`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use compat::conformance::{self, Launch, LaunchError, Outcome};
use runtime::pool::Launcher;
use runtime::{JobResult, JobSpec};

pub use super::env::{have, skiff_bin, vendor_archive};

use super::env::build_c;
use super::privilege::{gate, missing_for_jobs, skip_or_fail};

pub const BUSYBOX: &str = conformance::BUSYBOX;
pub const COMPAT: &str = conformance::COMPAT;

/// The "runtime" that [`Env::run`] turns into `skiff run --warm`: the job
/// handed to a warm sandbox.
pub const WARM: &str = "warm";

/// What `skiff run` tests need: [`missing_for_jobs`] and the vendored
/// busybox image.
pub fn missing_prerequisite() -> Option<String> {
    missing_for_jobs().or_else(|| {
        (!vendor_archive("busybox").exists())
            .then(|| "vendor-images/busybox archive is missing".to_string())
    })
}

/// A test environment: a temporary store root with the vendored images.
#[derive(Debug)]
pub struct Env {
    pub root: tempfile::TempDir,
}

/// Set up, or skip (returning `None`) when privileges are missing.
pub fn env() -> Option<Env> {
    if !gate(missing_prerequisite()) {
        return None;
    }
    let root = tempfile::Builder::new()
        .prefix("skiff-run-test-")
        .tempdir()
        .expect("temp store root");
    let e = Env { root };
    for name in ["busybox", "compat"] {
        let a = vendor_archive(name);
        if a.exists() {
            let out = e.skiff(&["image", "import", a.to_str().expect("utf8")]);
            assert!(
                out.status.success(),
                "import {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Some(e)
}

/// The jobs' own output with libcontainer's log noise removed.
pub fn job_stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.contains(" WARN ") && !l.contains("WARN\u{1b}"))
        .map(|l| format!("{l}\n"))
        .collect()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Env {
    /// A `skiff` command on this store.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(skiff_bin());
        c.env("SKIFF_ROOT", self.root.path());
        c.env_remove("SKIFF_RUNTIME");
        c.stdin(Stdio::null());
        c
    }

    /// Run `skiff ARGS`.
    pub fn skiff(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run skiff")
    }

    /// Run `skiff run [runtime] ARGS`.
    pub fn run(&self, runtime: Option<&str>, args: &[&str]) -> Output {
        let mut c = self.cmd();
        c.arg("run").args(runtime_args(runtime));
        c.args(args).output().expect("run skiff")
    }

    /// `ROOT/run` entries (there must be none between jobs).
    pub fn state_dirs(&self) -> Vec<String> {
        std::fs::read_dir(self.root.path().join("run"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Job cgroups of this store in any v1 hierarchy or in v2.
    pub fn job_cgroups(&self) -> Vec<PathBuf> {
        let key = store_key(&std::fs::canonicalize(self.root.path()).expect("canon"));
        let mut out = Vec::new();
        for base in cgroup_bases() {
            let dir = base.join("skiff").join(&key);
            if let Ok(rd) = std::fs::read_dir(&dir) {
                out.extend(rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
            }
        }
        out
    }

    /// No `ROOT/run` entry and no job cgroup is left; each message is
    /// followed by what is.
    pub fn assert_clean(&self, state_msg: &str, cgroups_msg: &str) {
        assert!(
            self.state_dirs().is_empty(),
            "{state_msg}{:?}",
            self.state_dirs()
        );
        assert!(
            self.job_cgroups().is_empty(),
            "{cgroups_msg}{:?}",
            self.job_cgroups()
        );
    }
}

/// Same key as `runtime::cgroups::group_key`.
pub fn store_key(root: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in root.as_os_str().as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", h as u32)
}

/// `<mount>/<caller's path>` for each hierarchy skiff uses.
fn cgroup_bases() -> Vec<PathBuf> {
    static BASES: OnceLock<Vec<PathBuf>> = OnceLock::new();
    BASES
        .get_or_init(|| {
            let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
            if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
                let own = text
                    .lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .unwrap_or("/");
                return vec![Path::new("/sys/fs/cgroup").join(own.trim_start_matches('/'))];
            }
            let deepest = text
                .lines()
                .filter_map(|l| {
                    let mut f = l.splitn(3, ':');
                    let (id, ctrls, p) = (f.next()?, f.next()?, f.next()?);
                    (id != "0" && !ctrls.starts_with("name=")).then_some(p)
                })
                .max_by_key(|p| p.len())
                .unwrap_or("/")
                .to_string();
            [
                "memory", "pids", "cpu", "cpuacct", "devices", "freezer", "blkio", "cpuset",
            ]
            .iter()
            .map(|c| {
                Path::new("/sys/fs/cgroup")
                    .join(c)
                    .join(deepest.trim_start_matches('/'))
            })
            .collect()
        })
        .clone()
}

impl Drop for Env {
    fn drop(&mut self) {
        // Clean up whatever a failed test left, so no cgroup or process outlives it.
        let _ = self.skiff(&["gc"]);
        forget_store_cgroups(self.root.path());
    }
}

/// skiff keeps `skiff/<store key>` between jobs; remove it (when empty) for
/// a store that is going away.
pub fn forget_store_cgroups(root: &Path) {
    if let Ok(root) = std::fs::canonicalize(root) {
        let key = store_key(&root);
        for base in all_hierarchy_bases() {
            // Not the shared `skiff` parent: removing it races with
            // other tests' launches creating their groups under it.
            let _ = std::fs::remove_dir(base.join("skiff").join(&key));
        }
    }
}

/// `<mount>/<caller's path>` in every mounted hierarchy, named ones and the
/// unified one included (runtime binaries use them all).
fn all_hierarchy_bases() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let deepest = text
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .max_by_key(|p| p.len())
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_string();
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path().join(&deepest))
                .chain([Path::new("/sys/fs/cgroup").join(&deepest)])
                .collect()
        })
        .unwrap_or_default()
}

/// Count of this process's open fds.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Processes (pid, command line) whose command line mentions `needle`:
/// a worker's launchers and jobs name its store root.
pub fn processes_under(needle: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            out.push((pid, cmd));
        }
    }
    out
}

/// Mounts mentioning `needle` in the host mount table.
pub fn mounts_containing(needle: &str) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// `skiff run` options equivalent to a job request (with `--json`).
pub fn run_args(image: &str, job: &JobSpec) -> Vec<String> {
    let mut a: Vec<String> = vec!["--json".into()];
    let opt = |a: &mut Vec<String>, k: &str, v: String| {
        a.push(k.to_string());
        a.push(v);
    };
    for e in &job.env {
        opt(&mut a, "--env", e.clone());
    }
    if let Some(w) = &job.workdir {
        opt(&mut a, "--workdir", w.clone());
    }
    if let Some(u) = &job.user {
        opt(&mut a, "--user", u.clone());
    }
    if let Some(h) = &job.hostname {
        opt(&mut a, "--hostname", h.clone());
    }
    if let Some(m) = job.limits.memory_bytes {
        opt(&mut a, "--memory", m.to_string());
    }
    if let Some(c) = job.limits.cpus {
        opt(&mut a, "--cpus", c.to_string());
    }
    if let Some(c) = job.limits.cpu_shares {
        opt(&mut a, "--cpu-shares", c.to_string());
    }
    if let Some(p) = job.limits.pids {
        opt(&mut a, "--pids-limit", p.to_string());
    }
    if job.network == runtime::NetworkMode::Host {
        opt(&mut a, "--network", "host".into());
    }
    for v in &job.volumes {
        opt(&mut a, "--volume", v.to_string());
    }
    for t in &job.tmpfs {
        opt(&mut a, "--tmpfs", t.clone());
    }
    for c in &job.cap_add {
        opt(&mut a, "--cap-add", c.clone());
    }
    for c in &job.cap_drop {
        opt(&mut a, "--cap-drop", c.clone());
    }
    if job.seccomp == runtime::SeccompMode::Unconfined {
        opt(&mut a, "--security-opt", "seccomp=unconfined".into());
    }
    if let Some(t) = job.timeout {
        opt(&mut a, "--timeout", format!("{}ms", t.as_millis()));
    }
    opt(
        &mut a,
        "--stop-timeout",
        format!("{}ms", job.stop_timeout.as_millis()),
    );
    if job.scratch == runtime::ScratchMode::Disk {
        opt(&mut a, "--scratch", "disk".into());
    }
    if job.read_only {
        a.push("--read-only".into());
    }
    if !job.name.is_empty() {
        opt(&mut a, "--name", job.name.clone());
    }
    // docker's --entrypoint is one word: the rest of a longer one goes first in COMMAND.
    let mut command = Vec::new();
    if let Some(ep) = &job.entrypoint {
        opt(
            &mut a,
            "--entrypoint",
            ep.first().cloned().unwrap_or_default(),
        );
        command.extend(ep.iter().skip(1).cloned());
    }
    a.push(image.to_string());
    command.extend(job.command.iter().cloned());
    a.extend(command);
    a
}

/// Launches each job as its own `skiff run --json` process.
#[derive(Debug)]
pub struct Cli<'a> {
    pub env: &'a Env,
    pub runtime: Option<String>,
}

impl Launch for Cli<'_> {
    fn launch(&mut self, image: &str, job: &JobSpec) -> Result<Outcome, LaunchError> {
        let harness = |why: String| LaunchError::Harness(why.into());
        let args = run_args(image, job);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.env.run(self.runtime.as_deref(), &args);
        let code = out
            .status
            .code()
            .ok_or_else(|| harness("skiff was killed by a signal".into()))?;
        let text = stdout(&out);
        let body = text.strip_suffix('\n').unwrap_or(&text);
        let (job_out, json) = match body.rfind('\n') {
            Some(i) => (&text[..=i], &body[i + 1..]),
            None => ("", body),
        };
        let mut result: JobResult = match serde_json::from_str(json) {
            Ok(r) => r,
            Err(_) if code == 125 => JobResult {
                exit_code: code,
                ..Default::default()
            },
            Err(e) => return Err(harness(format!("no JSON result ({e}) in {text:?}"))),
        };
        if result.exit_code.clamp(0, 255) != code {
            return Err(harness(format!(
                "exit status {code} but JSON exit_code {}",
                result.exit_code
            )));
        }
        result.exit_code = code;
        Ok(Outcome {
            result,
            stdout: if code == 125 {
                text
            } else {
                job_out.to_string()
            },
            stderr: job_stderr(&out),
        })
    }
}

impl Env {
    /// A pool launcher (`skiff launcher`) on this store.
    pub fn launcher(&self) -> Launcher {
        let mut c = self.cmd();
        c.arg("launcher").stderr(Stdio::null());
        Launcher::spawn(c).expect("start skiff launcher")
    }

    /// A pool launcher allowed to write `{"path": …}` output sinks beneath `dir`.
    pub fn launcher_with_output_dir(&self, dir: &Path) -> Launcher {
        let mut c = self.cmd();
        c.arg("launcher")
            .arg("--output-dir")
            .arg(dir)
            .stderr(Stdio::null());
        Launcher::spawn(c).expect("start skiff launcher")
    }

    /// A scratch directory for the conformance suite.
    pub fn work_dir(&self) -> PathBuf {
        let d = self.root.path().join("conformance-work");
        std::fs::create_dir_all(&d).expect("work dir");
        d
    }
}

/// Run the conformance suite and return one line per failed case (and
/// print the report, with its latencies, for the test log).
pub fn run_suite(launch: &mut dyn Launch, work_dir: &Path, label: &str) -> Vec<String> {
    let report = conformance::run_suite(launch, work_dir);
    for c in &report.cases {
        eprintln!(
            "{label}: {:<32} {:<5} launch {:>7} ms  wall {:>7} ms",
            c.name,
            if c.passed { "ok" } else { "FAIL" },
            c.launch_ms.map(|v| format!("{v:.2}")).unwrap_or_default(),
            c.wall_ms.map(|v| format!("{v:.2}")).unwrap_or_default(),
        );
    }
    report
        .failures()
        .iter()
        .map(|c| format!("{}: {}", c.name, c.reason.as_deref().unwrap_or("")))
        .collect()
}

/// The syscall probe (`syscall_probe.c`), built static once per test run
/// into a directory to mount into jobs (`DIR:/probe:ro`, run `/probe/probe
/// NAME...`). `None` (with a note) when no C compiler is present, a failure
/// with `SKIFF_REQUIRE_PRIVILEGED=1`.
pub fn syscall_probe_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let probe = build_c(
            "syscall-probe",
            "syscall_probe.c",
            "probe",
            &["-static", "-O"],
            "the syscall probe",
        )?;
        probe.parent().map(Path::to_path_buf)
    })
    .clone()
}

/// Run the probe in a job with `opts`; returns `name -> result` (`ok` or an
/// errno name).
pub fn probe_syscalls(
    e: &Env,
    runtime: Option<&str>,
    opts: &[&str],
    names: &[&str],
) -> std::collections::BTreeMap<String, String> {
    let dir = syscall_probe_dir().expect("probe");
    let vol = format!("{}:/probe:ro", dir.display());
    let mut args: Vec<&str> = opts.to_vec();
    args.extend(["-v", &vol, BUSYBOX, "/probe/probe"]);
    args.extend(names);
    let out = e.run(runtime, &args);
    assert_eq!(out.status.code(), Some(0), "probe: {}", job_stderr(&out));
    stdout(&out)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// [`backends`], then skiff's warm-sandbox path ([`WARM`]).
pub fn backends_and_warm() -> Vec<Option<&'static str>> {
    let mut v = backends();
    v.push(Some(WARM));
    v
}

/// The `skiff run` options that select `rt` (see [`Env::run`]).
pub fn runtime_args(rt: Option<&str>) -> Vec<&str> {
    match rt {
        Some(WARM) => vec!["--warm"],
        Some(r) => vec!["--runtime", r],
        None => vec![],
    }
}

/// libcontainer (`None`), then runc and crun where installed; with
/// `SKIFF_REQUIRE_PRIVILEGED=1` a missing one is a failure.
pub fn backends() -> Vec<Option<&'static str>> {
    let mut v = vec![None];
    for r in ["runc", "crun"] {
        if have(r) {
            v.push(Some(r));
        } else {
            skip_or_fail(&format!("{r} is not installed"));
        }
    }
    v
}
