//! The waiting side of a warm sandbox: skiff's libcontainer executor, run
//! last in the container's init (after the namespaces, `pivot_root`, the
//! user, the capability drop and `no_new_privs`). It confines itself as far
//! as the job will be, says it is ready, and blocks until the launcher
//! sends one [`JobFrame`] with the job's stdio; then it becomes the job.

use std::io::Read;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use libcontainer::workload::{
    Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError,
};
use oci_spec::runtime::Spec;

use super::frame::JobFrame;
use crate::exec::{die, exec_job, reset_signals, EXIT_CANNOT_INVOKE};
use crate::seccomp::{Bpf, SeccompPlan};

/// The byte a sandbox writes to its channel once it waits for its job.
pub const READY: u8 = b'R';

/// A warm sandbox's executor: holds the number of its end of the job
/// channel (the same in the init, which inherits the launcher's table) and
/// the precompiled filter, if the plan gives one.
#[derive(Debug, Clone)]
pub struct WarmExecutor {
    /// The sandbox's end of the channel.
    pub channel: RawFd,
    /// The filter to install before waiting.
    pub seccomp: Option<Bpf>,
}

impl WarmExecutor {
    /// The executor for a sandbox with this seccomp plan and channel.
    pub fn new(channel: RawFd, seccomp: &SeccompPlan) -> WarmExecutor {
        WarmExecutor {
            channel,
            seccomp: seccomp.executor_filter().cloned(),
        }
    }
}

/// The executor a launch hands libcontainer: a cold job's, or a warm
/// sandbox's.
#[derive(Debug, Clone)]
pub enum AnyExecutor {
    /// Exec the spec's process now.
    Cold(crate::exec::SkiffExecutor),
    /// Wait for a job on the channel.
    Warm(WarmExecutor),
}

impl Executor for AnyExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        match self {
            AnyExecutor::Cold(e) => e.exec(spec),
            AnyExecutor::Warm(e) => e.exec(spec),
        }
    }

    fn validate(&self, _spec: &Spec) -> Result<(), ExecutorValidationError> {
        Ok(())
    }

    fn setup_envs(
        &self,
        _envs: std::collections::HashMap<String, String>,
    ) -> Result<(), ExecutorSetEnvsError> {
        // The environment is passed to execve explicitly.
        Ok(())
    }
}

/// Close every descriptor above 2 except `keep`.
fn close_all_but(keep: RawFd) {
    // SAFETY: close_range(2) on ranges that exclude `keep`; nothing else
    // in this process (an init about to wait) uses them.
    unsafe {
        if keep > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, (keep - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32);
    }
}

/// Read the job: the header with the stdio descriptors, then the body.
fn receive(channel: &UnixStream) -> (JobFrame, Vec<OwnedFd>) {
    let mut header = [0u8; 4];
    let mut fds = Vec::new();
    let mut got = 0;
    while got < header.len() {
        match crate::fd_passing::recv_with_fds(channel, &mut header[got..]) {
            // The launcher discards the sandbox: leave quietly.
            // SAFETY: _exit in a process about to end.
            Ok(r) if r.len == 0 => unsafe { libc::_exit(0) },
            Ok(r) => {
                if r.fds_truncated {
                    die("job frame: too many descriptors", EXIT_CANNOT_INVOKE);
                }
                got += r.len;
                fds.extend(r.fds);
            }
            Err(e) => die(&format!("read the job: {e}"), EXIT_CANNOT_INVOKE),
        }
    }
    let n = JobFrame::body_len(header).unwrap_or_else(|e| die(&e.to_string(), EXIT_CANNOT_INVOKE));
    let mut body = vec![0u8; n];
    let mut r = channel;
    if let Err(e) = r.read_exact(&mut body) {
        die(&format!("read the job: {e}"), EXIT_CANNOT_INVOKE);
    }
    let frame = JobFrame::decode(&body).unwrap_or_else(|e| die(&e.to_string(), EXIT_CANNOT_INVOKE));
    (frame, fds)
}

impl Executor for WarmExecutor {
    fn exec(&self, _spec: &Spec) -> Result<(), ExecutorError> {
        reset_signals();
        close_all_but(self.channel);
        // Die with the launcher (set after libcontainer's setuid, which
        // clears it); the launcher being gone already shows as EOF below.
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
        if let Some(bpf) = &self.seccomp {
            // Wait under the job's filter: nothing received can widen it.
            if let Err(e) = crate::seccomp::install(bpf.bytes()) {
                die(&format!("install seccomp filter: {e}"), EXIT_CANNOT_INVOKE);
            }
        }
        // SAFETY: the channel is ours alone from here; never closed by
        // this wrapper (exec_job's close_range does it).
        let channel = ManuallyDrop::new(unsafe { UnixStream::from_raw_fd(self.channel) });
        // SAFETY: a one-byte write from a valid buffer.
        if unsafe { libc::write(channel.as_raw_fd(), [READY].as_ptr().cast(), 1) } != 1 {
            // SAFETY: the launcher is gone; end quietly.
            unsafe { libc::_exit(0) };
        }
        let (frame, fds) = receive(&channel);
        if fds.len() != 3 {
            die(
                &format!("job frame: {} descriptors, want 3", fds.len()),
                EXIT_CANNOT_INVOKE,
            );
        }
        for (target, fd) in fds.iter().enumerate() {
            // SAFETY: dup2 of a received descriptor onto 0, 1 or 2; it
            // clears close-on-exec on the copy.
            if unsafe { libc::dup2(fd.as_raw_fd(), target as RawFd) } < 0 {
                die("dup2 the job's stdio", EXIT_CANNOT_INVOKE);
            }
        }
        // The originals and the channel go with exec_job's close_range;
        // the filter is installed already.
        std::mem::forget(fds);
        exec_job(&frame.args, &frame.env, &frame.cwd, None)
    }

    fn validate(&self, _spec: &Spec) -> Result<(), ExecutorValidationError> {
        Ok(())
    }

    fn setup_envs(
        &self,
        _envs: std::collections::HashMap<String, String>,
    ) -> Result<(), ExecutorSetEnvsError> {
        Ok(())
    }
}
