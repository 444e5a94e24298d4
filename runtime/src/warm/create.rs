//! Create one sandbox: the cold path's lookup, rootfs and spec phases under
//! the sandbox's own id, then libcontainer's create and start with
//! `/dev/null` for stdio and skiff's [`WarmExecutor`] as the workload. It
//! returns once the init says it waits.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use imagestore::ImageId;

use super::executor::READY;
use super::{Key, Sandbox};
use crate::backend::{self, JobStdio};
use crate::error::{Error, IoContext, Result};
use crate::job::JobSpec;
use crate::run::spec::Prepared;
use crate::run::{lookup, rootfs, spec, JobCtx, Phases, Runner};
use crate::state::random_id;
use crate::timing::ms_since;

/// How long a new sandbox may take to say it waits.
const READY_TIMEOUT_MS: i32 = 30_000;

fn dev_null() -> Result<OwnedFd> {
    Ok(OwnedFd::from(
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .ctx("open", "/dev/null")?,
    ))
}

/// Wait for the ready byte, or fail when the init exits first.
fn wait_ready(channel: &UnixStream, pidfd: Option<&OwnedFd>) -> Result<()> {
    let mut fds = vec![libc::pollfd {
        fd: channel.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    if let Some(p) = pidfd {
        fds.push(libc::pollfd {
            fd: p.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
    }
    // SAFETY: valid pollfds that live for the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as _, READY_TIMEOUT_MS) };
    let mut byte = [0u8; 1];
    if n > 0 && fds[0].revents & libc::POLLIN != 0 {
        use std::io::Read;
        let mut c = channel;
        if c.read(&mut byte).ok() == Some(1) && byte[0] == READY {
            return Ok(());
        }
    }
    Err(Error::Protocol(format!(
        "warm sandbox did not get ready (poll {n}, byte {:?})",
        byte[0]
    )))
}

/// Create a sandbox of `shape` (a job with its per-job fields cleared) on
/// `image`. On failure everything made so far is removed.
pub(crate) fn create(runner: &mut Runner, image: &ImageId, shape: &JobSpec) -> Result<Sandbox> {
    let t0 = Instant::now();
    let id = format!("w-{}", random_id());
    let mut job = shape.clone();
    job.name = id.clone();
    // A placeholder: the command comes at handoff and is never looked up here.
    job.entrypoint = Some(vec!["/".to_string()]);
    job.command = Vec::new();
    let found = lookup::lookup(&runner.store, &runner.run_root, image, &id)?;
    let backend = crate::backend::Backend::Libcontainer;
    let mut ctx = JobCtx {
        job: &job,
        backend: &backend,
        scratch: found.dir.scratch(),
        dir: found.dir,
        mounted: Vec::new(),
        phases: Phases::default(),
        t0,
    };
    let (ours, theirs) = UnixStream::pair().ctx("create", "warm sandbox channel")?;
    let made = (|| -> Result<(i32, crate::oci::ProcessPlan, Vec<u8>)> {
        let rootfs = rootfs::rootfs(&mut ctx, &found.desc)?;
        let ready = match spec::spec(
            runner,
            &ctx,
            &found.config,
            &rootfs,
            Some(theirs.as_raw_fd()),
        )? {
            Prepared::Ready(r) => *r,
            Prepared::NotRunnable(e) => return Err(Error::Protocol(e.to_string())),
        };
        let resolv = fs::read(ctx.sub("etc").join("resolv.conf")).unwrap_or_default();
        let mut record = ready.record;
        let dir = &ctx.dir;
        let stdio = JobStdio {
            stdin: dev_null()?,
            stdout: dev_null()?,
            stderr: dev_null()?,
        };
        let network = job.network;
        let started = backend::launch_libcontainer(
            &id,
            &ready.bundle,
            &ctx.sub("state"),
            stdio,
            ready.executor,
            &mut |pid| crate::run::launch::on_created(dir, &mut record, network, pid),
        )?;
        Ok((started.wait_pid, ready.plan, resolv))
    })();
    drop(theirs);
    let (pid, plan, resolv) = match made {
        Ok(m) => m,
        Err(e) => {
            let _ = runner.cgroups.remove(&id);
            if let Some(m) = ctx.mounted.first() {
                let _ = crate::mounts::unmount(m);
            }
            let _ = ctx.dir.remove_in_place();
            return Err(e);
        }
    };
    let pidfd = crate::supervise::pidfd_open(pid).ok();
    let sandbox = Sandbox {
        id,
        key: Key::of(image, shape),
        shape: shape.clone(),
        pid,
        pidfd,
        channel: ours,
        scratch: ctx.scratch.clone(),
        mounted: std::mem::take(&mut ctx.mounted),
        dir: ctx.dir,
        lease: found.lease,
        config: found.config,
        plan,
        created: Instant::now(),
        resolv,
        create_ms: 0.0,
        reaped: false,
    };
    let ready = wait_ready(&sandbox.channel, sandbox.pidfd.as_ref());
    let mut sandbox = sandbox;
    sandbox.create_ms = ms_since(t0);
    if let Err(e) = ready {
        super::discard::discard(runner, sandbox);
        return Err(e);
    }
    Ok(sandbox)
}
