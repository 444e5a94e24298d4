//! Phase 5, wait: the single-threaded supervise loop (output, signals,
//! timeout) until the job's init exits, and Docker's exit status.

use crate::error::Result;
use crate::supervise::{self, JobControl, OutputSink};

use super::launch::Launched;
use super::{JobCtx, JobIo, JobResult};

struct InitControl {
    pid: i32,
}

impl JobControl for InitControl {
    fn forward(&mut self, sig: libc::c_int) {
        // SAFETY: kill(2) with a pid we created.
        unsafe { libc::kill(self.pid, sig) };
    }
    fn terminate(&mut self) {
        self.forward(libc::SIGTERM);
    }
    fn kill(&mut self) {
        // The init is the pid namespace's reaper: killing it kills them all.
        self.forward(libc::SIGKILL);
    }
}

/// The wait phase: the result, without accounting (cleanup adds it).
pub(crate) fn wait(ctx: &JobCtx<'_>, launched: Launched, io: JobIo) -> Result<JobResult> {
    let job = ctx.job;
    let (out_sink, err_sink) = match io {
        JobIo::Inherit => (OutputSink::Fd(1), OutputSink::Fd(2)),
        JobIo::Capture {
            stdout,
            stderr,
            cap,
        } => (
            OutputSink::Capped { file: stdout, cap },
            OutputSink::Capped { file: stderr, cap },
        ),
    };
    let pid = launched.started.wait_pid;
    let mut control = InitControl { pid };
    let outcome = supervise::supervise(
        pid,
        &mut control,
        &launched.signals,
        supervise::JobStreams {
            stdout: (launched.out_r, out_sink),
            stderr: (launched.err_r, err_sink),
            stdin: launched.stdin_feed,
        },
        supervise::StopPolicy {
            timeout: job.timeout,
            stop_timeout: job.stop_timeout,
        },
    )?;
    drop(launched.signals);

    let st = outcome.wait_status;
    let (exit_code, signal) = if libc::WIFEXITED(st) {
        (libc::WEXITSTATUS(st), None)
    } else if libc::WIFSIGNALED(st) {
        let s = libc::WTERMSIG(st);
        (128 + s, Some(s))
    } else {
        (crate::exec::EXIT_CANNOT_INVOKE, None)
    };
    Ok(JobResult {
        exit_code,
        signal,
        timed_out: outcome.timed_out,
        output_dropped_bytes: outcome.dropped,
        output_errors: outcome.output_errors,
        ..Default::default()
    })
}
