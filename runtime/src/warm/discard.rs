//! The end of a sandbox: an unused one is killed and reaped; a used one
//! (its init reaped by the job's wait) only needs its cgroup, mounts,
//! directory and lease removed. Either way what is left is `skiff gc`'s
//! if this fails.

use super::Sandbox;
use crate::run::Runner;

/// Kill an unused sandbox (if alive), reap it, and tear it down.
pub(crate) fn discard(runner: &mut Runner, mut s: Sandbox) {
    if !s.reaped {
        // SAFETY: kill(2) and waitpid(2) on our own child.
        unsafe {
            libc::kill(s.pid, libc::SIGKILL);
            libc::waitpid(s.pid, std::ptr::null_mut(), 0);
        }
        s.reaped = true;
    }
    teardown(runner, s);
}

/// Remove what a sandbox whose init is gone leaves: cgroup, mounts,
/// `ROOT/run/<id>`, lease.
pub(crate) fn teardown(runner: &mut Runner, s: Sandbox) {
    if let Err(e) = runner.cgroups.remove(&s.id) {
        tracing::debug!(sandbox = %s.id, error = %e, "sandbox cgroup left to gc");
    }
    // A lazy unmount of the outermost mount takes the rest along.
    if let Some(m) = s.mounted.first() {
        if let Err(e) = crate::mounts::unmount(m) {
            tracing::debug!(sandbox = %s.id, error = %e, "sandbox unmount left to gc");
        }
    }
    if let Err(e) = s.dir.remove_in_place() {
        tracing::debug!(sandbox = %s.id, error = %e, "sandbox directory left to gc");
    }
    drop(s.lease);
}

/// Whether the sandbox's init has exited (reaping it if so).
pub(crate) fn has_exited(s: &mut Sandbox) -> bool {
    if s.reaped {
        return true;
    }
    // SAFETY: waitpid on our own child, without blocking.
    let r = unsafe { libc::waitpid(s.pid, std::ptr::null_mut(), libc::WNOHANG) };
    if r == s.pid || r < 0 {
        s.reaped = true;
    }
    s.reaped
}
