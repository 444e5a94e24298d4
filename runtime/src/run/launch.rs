//! Phase 4, launch: the job's stdio pipes, then create and start through
//! the backend; between the two the init pid goes into the job record (for
//! `gc`) and `lo` comes up (`--network none`).

use std::fs;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::backend::{self, Backend, JobStdio, Started};
use crate::cgroups::CgroupVersion;
use crate::error::{Error, IoContext, Result};
use crate::job::NetworkMode;
use crate::state::process_start_time;
use crate::supervise::SignalGuard;

use super::spec::Ready;
use super::{JobCtx, Runner};

/// A started job and the launcher's ends of its stdio.
#[derive(Debug)]
pub(crate) struct Launched {
    /// Pids and create/start timings.
    pub(crate) started: Started,
    /// Forwarded signals, blocked until the job ends.
    pub(crate) signals: SignalGuard,
    /// Read end of the job's stdout.
    pub(crate) out_r: OwnedFd,
    /// Read end of the job's stderr.
    pub(crate) err_r: OwnedFd,
    /// The caller's stdin and the job's stdin pipe (`-i`).
    pub(crate) stdin_feed: Option<(RawFd, OwnedFd)>,
}

/// A close-on-exec pipe (read end, write end).
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::io("create", "pipe", std::io::Error::last_os_error()));
    }
    // SAFETY: two fresh descriptors nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Between libcontainer's create and start: the init's pid and start time
/// into the job record (for `gc`), and `lo` up for `--network none`.
pub(crate) fn on_created(
    dir: &crate::state::JobDir,
    record: &mut crate::state::JobRecord,
    network: NetworkMode,
    pid: i32,
) -> Result<()> {
    record.init_pid = Some(pid);
    record.init_start_time = process_start_time(pid);
    dir.write_record(record)?;
    if network == NetworkMode::None {
        backend::loopback_up(pid)?;
    }
    Ok(())
}

/// The launch phase. `inherit`: the job's stdin may come from the caller.
pub(crate) fn launch(
    runner: &Runner,
    ctx: &JobCtx<'_>,
    ready: Ready,
    inherit: bool,
) -> Result<Launched> {
    let job = ctx.job;
    let Ready {
        executor,
        mut record,
        bundle,
        plan: _,
    } = ready;
    let signals = SignalGuard::install()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (stdin_job, stdin_feed) = if job.stdin && inherit {
        let (r, w) = pipe()?;
        (r, Some((0 as RawFd, w)))
    } else {
        let null = fs::File::open("/dev/null").ctx("open", "/dev/null")?;
        (OwnedFd::from(null), None)
    };
    let stdio = JobStdio {
        stdin: stdin_job,
        stdout: out_w,
        stderr: err_w,
    };
    let dir = &ctx.dir;
    let state = ctx.sub("state");
    let started: Started = match ctx.backend {
        Backend::Libcontainer => {
            let network = job.network;
            backend::launch_libcontainer(&job.name, &bundle, &state, stdio, executor, &mut |pid| {
                on_created(dir, &mut record, network, pid)
            })?
        }
        Backend::Binary(path) => backend::launch_binary(
            path,
            &job.name,
            &bundle,
            &state,
            stdio,
            runner.cgroups.version() == CgroupVersion::V1,
            &mut |pid| {
                record.init_pid = Some(pid);
                record.init_start_time = process_start_time(pid);
                dir.write_record(&record)
            },
        )?,
    };
    Ok(Launched {
        started,
        signals,
        out_r,
        err_r,
        stdin_feed,
    })
}
