//! A job into a waiting sandbox: claim the job's name, write its limits and
//! baseline the accounting in the sandbox's cgroup, set its hostname (UTS
//! namespace and `/etc/hostname`, in place), send the [`JobFrame`] with the
//! job's stdio, then supervise and read the job's own accounting as the
//! cold path does. The sandbox's teardown waits until after the reply.

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use super::{JobFrame, Sandbox};
use crate::backend::{Backend, Started};
use crate::error::{Error, IoContext, Result};
use crate::exec::{lookup_command, LookupError};
use crate::job::JobSpec;
use crate::run::launch::{pipe, Launched};
use crate::run::{cleanup, wait, JobCtx, JobIo, JobResult, Phases, Runner};
use crate::safe_root::SafeRoot;
use crate::state::{process_start_time, JobDir, JobRecord};
use crate::supervise::SignalGuard;
use crate::timing::ms_since;

/// A job made ready for a sandbox: what the sandbox receives, and its hostname.
#[derive(Debug, Clone)]
pub struct Handoff {
    /// argv, env, cwd.
    pub frame: JobFrame,
    /// The job's hostname.
    pub hostname: String,
}

/// Docker's rules for the per-job fields, on the sandbox's image and user;
/// the command looked up in the sandbox's rootfs (127/126 without using
/// the sandbox).
pub(crate) fn prepare(
    s: &Sandbox,
    job: &JobSpec,
) -> Result<std::result::Result<Handoff, LookupError>> {
    let cfg = s.config.config().clone().unwrap_or_default();
    let (args, env, hostname) = crate::run::spec::job_process(job, &cfg, &s.plan.user.home)?;
    let cwd = s.plan.cwd.clone();
    if !crate::run::spec::in_volume(&s.shape, &args[0]) {
        let rootfs = s.scratch.join("rootfs");
        let root = SafeRoot::open(&rootfs).ctx("open", &rootfs)?;
        if let Err(e) = lookup_command(&root, &args[0], &env, &cwd) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(Handoff {
        frame: JobFrame { args, env, cwd },
        hostname,
    }))
}

/// Set the hostname in the sandbox's UTS namespace from this
/// (single-threaded) launcher, and go back.
fn set_hostname(pid: i32, name: &str) -> Result<()> {
    let own = fs::File::open("/proc/self/ns/uts").ctx("open", "/proc/self/ns/uts")?;
    let path = format!("/proc/{pid}/ns/uts");
    let theirs = fs::File::open(&path).ctx("open", &path)?;
    nix::sched::setns(&theirs, nix::sched::CloneFlags::CLONE_NEWUTS)
        .map_err(|e| Error::io("setns", &path, e.into()))?;
    let set = nix::unistd::sethostname(name);
    nix::sched::setns(&own, nix::sched::CloneFlags::CLONE_NEWUTS)
        .map_err(|e| Error::io("setns back", "/proc/self/ns/uts", e.into()))?;
    set.map_err(|e| Error::io("sethostname in", path, e.into()))
}

/// Limits, accounting baseline, hostname, `/etc/hostname`: everything
/// before the frame.
fn settle(
    runner: &Runner,
    s: &Sandbox,
    job: &JobSpec,
    h: &Handoff,
) -> Result<crate::cgroups::AccountingBase> {
    runner.cgroups.apply_limits(&s.id, &job.limits)?;
    let base = runner.cgroups.reset_accounting(&s.id)?;
    set_hostname(s.pid, &h.hostname)?;
    // In place: the bind mount pins the inode.
    let etc_hostname = s.scratch.join("etc").join("hostname");
    fs::write(&etc_hostname, format!("{}\n", h.hostname)).ctx("write", &etc_hostname)?;
    Ok(base)
}

/// Run `job` in `s`. The used sandbox goes to the stock's teardown list,
/// whatever happens.
pub(crate) fn run(
    runner: &mut Runner,
    mut s: Sandbox,
    job: &JobSpec,
    h: Handoff,
    io: JobIo,
    t0: Instant,
) -> Result<JobResult> {
    let result = run_inner(runner, &mut s, job, h, io, t0);
    if result.is_err() && !s.reaped {
        // SAFETY: kill and reap our own child, which must not run on.
        unsafe {
            libc::kill(s.pid, libc::SIGKILL);
            libc::waitpid(s.pid, std::ptr::null_mut(), 0);
        }
    }
    s.reaped = true;
    runner.warm.used.push(s);
    result
}

fn run_inner(
    runner: &mut Runner,
    s: &mut Sandbox,
    job: &JobSpec,
    h: Handoff,
    io: JobIo,
    t0: Instant,
) -> Result<JobResult> {
    let dir = JobDir::create(&runner.run_root, &job.name)?;
    dir.write_record(&JobRecord {
        name: job.name.clone(),
        launcher_pid: std::process::id() as i32,
        init_pid: Some(s.pid),
        init_start_time: process_start_time(s.pid),
        cgroup_path: runner.cgroups.job_path(&s.id),
    })?;
    let backend = Backend::Libcontainer;
    let mut ctx = JobCtx {
        job,
        backend: &backend,
        dir,
        scratch: s.scratch.clone(),
        mounted: Vec::new(),
        phases: Phases {
            lookup_ms: ms_since(t0),
            ..Phases::default()
        },
        t0,
    };
    let result = (|| -> Result<JobResult> {
        let t = Instant::now();
        let mut base = settle(runner, s, job, &h)?;
        let signals = SignalGuard::install()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let stdin = OwnedFd::from(fs::File::open("/dev/null").ctx("open", "/dev/null")?);
        let wire = h
            .frame
            .encode()
            .map_err(|e| Error::Protocol(e.to_string()))?;
        crate::fd_passing::send_with_fds(
            &s.channel,
            &wire,
            &[stdin.as_fd(), out_w.as_fd(), err_w.as_fd()],
        )
        .ctx("hand the job to", format!("sandbox {}", s.id))?;
        drop((stdin, out_w, err_w));
        let start_ms = ms_since(t);
        ctx.phases.start_ms = start_ms;
        let launch_ms = ms_since(t0);
        let launched = Launched {
            started: Started {
                wait_pid: s.pid,
                init_pid: Some(s.pid),
                create_ms: 0.0,
                start_ms,
            },
            signals,
            out_r,
            err_r,
            stdin_feed: None,
        };
        let t = Instant::now();
        let mut res = wait::wait(&ctx, launched, io)?;
        s.reaped = true;
        ctx.phases.wait_ms = ms_since(t);
        res.launch_ms = launch_ms;
        let t = Instant::now();
        let now = runner.cgroups.stats(&s.id).unwrap_or_default();
        let stats = crate::cgroups::handoff::since(now, &mut base);
        cleanup::apply_stats(&mut res, &stats);
        ctx.phases.cleanup_ms = ms_since(t);
        Ok(res)
    })();
    if let Err(e) = ctx.dir.remove_in_place() {
        tracing::warn!(error = %e, "job directory left to gc");
    }
    let mut res = result?;
    res.phases = ctx.phases;
    res.wall_ms = ms_since(t0);
    res.runtime = backend.name();
    res.name = job.name.clone();
    Ok(res)
}
