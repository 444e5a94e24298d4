//! Shared helpers for the `skiff run` integration tests: a fresh store root
//! per test with the vendored images imported, a ready `skiff` command, and
//! cleanup (and a leak check) even when the test fails.
//!
//! These tests need root, overlayfs and cgroups. When a prerequisite is
//! missing they print why and skip, unless `SKIFF_REQUIRE_PRIVILEGED=1`, in
//! which case they fail.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The skiff binary under test.
pub fn skiff_bin() -> &'static str {
    env!("CARGO_BIN_EXE_skiff")
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A vendored archive (plain `.tar`, or `.tar.gz`).
pub fn vendor_archive(name: &str) -> PathBuf {
    let plain = repo().join(format!("vendor-images/{name}.tar"));
    if plain.exists() {
        plain
    } else {
        repo().join(format!("vendor-images/{name}.tar.gz"))
    }
}

pub const BUSYBOX: &str = "skiff-vendor/busybox:latest";
pub const COMPAT: &str = "skiff-vendor/compat:latest";

fn missing_prerequisite() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !fs.contains("overlay") {
        return Some("overlayfs is not available".into());
    }
    if !Path::new("/sys/fs/cgroup").exists() {
        return Some("no cgroup filesystem".into());
    }
    if !vendor_archive("busybox").exists() {
        return Some("vendor-images/busybox archive is missing".into());
    }
    None
}

/// A test environment: a temporary store root with the vendored images.
#[derive(Debug)]
pub struct Env {
    pub root: tempfile::TempDir,
}

/// Set up, or skip (returning `None`) when privileges are missing.
pub fn env() -> Option<Env> {
    if let Some(why) = missing_prerequisite() {
        if std::env::var("SKIFF_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
            panic!("privileged prerequisite missing: {why}");
        }
        eprintln!("SKIPPED: {why} (set SKIFF_REQUIRE_PRIVILEGED=1 to make this a failure)");
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
        c.arg("run");
        if let Some(r) = runtime {
            c.args(["--runtime", r]);
        }
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
    }
}

/// Count of this process's open fds.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Mounts mentioning `needle` in the host mount table.
pub fn mounts_containing(needle: &str) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// A conformance case: one job and what Docker does with it.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub args: Vec<String>,
    pub code: i32,
    /// Exact stdout, when given.
    pub stdout: Option<String>,
    /// Substrings stdout must hold.
    pub contains: Vec<&'static str>,
}

fn case(name: &'static str, args: &[&str], code: i32, stdout: Option<&str>) -> Case {
    Case {
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
        code,
        stdout: stdout.map(str::to_string),
        contains: Vec::new(),
    }
}

/// The Docker behaviours of issue 3, defined once and run by every backend.
pub fn conformance_cases() -> Vec<Case> {
    let path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    let mut v = vec![
        case("echo", &[BUSYBOX, "echo", "hello"], 0, Some("hello\n")),
        case(
            "entrypoint+cmd",
            &[COMPAT],
            0,
            Some("compat: default-cmd\n"),
        ),
        case(
            "cmd override",
            &[COMPAT, "hello", "world"],
            0,
            Some("compat: hello world\n"),
        ),
        case(
            "entrypoint override drops cmd",
            &["--entrypoint", "id", COMPAT],
            0,
            Some("uid=1000(app) gid=1000(app) groups=1000(app),2000(extra)\n"),
        ),
        case(
            "empty entrypoint",
            &["--entrypoint", "", COMPAT, "echo", "x"],
            0,
            Some("x\n"),
        ),
        case(
            "image workdir",
            &["--entrypoint", "pwd", COMPAT],
            0,
            Some("/home/app\n"),
        ),
        case(
            "workdir created",
            &["-w", "/new/dir", BUSYBOX, "pwd"],
            0,
            Some("/new/dir\n"),
        ),
        case(
            "env merge",
            &[
                "-e",
                "FOO=bar",
                "-e",
                "GREETING=hi",
                "--entrypoint",
                "sh",
                COMPAT,
                "-c",
                "echo $GREETING $FOO $COMPAT_LEVEL $HOME $PATH",
            ],
            0,
            Some(&format!("hi bar 3 /home/app {path}\n")),
        ),
        case(
            "default PATH and HOME for root",
            &[BUSYBOX, "sh", "-c", "echo $HOME"],
            0,
            Some("/root\n"),
        ),
        case(
            "user by name",
            &["-u", "nobody", BUSYBOX, "id"],
            0,
            Some("uid=65534(nobody) gid=65534(nobody) groups=65534(nobody)\n"),
        ),
        case(
            "root by default",
            &[BUSYBOX, "id"],
            0,
            Some("uid=0(root) gid=0(root) groups=0(root)\n"),
        ),
        case(
            "uid:gid",
            &["-u", "1000:2000", "--entrypoint", "id", COMPAT],
            0,
            Some("uid=1000(app) gid=2000(extra) groups=2000(extra)\n"),
        ),
        case(
            "unknown numeric uid",
            &["-u", "4242", BUSYBOX, "id", "-u"],
            0,
            Some("4242\n"),
        ),
        case(
            "unknown user fails",
            &["-u", "ghost", BUSYBOX, "true"],
            125,
            None,
        ),
        case(
            "exit status",
            &[BUSYBOX, "sh", "-c", "exit 42"],
            42,
            Some(""),
        ),
        case("not found", &[BUSYBOX, "no-such-command"], 127, Some("")),
        case("not executable", &[BUSYBOX, "/etc/passwd"], 126, Some("")),
        case(
            "hostname",
            &[
                "--hostname",
                "jobhost",
                BUSYBOX,
                "sh",
                "-c",
                "hostname; cat /etc/hostname",
            ],
            0,
            Some("jobhost\njobhost\n"),
        ),
        case(
            "hosts file",
            &[
                "--hostname",
                "h1",
                BUSYBOX,
                "grep",
                "-c",
                "h1",
                "/etc/hosts",
            ],
            0,
            Some("1\n"),
        ),
        case(
            "network none: only lo, up",
            &[
                BUSYBOX,
                "sh",
                "-c",
                "ls /sys/class/net; cat /sys/class/net/lo/flags",
            ],
            0,
            Some("lo\n0x9\n"),
        ),
        case(
            "read-only rootfs",
            &["--read-only", BUSYBOX, "touch", "/x"],
            1,
            Some(""),
        ),
        case(
            "read-only with tmpfs",
            &[
                "--read-only",
                "--tmpfs",
                "/scratch",
                BUSYBOX,
                "sh",
                "-c",
                "touch /scratch/x && echo ok",
            ],
            0,
            Some("ok\n"),
        ),
        case(
            "writable rootfs",
            &[BUSYBOX, "sh", "-c", "echo a > /x && cat /x"],
            0,
            Some("a\n"),
        ),
        case(
            "pid namespace",
            &[BUSYBOX, "sh", "-c", "echo $$"],
            0,
            Some("1\n"),
        ),
        case(
            "whiteouts",
            &["--entrypoint", "ls", COMPAT, "/data/replaced"],
            0,
            Some("new.txt\n"),
        ),
    ];
    // The subshell's forks fail at the limit; the outer shell goes on.
    v.push(case(
        "pids limit stops forks",
        &[
            "--pids-limit",
            "4",
            BUSYBOX,
            "sh",
            "-c",
            "(for i in 1 2 3 4 5 6 7 8; do sleep 1 & done) 2>/dev/null; echo rc=$?",
        ],
        0,
        Some("rc=2\n"),
    ));
    v
}

/// Run every conformance case on `runtime`; return the failures.
pub fn run_conformance(env: &Env, runtime: Option<&str>) -> Vec<String> {
    let mut failures = Vec::new();
    for c in conformance_cases() {
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let out = env.run(runtime, &args);
        let code = out.status.code().unwrap_or(-1);
        let so = stdout(&out);
        let mut bad = Vec::new();
        if code != c.code {
            bad.push(format!("exit {code}, want {}", c.code));
        }
        if let Some(want) = &c.stdout {
            if &so != want {
                bad.push(format!("stdout {so:?}, want {want:?}"));
            }
        }
        for s in &c.contains {
            if !so.contains(s) {
                bad.push(format!("stdout lacks {s:?}"));
            }
        }
        if !bad.is_empty() {
            failures.push(format!(
                "{}: {} (stderr: {})",
                c.name,
                bad.join("; "),
                job_stderr(&out).trim()
            ));
        }
    }
    failures
}
