//! The conformance suite: a fixed list of small jobs on the vendored images,
//! each with the result `docker run` gives, defined once and run by the
//! integration tests, `skiff check --image` and `skiff matrix`.
//!
//! ```text
//! cases(work_dir) ──► [Case { name, area, image, job: JobSpec, expect, runs }]
//!                          │
//!   run_suite(&mut dyn Launch, work_dir)      one Launch::launch per run
//!                          │
//!                          ▼
//! SuiteReport { cases: [CaseReport { name, passed, reason, launch_ms, … }] }
//! ```
//!
//! A [`Launch`] runs one job to completion and hands back its
//! [`JobResult`] and output. Two come with the crate:
//!
//! - [`InProcess`]: a [`Runner`] in this process (which must be
//!   single-threaded, and moves into a private mount namespace);
//! - [`runtime::pool::Launcher`]: a `skiff launcher` child process, for callers
//!   that have threads (test harnesses, schedulers).
//!
//! The suite needs the images [`BUSYBOX`] and [`COMPAT`] in the store
//! ([`import_vendor_images`] loads them from `vendor-images/`). Nothing in it
//! depends on timing: latency is measured and reported, never judged.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use imagestore::Store;
use serde::Serialize;

use runtime::backend::Backend;
use runtime::error::Result;
use runtime::job::{JobSpec, Volume};
use runtime::run::{JobIo, JobResult, Runner};

/// The vendored busybox image.
pub const BUSYBOX: &str = "skiff-vendor/busybox:latest";
/// The vendored compat image (user `app`, workdir, entrypoint + cmd, whiteouts).
pub const COMPAT: &str = "skiff-vendor/compat:latest";
/// The images the suite runs, with the stem of their archive in
/// `vendor-images/` (`busybox.tar`, or `busybox.tar.gz`).
pub const IMAGES: &[(&str, &str)] = &[(BUSYBOX, "busybox"), (COMPAT, "compat")];

/// Exit status of a job that skiff itself could not run (Docker's 125).
pub const EXIT_SKIFF_FAILED: i32 = runtime::exit_code::SKIFF_FAILED;

/// Output kept per stream when a [`Launch`] captures it.
pub const OUTPUT_CAP: u64 = 1 << 20;

/// What part of Docker's behaviour a case covers (for grouping in reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Area {
    /// Entrypoint and Cmd, environment, working directory.
    Process,
    /// `-u`, `/etc/passwd` and `/etc/group`, supplementary groups.
    User,
    /// Exit statuses: the job's, 126, 127, 125.
    Exit,
    /// Death by signal, timeouts.
    Signals,
    /// Memory, pids, CPU limits and their accounting (OOM, peak, CPU time).
    Limits,
    /// Namespaces, read-only root, volumes, tmpfs, hostname and hosts.
    Isolation,
    /// The image's layers: whiteouts and opaque directories.
    Image,
    /// The launch latency (measured, not judged).
    Latency,
}

/// The expected result of a case. Everything listed is checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expect {
    /// Docker's exit status.
    pub exit_code: i32,
    /// The exact stdout, when given.
    pub stdout: Option<String>,
    /// The signal that killed the job, when it must be one.
    pub signal: Option<i32>,
    /// Whether the timeout fired.
    pub timed_out: bool,
    /// Whether the job was OOM-killed.
    pub oom_killed: bool,
    /// The result must report `cpu_usec` and a non-zero `peak_memory_bytes`.
    pub accounting: bool,
    /// Host files that must hold this content afterwards.
    pub host_files: Vec<(PathBuf, String)>,
}

/// One conformance job.
#[derive(Debug, Clone)]
pub struct Case {
    /// Short unique name, e.g. `"entrypoint+cmd"`.
    pub name: &'static str,
    /// What it covers.
    pub area: Area,
    /// Image reference ([`BUSYBOX`] or [`COMPAT`]).
    pub image: &'static str,
    /// The request, as `skiff run` options would give it.
    pub job: JobSpec,
    /// Host files to write before the job (volumes).
    pub setup_files: Vec<(PathBuf, String)>,
    /// What must come out.
    pub expect: Expect,
    /// How many times to run it (the latency case runs several times and
    /// reports the median).
    pub runs: u32,
}

/// A finished job as a [`Launch`] saw it.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The result (`exit_code` 125 with defaults when skiff failed).
    pub result: JobResult,
    /// The job's stdout.
    pub stdout: String,
    /// The job's stderr, or skiff's error when it failed.
    pub stderr: String,
}

impl Outcome {
    /// The outcome of a job skiff could not run.
    pub fn failed(error: String) -> Outcome {
        Outcome {
            result: JobResult {
                exit_code: EXIT_SKIFF_FAILED,
                ..Default::default()
            },
            stdout: String::new(),
            stderr: error,
        }
    }
}

/// Runs one job to completion. `Err` means the harness itself broke (not
/// the job, and not skiff refusing it, which is an [`Outcome::failed`]).
pub trait Launch {
    /// Run `job` from `image` and wait for it.
    fn launch(&mut self, image: &str, job: &JobSpec) -> std::result::Result<Outcome, LaunchError>;
}

/// Why a [`Launch`] could not run a job at all: the harness broke.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A memory file to capture one of the job's streams could not be
    /// created.
    #[error("cannot create the capture file for {stream}")]
    CreateCapture {
        /// `stdout` or `stderr`.
        stream: &'static str,
        /// Why.
        #[source]
        source: Box<runtime::Error>,
    },
    /// A capture file's descriptor could not be duplicated for the job.
    #[error("cannot duplicate the capture file for {stream}")]
    CloneCapture {
        /// `stdout` or `stderr`.
        stream: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The request could not be sent to the pool launcher, or its reply
    /// read.
    #[error("cannot send the request to the launcher")]
    Request(#[source] Box<runtime::Error>),
    /// Another implementation of [`Launch`] (a test harness driving
    /// `skiff run`, say) failed; its own error.
    #[error("the launch harness failed")]
    Harness(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    /// [`Case::name`].
    pub name: String,
    /// [`Case::area`].
    pub area: Area,
    /// Whether every run matched [`Case::expect`].
    pub passed: bool,
    /// Why not, with the job's stderr.
    pub reason: Option<String>,
    /// Median `launch_ms` over the runs (from the start of the run until the
    /// job was started), when the job launched.
    pub launch_ms: Option<f64>,
    /// Median `wall_ms` over the runs.
    pub wall_ms: Option<f64>,
    /// Runs made.
    pub runs: u32,
}

/// The results of a suite run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SuiteReport {
    /// One report per case, in suite order.
    pub cases: Vec<CaseReport>,
}

impl SuiteReport {
    /// Whether every case passed.
    pub fn passed(&self) -> bool {
        self.cases.iter().all(|c| c.passed)
    }

    /// The cases that failed.
    pub fn failures(&self) -> Vec<&CaseReport> {
        self.cases.iter().filter(|c| !c.passed).collect()
    }

    /// The measured launch latency: the median `launch_ms` of the latency case.
    pub fn launch_latency_ms(&self) -> Option<f64> {
        self.cases
            .iter()
            .find(|c| c.area == Area::Latency)
            .and_then(|c| c.launch_ms)
    }
}

fn argv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn stdout_is(s: &str) -> Option<String> {
    Some(s.to_string())
}

/// A case that runs `command` with default options and expects `code` and
/// `stdout`.
fn simple(
    name: &'static str,
    area: Area,
    image: &'static str,
    command: &[&str],
    code: i32,
    stdout: Option<String>,
) -> Case {
    Case {
        name,
        area,
        image,
        job: JobSpec {
            command: argv(command),
            ..Default::default()
        },
        setup_files: Vec::new(),
        expect: Expect {
            exit_code: code,
            stdout,
            ..Default::default()
        },
        runs: 1,
    }
}

/// The same with changes to the job.
fn with(mut c: Case, f: impl FnOnce(&mut JobSpec)) -> Case {
    f(&mut c.job);
    c
}

/// The suite. `work_dir` is a host directory the caller owns; the volume
/// case mounts `work_dir/volume` (written by [`run_case`] before the job).
pub fn cases(work_dir: &Path) -> Vec<Case> {
    use Area::*;
    let path = runtime::image_process::DEFAULT_PATH;
    let vol = work_dir.join("volume");
    let mut v = vec![
        simple(
            "echo",
            Process,
            BUSYBOX,
            &["echo", "hello"],
            0,
            stdout_is("hello\n"),
        ),
        simple(
            "entrypoint+cmd",
            Process,
            COMPAT,
            &[],
            0,
            stdout_is("compat: default-cmd\n"),
        ),
        simple(
            "cmd override",
            Process,
            COMPAT,
            &["hello", "world"],
            0,
            stdout_is("compat: hello world\n"),
        ),
        with(
            simple(
                "entrypoint override drops cmd",
                Process,
                COMPAT,
                &[],
                0,
                stdout_is("uid=1000(app) gid=1000(app) groups=1000(app),2000(extra)\n"),
            ),
            |j| j.entrypoint = Some(argv(&["id"])),
        ),
        with(
            simple(
                "empty entrypoint",
                Process,
                COMPAT,
                &["echo", "x"],
                0,
                stdout_is("x\n"),
            ),
            |j| j.entrypoint = Some(Vec::new()),
        ),
        with(
            simple(
                "image workdir",
                Process,
                COMPAT,
                &[],
                0,
                stdout_is("/home/app\n"),
            ),
            |j| j.entrypoint = Some(argv(&["pwd"])),
        ),
        with(
            simple(
                "workdir created",
                Process,
                BUSYBOX,
                &["pwd"],
                0,
                stdout_is("/new/dir\n"),
            ),
            |j| j.workdir = Some("/new/dir".into()),
        ),
        with(
            simple(
                "env merge",
                Process,
                COMPAT,
                &["-c", "echo $GREETING $FOO $COMPAT_LEVEL $HOME $PATH"],
                0,
                Some(format!("hi bar 3 /home/app {path}\n")),
            ),
            |j| {
                j.env = argv(&["FOO=bar", "GREETING=hi"]);
                j.entrypoint = Some(argv(&["sh"]));
            },
        ),
        simple(
            "default HOME for root",
            Process,
            BUSYBOX,
            &["sh", "-c", "echo $HOME"],
            0,
            stdout_is("/root\n"),
        ),
        with(
            simple(
                "user by name",
                User,
                BUSYBOX,
                &["id"],
                0,
                stdout_is("uid=65534(nobody) gid=65534(nobody) groups=65534(nobody)\n"),
            ),
            |j| j.user = Some("nobody".into()),
        ),
        simple(
            "root by default",
            User,
            BUSYBOX,
            &["id"],
            0,
            stdout_is("uid=0(root) gid=0(root) groups=0(root)\n"),
        ),
        with(
            simple(
                "uid:gid",
                User,
                COMPAT,
                &[],
                0,
                stdout_is("uid=1000(app) gid=2000(extra) groups=2000(extra)\n"),
            ),
            |j| {
                j.user = Some("1000:2000".into());
                j.entrypoint = Some(argv(&["id"]));
            },
        ),
        with(
            simple(
                "unknown numeric uid",
                User,
                BUSYBOX,
                &["id", "-u"],
                0,
                stdout_is("4242\n"),
            ),
            |j| j.user = Some("4242".into()),
        ),
        with(
            simple(
                "unknown user fails",
                User,
                BUSYBOX,
                &["true"],
                EXIT_SKIFF_FAILED,
                None,
            ),
            |j| j.user = Some("ghost".into()),
        ),
        simple(
            "exit status",
            Exit,
            BUSYBOX,
            &["sh", "-c", "exit 42"],
            42,
            stdout_is(""),
        ),
        simple(
            "not found",
            Exit,
            BUSYBOX,
            &["no-such-command"],
            127,
            stdout_is(""),
        ),
        simple(
            "not executable",
            Exit,
            BUSYBOX,
            &["/etc/passwd"],
            126,
            stdout_is(""),
        ),
        // A fault kills even a pid 1: 128 + SIGSEGV.
        {
            let mut c = simple(
                "killed by a signal",
                Signals,
                BUSYBOX,
                &["sh", "-c", "ulimit -s 256; f() { f; }; f"],
                128 + libc::SIGSEGV,
                None,
            );
            c.expect.signal = Some(libc::SIGSEGV);
            c
        },
        // sleep as pid 1 has no TERM handler, so the SIGKILL after the grace ends it.
        {
            let mut c = with(
                simple(
                    "timeout",
                    Signals,
                    BUSYBOX,
                    &["sleep", "30"],
                    128 + libc::SIGKILL,
                    stdout_is(""),
                ),
                |j| {
                    j.timeout = Some(Duration::from_millis(300));
                    j.stop_timeout = Duration::from_millis(100);
                },
            );
            c.expect.signal = Some(libc::SIGKILL);
            c.expect.timed_out = true;
            c
        },
        {
            let mut c = with(
                simple(
                    "timeout, TERM handled",
                    Signals,
                    BUSYBOX,
                    &[
                        "sh",
                        "-c",
                        "trap 'echo term; exit 7' TERM; while true; do sleep 0.05; done",
                    ],
                    7,
                    stdout_is("term\n"),
                ),
                |j| {
                    j.timeout = Some(Duration::from_millis(300));
                    j.stop_timeout = Duration::from_secs(5);
                },
            );
            c.expect.timed_out = true;
            c
        },
        {
            let mut c = with(
                simple(
                    "oom kill",
                    Limits,
                    BUSYBOX,
                    &[
                        "sh",
                        "-c",
                        "x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo survived",
                    ],
                    137,
                    None,
                ),
                // 32 MiB leaves room for a Go runtime's init (runc's) in
                // the job's cgroup before `start`: under a slow QEMU guest
                // with cgroup v2, 16 MiB once killed runc's init before
                // `start` ("cannot start a container that has stopped").
                |j| j.limits.memory_bytes = Some(32 << 20),
            );
            c.expect.oom_killed = true;
            c.expect.accounting = true;
            c
        },
        // The subshell's forks fail at the limit; the outer shell goes on.
        // The limit leaves room for a Go runtime's init (runc's): under a
        // slow QEMU guest its threads alone passed a limit of 4, so runc's
        // init died before `start`.
        with(
            simple(
                "pids limit stops forks",
                Limits,
                BUSYBOX,
                &[
                    "sh",
                    "-c",
                    "(i=0; while [ $i -lt 40 ]; do sleep 1 & i=$((i+1)); done) 2>/dev/null; echo rc=$?",
                ],
                0,
                stdout_is("rc=2\n"),
            ),
            |j| j.limits.pids = Some(24),
        ),
        {
            let mut c = with(
                simple(
                    "cpu and memory accounting",
                    Limits,
                    BUSYBOX,
                    &[
                        "sh",
                        "-c",
                        "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; echo $i",
                    ],
                    0,
                    stdout_is("3000\n"),
                ),
                |j| {
                    j.limits = runtime::job::Limits {
                        memory_bytes: Some(64 << 20),
                        memory_swap_bytes: None,
                        cpus: Some(1.0),
                        cpu_shares: Some(512),
                        pids: Some(64),
                    }
                },
            );
            c.expect.accounting = true;
            c
        },
        // The job's own cgroup, read-only at /sys/fs/cgroup, as Docker
        // mounts it: v1 hierarchies on the host, cgroup2 in a cgroup
        // namespace on v2. One script reads either layout. The write puts
        // the limit back unchanged, which succeeds when the mount is
        // writable (a lower value could fail for usage instead: EBUSY).
        with(
            simple(
                "cgroup files show the job's limits, read-only",
                Limits,
                BUSYBOX,
                &[
                    "sh",
                    "-c",
                    "c=/sys/fs/cgroup; \
                     if [ -f $c/cgroup.controllers ]; then \
                       cat $c/cpu.max $c/memory.max $c/pids.max; f=$c/memory.max; \
                     else \
                       echo $(cat $c/cpu/cpu.cfs_quota_us) $(cat $c/cpu/cpu.cfs_period_us); \
                       cat $c/memory/memory.limit_in_bytes $c/pids/pids.max; \
                       f=$c/memory/memory.limit_in_bytes; \
                     fi; \
                     (cat $f > $f) 2>/dev/null && echo writable || echo read-only",
                ],
                0,
                stdout_is("50000 100000\n67108864\n50\nread-only\n"),
            ),
            |j| {
                j.limits.cpus = Some(0.5);
                j.limits.memory_bytes = Some(64 << 20);
                j.limits.pids = Some(50);
            },
        ),
        with(
            simple(
                "hostname",
                Isolation,
                BUSYBOX,
                &["sh", "-c", "hostname; cat /etc/hostname"],
                0,
                stdout_is("jobhost\njobhost\n"),
            ),
            |j| j.hostname = Some("jobhost".into()),
        ),
        // As Docker with --network none: loopback entries, no hostname line.
        with(
            simple(
                "hosts file",
                Isolation,
                BUSYBOX,
                &["sh", "-c", "grep -c localhost /etc/hosts; grep -c h1 /etc/hosts"],
                1,
                stdout_is("2\n0\n"),
            ),
            |j| j.hostname = Some("h1".into()),
        ),
        simple(
            "network none: only lo, up",
            Isolation,
            BUSYBOX,
            &["sh", "-c", "ls /sys/class/net; cat /sys/class/net/lo/flags"],
            0,
            stdout_is("lo\n0x9\n"),
        ),
        simple(
            "pid namespace",
            Isolation,
            BUSYBOX,
            &["sh", "-c", "echo $$"],
            0,
            stdout_is("1\n"),
        ),
        with(
            simple(
                "read-only rootfs",
                Isolation,
                BUSYBOX,
                &["touch", "/x"],
                1,
                stdout_is(""),
            ),
            |j| j.read_only = true,
        ),
        with(
            simple(
                "read-only with tmpfs",
                Isolation,
                BUSYBOX,
                &["sh", "-c", "touch /scratch/x && echo ok"],
                0,
                stdout_is("ok\n"),
            ),
            |j| {
                j.read_only = true;
                j.tmpfs = argv(&["/scratch"]);
            },
        ),
        simple(
            "writable rootfs",
            Isolation,
            BUSYBOX,
            &["sh", "-c", "echo a > /x && cat /x"],
            0,
            stdout_is("a\n"),
        ),
        {
            let mut c = with(
                simple(
                    "volume rw and ro",
                    Isolation,
                    BUSYBOX,
                    &[
                        "sh",
                        "-c",
                        "cat /data/in.txt; echo out > /data/out.txt; \
                         (echo x > /ro/nope.txt) 2>/dev/null || echo ro-refused",
                    ],
                    0,
                    stdout_is("from host\nro-refused\n"),
                ),
                |j| {
                    j.volumes = vec![
                        Volume {
                            host: vol.clone(),
                            target: "/data".into(),
                            read_only: false,
                        },
                        Volume {
                            host: vol.clone(),
                            target: "/ro".into(),
                            read_only: true,
                        },
                    ]
                },
            );
            c.setup_files = vec![(vol.join("in.txt"), "from host\n".into())];
            c.expect.host_files = vec![(vol.join("out.txt"), "out\n".into())];
            c
        },
        with(
            simple(
                "whiteout and opaque dir",
                Image,
                COMPAT,
                &["/data", "/data/replaced"],
                0,
                stdout_is("/data:\nkept.txt\nlinks\nreplaced\n\n/data/replaced:\nnew.txt\n"),
            ),
            |j| j.entrypoint = Some(argv(&["ls", "-A"])),
        ),
    ];
    let mut latency = simple("launch latency", Latency, BUSYBOX, &["true"], 0, None);
    latency.runs = 10;
    v.push(latency);
    v
}

/// Compare one outcome with what the case expects; `Err` says every mismatch.
pub fn check(case: &Case, out: &Outcome) -> std::result::Result<(), String> {
    let e = &case.expect;
    let r = &out.result;
    let mut bad = Vec::new();
    if r.exit_code != e.exit_code {
        bad.push(format!("exit {}, want {}", r.exit_code, e.exit_code));
    }
    if let Some(want) = &e.stdout {
        if &out.stdout != want {
            bad.push(format!("stdout {:?}, want {want:?}", out.stdout));
        }
    }
    if e.signal.is_some() && r.signal != e.signal {
        bad.push(format!("signal {:?}, want {:?}", r.signal, e.signal));
    }
    if r.timed_out != e.timed_out {
        bad.push(format!("timed_out {}, want {}", r.timed_out, e.timed_out));
    }
    if r.oom_killed != e.oom_killed {
        bad.push(format!(
            "oom_killed {}, want {}",
            r.oom_killed, e.oom_killed
        ));
    }
    if e.accounting {
        if r.cpu_usec.is_none() {
            bad.push("cpu_usec not reported".into());
        }
        if r.peak_memory_bytes.unwrap_or(0) == 0 {
            bad.push(format!(
                "peak_memory_bytes {:?}, want > 0",
                r.peak_memory_bytes
            ));
        }
    }
    for (p, want) in &e.host_files {
        match fs::read_to_string(p) {
            Ok(got) if &got == want => {}
            Ok(got) => bad.push(format!("{} holds {got:?}, want {want:?}", p.display())),
            Err(err) => bad.push(format!("{}: {err}", p.display())),
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        let stderr: String = out.stderr.trim().chars().take(2000).collect();
        Err(format!("{} (stderr: {stderr})", bad.join("; ")))
    }
}

fn setup(case: &Case) -> std::result::Result<(), String> {
    let prepare = |p: &Path, text: Option<&str>| -> std::io::Result<()> {
        if let Some(dir) = p.parent() {
            fs::create_dir_all(dir)?;
        }
        match text {
            Some(t) => fs::write(p, t),
            None => match fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    };
    for (p, text) in &case.setup_files {
        prepare(p, Some(text)).map_err(|e| format!("set up {}: {e}", p.display()))?;
    }
    for (p, _) in &case.expect.host_files {
        prepare(p, None).map_err(|e| format!("set up {}: {e}", p.display()))?;
    }
    Ok(())
}

/// Run one case ([`Case::runs`] times) and judge it.
pub fn run_case(launch: &mut dyn Launch, case: &Case) -> CaseReport {
    let mut report = CaseReport {
        name: case.name.to_string(),
        area: case.area,
        passed: false,
        reason: None,
        launch_ms: None,
        wall_ms: None,
        runs: 0,
    };
    let (mut launch_ms, mut wall_ms) = (Vec::new(), Vec::new());
    for _ in 0..case.runs.max(1) {
        if let Err(e) = setup(case) {
            report.reason = Some(e);
            return report;
        }
        report.runs += 1;
        let out = match launch.launch(case.image, &case.job) {
            Ok(o) => o,
            Err(e) => {
                report.reason = Some(format!("launch failed: {}", error_chain(&e)));
                return report;
            }
        };
        if out.result.launch_ms > 0.0 {
            launch_ms.push(out.result.launch_ms);
            wall_ms.push(out.result.wall_ms);
        }
        if let Err(e) = check(case, &out) {
            report.reason = Some(e);
            break;
        }
    }
    report.passed = report.reason.is_none();
    report.launch_ms = runtime::timing::median(&launch_ms);
    report.wall_ms = runtime::timing::median(&wall_ms);
    report
}

/// Run the whole suite. `work_dir` must exist; the suite writes only below
/// `work_dir/volume`.
pub fn run_suite(launch: &mut dyn Launch, work_dir: &Path) -> SuiteReport {
    SuiteReport {
        cases: cases(work_dir)
            .iter()
            .map(|c| run_case(launch, c))
            .collect(),
    }
}

/// The images of [`IMAGES`] that `store` lacks.
pub fn missing_images(store: &Store) -> Vec<&'static str> {
    IMAGES
        .iter()
        .filter(|(r, _)| store.resolve(r).is_err())
        .map(|(r, _)| *r)
        .collect()
}

/// Import the suite's images that `store` lacks from `vendor_dir`
/// (the repository's `vendor-images/`).
pub fn import_vendor_images(store: &Store, vendor_dir: &Path) -> Result<()> {
    for (reference, stem) in IMAGES {
        if store.resolve(reference).is_ok() {
            continue;
        }
        let plain = vendor_dir.join(format!("{stem}.tar"));
        let archive = if plain.exists() {
            plain
        } else {
            vendor_dir.join(format!("{stem}.tar.gz"))
        };
        store.import(
            &imagestore::Input::Path(archive),
            &imagestore::ImportOptions::default(),
        )?;
    }
    Ok(())
}

pub use runtime::capture::{capture_file, read_capture};
pub use runtime::error::error_chain;

/// Jobs launched by a [`Runner`] in this process. The process must be
/// single-threaded for the libcontainer backend, and [`Runner::new`] moves
/// it into a private mount namespace.
#[derive(Debug)]
pub struct InProcess {
    runner: Runner,
    backend: Backend,
    /// Every job through a warm sandbox ([`InProcess::warm`]).
    warm: Option<runtime::warm::WarmPolicy>,
}

impl InProcess {
    /// A launcher on `store` through `backend`.
    pub fn new(store: Store, backend: Backend) -> Result<InProcess> {
        Ok(InProcess {
            runner: Runner::new(store)?,
            backend,
            warm: None,
        })
    }

    /// A launcher on `store` that puts every job through a warm sandbox:
    /// a waiting one when the previous job left one of the same shape,
    /// else one made on the job's path. Used sandboxes are torn down and
    /// the stock refilled between jobs, as a pool launcher does.
    pub fn warm(store: Store) -> Result<InProcess> {
        let mut runner = Runner::new(store)?;
        runner.set_warm(runtime::warm::WarmConfig {
            total: 2,
            per_key: 1,
            ..Default::default()
        });
        Ok(InProcess {
            runner,
            backend: Backend::Libcontainer,
            warm: Some(runtime::warm::WarmPolicy::Require),
        })
    }
}

impl Launch for InProcess {
    fn launch(&mut self, image: &str, job: &JobSpec) -> std::result::Result<Outcome, LaunchError> {
        let mut out =
            capture_file("skiff-stdout").map_err(|source| LaunchError::CreateCapture {
                stream: "stdout",
                source: Box::new(source),
            })?;
        let mut err =
            capture_file("skiff-stderr").map_err(|source| LaunchError::CreateCapture {
                stream: "stderr",
                source: Box::new(source),
            })?;
        let io = JobIo::Capture {
            stdout: out
                .try_clone()
                .map_err(|source| LaunchError::CloneCapture {
                    stream: "stdout",
                    source,
                })?,
            stderr: err
                .try_clone()
                .map_err(|source| LaunchError::CloneCapture {
                    stream: "stderr",
                    source,
                })?,
            cap: OUTPUT_CAP,
        };
        let resolved = self
            .runner
            .store()
            .resolve(image)
            .map_err(runtime::Error::from);
        let ran = resolved.and_then(|rec| match self.warm {
            Some(policy) => {
                let r =
                    self.runner
                        .run_pooled(&rec.image_id(), job.clone(), &self.backend, io, policy);
                self.runner.warm_after_reply();
                while self.runner.warm_refill_one() {}
                r
            }
            None => self
                .runner
                .run(&rec.image_id(), job.clone(), &self.backend, io),
        });
        match ran {
            Ok(result) => Ok(Outcome {
                result,
                stdout: read_capture(&mut out),
                stderr: read_capture(&mut err),
            }),
            Err(e) => Ok(Outcome::failed(error_chain(&e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cases_names_unique_and_areas_covered() {
        let cs = cases(Path::new("/w"));
        let mut names: Vec<&str> = cs.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), cs.len(), "duplicate case names");
        for area in [
            Area::Process,
            Area::User,
            Area::Exit,
            Area::Signals,
            Area::Limits,
            Area::Isolation,
            Area::Image,
            Area::Latency,
        ] {
            assert!(cs.iter().any(|c| c.area == area), "{area:?} not covered");
        }
        let vol = cs
            .iter()
            .find(|c| !c.job.volumes.is_empty())
            .expect("volume case");
        assert!(vol.job.volumes[0].host.starts_with("/w"));
    }

    #[test]
    fn test_check_reports_every_mismatch() {
        let c = simple("x", Area::Exit, BUSYBOX, &["true"], 3, stdout_is("a\n"));
        let out = Outcome {
            result: JobResult {
                exit_code: 0,
                timed_out: true,
                ..Default::default()
            },
            stdout: "b\n".into(),
            stderr: "boom".into(),
        };
        let e = check(&c, &out).expect_err("mismatch");
        assert!(e.contains("exit 0, want 3"), "{e}");
        assert!(e.contains("stdout"), "{e}");
        assert!(e.contains("timed_out"), "{e}");
        assert!(e.contains("boom"), "{e}");
        let ok = Outcome {
            result: JobResult {
                exit_code: 3,
                ..Default::default()
            },
            stdout: "a\n".into(),
            stderr: String::new(),
        };
        assert!(check(&c, &ok).is_ok());
    }

    /// A fake launcher: answers from a function, counts calls.
    struct Fake(u32, fn(&JobSpec) -> Outcome);

    impl Launch for Fake {
        fn launch(&mut self, _: &str, job: &JobSpec) -> std::result::Result<Outcome, LaunchError> {
            self.0 += 1;
            Ok((self.1)(job))
        }
    }

    #[test]
    fn test_run_case_repeats_and_takes_the_median() {
        let mut c = simple("lat", Area::Latency, BUSYBOX, &["true"], 0, None);
        c.runs = 3;
        let mut fake = Fake(0, |_| Outcome {
            result: JobResult {
                launch_ms: 5.0,
                wall_ms: 7.0,
                ..Default::default()
            },
            ..Default::default()
        });
        let r = run_case(&mut fake, &c);
        assert!(r.passed, "{r:?}");
        assert_eq!((fake.0, r.runs), (3, 3));
        assert_eq!(r.launch_ms, Some(5.0));
        let suite = SuiteReport { cases: vec![r] };
        assert_eq!(suite.launch_latency_ms(), Some(5.0));
        assert!(suite.passed());
    }

    #[test]
    fn test_run_case_volume_files_are_set_up() {
        let dir = tempfile::tempdir().expect("tmp");
        let cs = cases(dir.path());
        let c = cs
            .iter()
            .find(|c| !c.expect.host_files.is_empty())
            .expect("volume case");
        // The fake job writes what the real one would.
        let mut fake = Fake(0, |job| {
            let host = &job.volumes[0].host;
            let input = fs::read_to_string(host.join("in.txt")).unwrap_or_default();
            let _ = fs::write(host.join("out.txt"), "out\n");
            Outcome {
                stdout: format!("{input}ro-refused\n"),
                ..Default::default()
            }
        });
        let r = run_case(&mut fake, c);
        assert!(r.passed, "{r:?}");
    }
}
