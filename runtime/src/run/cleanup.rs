//! Phase 6, cleanup: read the cgroup's accounting, let a runtime binary
//! delete its state, remove the cgroup, lazily unmount the scratch tree,
//! remove the state directory, drop the lease. Runs whatever the earlier
//! phases returned; an incomplete cleanup is left to `skiff gc`.

use std::time::Instant;

use imagestore::Lease;

use crate::backend::{self, Backend};
use crate::cgroups::CgroupStats;
use crate::error::Error;
use crate::mounts;

use super::{JobCtx, JobResult, Runner};
use crate::timing::ms_since;

/// The cleanup phase: the job's accounting and the first error, if any.
pub(crate) fn cleanup(
    runner: &mut Runner,
    ctx: &mut JobCtx<'_>,
    lease: Lease,
) -> (CgroupStats, Option<Error>) {
    let t = Instant::now();
    let name = &ctx.job.name;
    let stats = runner.cgroups.stats(name).unwrap_or_default();
    let mut first_err = None;
    if let Backend::Binary(runtime) = ctx.backend {
        // The runtime removes its state and the cgroups it made (including
        // hierarchies skiff does not use, e.g. name=systemd); a job that
        // never got created has nothing to delete.
        let state = ctx.sub("state");
        if state.join("init.pid").exists() {
            first_err = backend::delete_binary(runtime, name, &state).err();
        }
        // A warm sandbox that died meanwhile may be among them.
        let reaped = backend::reap_orphans();
        runner.warm.forget_reaped(&reaped);
    }
    if let Err(e) = runner.cgroups.remove(name) {
        first_err.get_or_insert(e);
    }
    // A lazy unmount takes the submounts along: unmounting the outermost
    // (the scratch tmpfs, or the rootfs on disk) is enough.
    if let Some(m) = ctx.mounted.first() {
        if let Err(e) = mounts::unmount(m) {
            first_err.get_or_insert(e);
        }
    }
    if let Err(e) = ctx.dir.remove_in_place() {
        first_err.get_or_insert(e);
    }
    drop(lease);
    ctx.phases.cleanup_ms = ms_since(t);
    (stats, first_err)
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
