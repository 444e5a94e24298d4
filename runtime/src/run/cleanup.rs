//! Phase 6, cleanup: read the cgroup's accounting, then tear down: let a
//! runtime binary delete its state, remove the cgroup, lazily unmount the
//! scratch tree, remove the state directory, drop the lease. Runs whatever
//! the earlier phases returned; an incomplete teardown is left to
//! `skiff gc`.
//!
//! The accounting is part of the result; the teardown is not, so a pool
//! launcher may reply first and tear down after
//! ([`Runner::set_teardown_after_reply`]).

use std::path::PathBuf;
use std::time::Instant;

use imagestore::Lease;

use crate::backend::{self, Backend};
use crate::cgroups::CgroupStats;
use crate::mounts;
use crate::state::JobDir;

use super::{JobCtx, JobResult, Runner};
use crate::timing::ms_since;

/// The job's accounting, read before its cgroup goes.
pub(crate) fn stats(runner: &Runner, name: &str) -> CgroupStats {
    runner.cgroups.stats(name).unwrap_or_default()
}

/// What a job leaves to undo once its result is known.
#[derive(Debug)]
pub struct Teardown {
    name: String,
    backend: Backend,
    /// A runtime binary's state directory.
    state: PathBuf,
    /// The outermost mount made for the job.
    mounted: Option<PathBuf>,
    dir: JobDir,
    lease: Lease,
}

impl Teardown {
    /// What `ctx` made, and the image lease the job held.
    pub(crate) fn of(ctx: JobCtx<'_>, lease: Lease) -> Teardown {
        Teardown {
            name: ctx.job.name.clone(),
            backend: ctx.backend.clone(),
            state: ctx.sub("state"),
            mounted: ctx.mounted.into_iter().next(),
            dir: ctx.dir,
            lease,
        }
    }

    /// Undo it all; the milliseconds taken. An incomplete teardown is
    /// logged and left to `skiff gc`.
    pub(crate) fn run(self, runner: &mut Runner) -> f64 {
        let t = Instant::now();
        let mut first_err = None;
        if let Backend::Binary(runtime) = &self.backend {
            // The runtime removes its state and the cgroups it made
            // (including hierarchies skiff does not use, e.g. name=systemd);
            // a job that never got created has nothing to delete.
            if self.state.join("init.pid").exists() {
                first_err = backend::delete_binary(runtime, &self.name, &self.state).err();
            }
            // A warm sandbox that died meanwhile may be among them.
            let reaped = backend::reap_orphans();
            runner.warm.forget_reaped(&reaped);
        }
        if let Err(e) = runner.cgroups.remove(&self.name) {
            first_err.get_or_insert(e);
        }
        // A lazy unmount takes the submounts along: unmounting the
        // outermost (the scratch tmpfs, or the rootfs on disk) is enough.
        if let Some(m) = &self.mounted {
            if let Err(e) = mounts::unmount(m) {
                first_err.get_or_insert(e);
            }
        }
        if let Err(e) = self.dir.remove_in_place() {
            first_err.get_or_insert(e);
        }
        drop(self.lease);
        if let Some(e) = first_err {
            tracing::warn!(job = %self.name, error = %e, "cleanup after the job was incomplete; `skiff gc` will retry");
        }
        ms_since(t)
    }
}

/// Put the cgroup's accounting into the result (137 for an OOM kill).
pub(crate) fn apply_stats(res: &mut JobResult, stats: &CgroupStats) {
    res.cpu_usec = stats.cpu_usec;
    res.peak_memory_bytes = stats.peak_memory_bytes;
    if stats.oom_kills > 0 {
        res.oom_killed = true;
        if res.signal == Some(libc::SIGKILL) {
            res.exit_code = crate::exit_code::KILLED;
        }
    }
}
