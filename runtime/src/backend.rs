//! Launch backends: libcontainer in-process (the default), or an external
//! OCI runtime binary given the same `config.json` in a bundle.
//!
//! Both take a prepared bundle and the job's stdio, and return the pid to
//! wait for and the pid to signal.

use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use libcontainer::container::builder::ContainerBuilder;

use crate::timing::ms_since;
use libcontainer::syscall::syscall::SyscallType;

use crate::error::{Error, Result};

/// Which runtime launches the job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Backend {
    /// youki's libcontainer, in this (single-threaded) process.
    #[default]
    Libcontainer,
    /// An OCI runtime binary (`runc`, `crun`, `youki` or a path), run as
    /// `RUNTIME create`, `start`, and `delete` after the job (see [`launch_binary`]).
    Binary(PathBuf),
}

impl Backend {
    /// Parse `--runtime`: `libcontainer` (or empty), a name looked up in
    /// PATH, or a path.
    pub fn parse(s: &str) -> Result<Backend> {
        if s.is_empty() || s == "libcontainer" || s == "skiff" {
            return Ok(Backend::Libcontainer);
        }
        if s.contains('/') {
            return Ok(Backend::Binary(PathBuf::from(s)));
        }
        if let Some(p) = crate::path_lookup::find_on_host(s) {
            return Ok(Backend::Binary(p));
        }
        Err(Error::InvalidOption {
            what: "runtime",
            value: s.to_string(),
            detail: "not found in PATH".into(),
        })
    }

    /// Short name for reports.
    pub fn name(&self) -> String {
        match self {
            Backend::Libcontainer => "libcontainer".into(),
            Backend::Binary(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

/// The job's standard streams (container ends).
#[derive(Debug)]
pub struct JobStdio {
    /// stdin (a pipe or /dev/null).
    pub stdin: OwnedFd,
    /// stdout pipe.
    pub stdout: OwnedFd,
    /// stderr pipe.
    pub stderr: OwnedFd,
}

/// A started job.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    /// The process to wait for and signal: the job's init, a child of this process.
    pub wait_pid: i32,
    /// The job's init, when known.
    pub init_pid: Option<i32>,
    /// Milliseconds spent creating the container.
    pub create_ms: f64,
    /// Milliseconds spent starting it.
    pub start_ms: f64,
}

/// Create and start through libcontainer. Must be called from a
/// single-threaded process, one launch at a time.
///
/// `on_created` runs between create and start with the init pid (to record
/// it for `gc` and to bring `lo` up). `executor` runs in the init at the end:
/// skiff's ([`crate::exec::SkiffExecutor`]) installs the plan's seccomp
/// filter, if any, and execs the command.
pub fn launch_libcontainer(
    id: &str,
    bundle: &Path,
    state_root: &Path,
    stdio: JobStdio,
    executor: impl libcontainer::workload::Executor + 'static,
    on_created: &mut dyn FnMut(i32) -> Result<()>,
) -> Result<Started> {
    let t = Instant::now();
    let mut container = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_executor(executor)
        .with_root_path(state_root)
        .map_err(Error::ContainerCreate)?
        .with_stdin(stdio.stdin)
        .with_stdout(stdio.stdout)
        .with_stderr(stdio.stderr)
        .as_init(bundle)
        .with_systemd(false)
        .with_detach(false)
        .build()
        .map_err(Error::ContainerCreate)?;
    let pid = container
        .pid()
        .ok_or_else(|| Error::ContainerHasNoPid(id.to_string()))?
        .as_raw();
    on_created(pid)?;
    // Like the runtime binaries' create_ms, this includes `on_created`.
    let create_ms = ms_since(t);
    let t = Instant::now();
    container.start().map_err(Error::ContainerStart)?;
    Ok(Started {
        wait_pid: pid,
        init_pid: Some(pid),
        create_ms,
        start_ms: ms_since(t),
    })
}

/// Run one runtime subcommand to completion: `RUNTIME --root STATE --log
/// STATE/runtime.log ARGS...`. `stdio` is the job's (for `create`, which
/// hands it to the container); otherwise the runtime's output is discarded
/// (its errors are in the log, quoted in the error).
fn runtime_command(
    runtime: &Path,
    state_root: &Path,
    args: &[&std::ffi::OsStr],
    stdio: Option<JobStdio>,
) -> Result<()> {
    let log = state_root.join("runtime.log");
    let mut cmd = std::process::Command::new(runtime);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe calls (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            // A runtime whose launcher was killed must not go on creating a
            // container that nobody will start or clean up.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(crate::exit_code::KILLED);
            }
            Ok(())
        });
    }
    cmd.arg("--root")
        .arg(state_root)
        .arg("--log")
        .arg(&log)
        .args(args);
    match stdio {
        Some(io) => cmd
            .stdin(std::process::Stdio::from(io.stdin))
            .stdout(std::process::Stdio::from(io.stdout))
            .stderr(std::process::Stdio::from(io.stderr)),
        None => cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    };
    let what = args
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let status = cmd.status().map_err(|e| Error::RuntimeBinary {
        runtime: runtime.display().to_string(),
        detail: format!("cannot run it: {e}"),
    })?;
    if status.success() {
        return Ok(());
    }
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let tail: Vec<&str> = log_text.lines().rev().take(5).collect();
    Err(Error::RuntimeBinary {
        runtime: runtime.display().to_string(),
        detail: format!(
            "{what} failed ({status}): {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ),
    })
}

/// Make this process the reaper of its orphaned descendants, so that a
/// container's init, whose parent (`RUNTIME create`) exits, becomes our
/// child and can be waited for.
fn become_subreaper() -> Result<()> {
    // SAFETY: prctl with an integer argument.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(Error::io(
            "become child subreaper",
            "",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Create and start through an OCI runtime binary, in two steps so the
/// container's cgroup outlives its processes until skiff has read its
/// accounting ([`delete_binary`] removes it after):
///
/// 1. `RUNTIME create --bundle B --pid-file P ID`, with the job's stdio; the
///    init is reparented to this process (a child subreaper) when the
///    runtime exits;
/// 2. `on_created(init pid)`;
/// 3. `RUNTIME start ID`.
///
/// The job is then waited for and signalled directly, as with libcontainer.
pub fn launch_binary(
    runtime: &Path,
    id: &str,
    bundle: &Path,
    state_root: &Path,
    stdio: JobStdio,
    hybrid_cgroups: bool,
    on_created: &mut dyn FnMut(i32) -> Result<()>,
) -> Result<Started> {
    let t = Instant::now();
    become_subreaper()?;
    let is_crun = runtime
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("crun"));
    if is_crun && hybrid_cgroups {
        hide_unified_controllers()?;
    }
    let pid_file = state_root.join("init.pid");
    runtime_command(
        runtime,
        state_root,
        &[
            "create".as_ref(),
            "--bundle".as_ref(),
            bundle.as_os_str(),
            "--pid-file".as_ref(),
            pid_file.as_os_str(),
            id.as_ref(),
        ],
        Some(stdio),
    )?;
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .map_err(|e| Error::io("read", &pid_file, e))?
        .trim()
        .parse()
        .map_err(|_| Error::RuntimeBinary {
            runtime: runtime.display().to_string(),
            detail: format!("unreadable pid file {}", pid_file.display()),
        })?;
    on_created(pid)?;
    let create_ms = ms_since(t);
    let t = Instant::now();
    runtime_command(runtime, state_root, &["start".as_ref(), id.as_ref()], None)?;
    Ok(Started {
        wait_pid: pid,
        init_pid: Some(pid),
        create_ms,
        start_ms: ms_since(t),
    })
}

/// `RUNTIME delete --force ID`: the runtime removes its state and the
/// container's cgroup (in every hierarchy it used).
pub fn delete_binary(runtime: &Path, id: &str, state_root: &Path) -> Result<()> {
    runtime_command(
        runtime,
        state_root,
        &["delete".as_ref(), "--force".as_ref(), id.as_ref()],
        None,
    )
}

/// Reap any orphans reparented to this subreaper (the runtime's helpers).
/// Call only when no job of this process is running.
pub fn reap_orphans() -> Vec<i32> {
    let mut reaped = Vec::new();
    loop {
        // SAFETY: waitpid with a null status pointer.
        let r = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if r <= 0 {
            break;
        }
        reaped.push(r);
    }
    reaped
}

/// crun 1.8 refuses hybrid hosts because `/sys/fs/cgroup/unified/cgroup.controllers`
/// is not empty. The launcher is in a private mount namespace already, so an
/// empty file bound over it is seen by crun only (HOST-FACTS.md). Done once
/// per launcher: the mount stays for its later jobs.
fn hide_unified_controllers() -> Result<()> {
    let target = Path::new(crate::cgroups::CRUN_HYBRID_CONTROLLERS);
    if !crate::cgroups::crun_needs_hybrid_workaround() {
        return Ok(()); // absent, empty, or already hidden
    }
    // /dev/null reads as an empty file.
    nix::mount::mount(
        Some("/dev/null"),
        target,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| Error::Mount {
        what: "empty cgroup.controllers (crun hybrid workaround)",
        target: target.to_path_buf(),
        source: e.into(),
    })
}

/// Bring `lo` up in the network namespace of `pid` (Docker does this for
/// `--network none`; libcontainer does not).
pub fn loopback_up(pid: i32) -> Result<()> {
    use std::os::fd::AsRawFd;
    let own = std::fs::File::open("/proc/self/ns/net")
        .map_err(|e| Error::io("open", "/proc/self/ns/net", e))?;
    let path = format!("/proc/{pid}/ns/net");
    let theirs = std::fs::File::open(&path).map_err(|e| Error::io("open", &path, e))?;
    nix::sched::setns(&theirs, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| Error::io("setns", &path, e.into()))?;
    let result = (|| -> std::io::Result<()> {
        // SAFETY: socket/ioctl on a local ifreq that lives for the calls.
        unsafe {
            let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if sock < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut req: libc::ifreq = std::mem::zeroed();
            for (i, b) in b"lo\0".iter().enumerate() {
                req.ifr_name[i] = *b as libc::c_char;
            }
            let mut r = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req);
            if r == 0 {
                req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
                r = libc::ioctl(sock, libc::SIOCSIFFLAGS, &req);
            }
            let err = std::io::Error::last_os_error();
            libc::close(sock);
            if r != 0 {
                return Err(err);
            }
        }
        Ok(())
    })();
    nix::sched::setns(&own, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| Error::io("setns back", "/proc/self/ns/net", e.into()))?;
    let _ = own.as_raw_fd();
    result.map_err(|e| Error::io("bring up lo in", path, e))
}
