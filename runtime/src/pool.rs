//! Pool launchers: single-threaded processes (`skiff launcher`, the same
//! binary behind a hidden subcommand) that each own a [`Runner`] and run one
//! job at a time for a caller that may have threads.
//!
//! The protocol is one JSON object per line, in both directions:
//!
//! ```text
//! caller → launcher   {"image":"busybox","command":["true"],"pids_limit":16,
//!                      "stdout":"/path/out","output_cap":1048576}
//! launcher → caller   {"ok":{"exit_code":0,"wall_ms":11.2,…}}   (a JobResult)
//!                  or {"error":"no image named …"}
//! ```
//!
//! A [`Request`] is the image, the [`JobSpec`] fields (flat, see its doc), an
//! optional `runtime` (as `--runtime`), and where the output goes (files,
//! opened for append; `/dev/null` when absent). The launcher exits when its
//! stdin closes. [`serve`] is the launcher side; [`Launcher`] the caller side.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::conformance::{self, Launch, Outcome};
use crate::error::{Error, IoContext, Result};
use crate::job::JobSpec;
use crate::run::{JobIo, JobResult, Runner};

/// Default cap per output stream when the request gives none (16 MiB).
pub const DEFAULT_OUTPUT_CAP: u64 = 16 << 20;

/// One request: a job and where its output goes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Image reference in the launcher's store.
    pub image: String,
    /// The job (its fields are flat in the JSON object).
    #[serde(flatten)]
    pub job: JobSpec,
    /// `--runtime`: `libcontainer` (default), `runc`, `crun`, `youki` or a path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// File for the job's stdout (appended to), default `/dev/null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<PathBuf>,
    /// File for the job's stderr (appended to), default `/dev/null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<PathBuf>,
    /// Bytes kept per stream; the rest is counted in `output_dropped_bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_cap: Option<u64>,
}

/// One reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reply {
    /// The job ran (whatever its exit status).
    Ok(JobResult),
    /// skiff could not run it; the message holds the whole cause chain.
    Error(String),
}

fn open_sink(p: &Option<PathBuf>) -> Result<File> {
    let path = p.clone().unwrap_or_else(|| PathBuf::from("/dev/null"));
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .ctx("open job output", path)
}

/// Run one request on `runner`.
pub fn handle(runner: &mut Runner, req: Request) -> Reply {
    let run = || -> Result<JobResult> {
        let backend = Backend::parse(req.runtime.as_deref().unwrap_or(""))?;
        let io = JobIo::Capture {
            stdout: open_sink(&req.stdout)?,
            stderr: open_sink(&req.stderr)?,
            cap: req.output_cap.unwrap_or(DEFAULT_OUTPUT_CAP),
        };
        runner.run(&req.image, req.job, &backend, io)
    };
    match run() {
        Ok(r) => Reply::Ok(r),
        Err(e) => Reply::Error(conformance::error_chain(&e)),
    }
}

/// Serve requests from `input` until it closes, one at a time, writing one
/// reply line per request line to `output`. A malformed line gets an error
/// reply; only I/O errors on the pipes end the loop early.
pub fn serve(runner: &mut Runner, input: impl BufRead, mut output: impl Write) -> Result<()> {
    for line in input.lines() {
        let line = line.ctx("read a request from", "stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(req) => handle(runner, req),
            Err(e) => Reply::Error(format!("malformed request: {e}")),
        };
        let text =
            serde_json::to_string(&reply).map_err(|e| Error::Protocol(format!("reply: {e}")))?;
        writeln!(output, "{text}").ctx("write a reply to", "stdout")?;
        output.flush().ctx("write a reply to", "stdout")?;
    }
    Ok(())
}

/// The caller's end of one launcher process.
#[derive(Debug)]
pub struct Launcher {
    child: Child,
    input: Option<ChildStdin>,
    replies: BufReader<ChildStdout>,
    runtime: Option<String>,
}

impl Launcher {
    /// Start a launcher: `cmd` is e.g. `skiff --root ROOT launcher`; its
    /// stdin and stdout are taken over for the protocol (set stderr as you like).
    pub fn spawn(mut cmd: Command) -> Result<Launcher> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .ctx("start launcher", format!("{cmd:?}"))?;
        let input = child.stdin.take();
        let out = child
            .stdout
            .take()
            .ok_or_else(|| Error::Protocol("launcher has no stdout".into()))?;
        Ok(Launcher {
            child,
            input,
            replies: BufReader::new(out),
            runtime: None,
        })
    }

    /// The `runtime` that [`Launch::launch`] puts in its requests (default:
    /// the launcher's libcontainer).
    pub fn set_runtime(&mut self, runtime: Option<String>) {
        self.runtime = runtime;
    }

    /// The launcher's pid (for counting its fds and mounts).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send one request and wait for its reply.
    pub fn request(&mut self, req: &Request) -> Result<Reply> {
        let line =
            serde_json::to_string(req).map_err(|e| Error::Protocol(format!("request: {e}")))?;
        let input = self
            .input
            .as_mut()
            .ok_or_else(|| Error::Protocol("launcher input is closed".into()))?;
        writeln!(input, "{line}").ctx("send a request to", "launcher")?;
        input.flush().ctx("send a request to", "launcher")?;
        let mut reply = String::new();
        let n = self
            .replies
            .read_line(&mut reply)
            .ctx("read a reply from", "launcher")?;
        if n == 0 {
            return Err(Error::Protocol("launcher exited".into()));
        }
        serde_json::from_str(&reply).map_err(|e| Error::Protocol(format!("reply {reply:?}: {e}")))
    }

    /// Close the launcher's stdin and wait for it to exit.
    pub fn finish(mut self) -> Result<ExitStatus> {
        self.input = None;
        self.child.wait().ctx("wait for", "launcher")
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        self.input = None;
        let _ = self.child.wait();
    }
}

/// Runs each job in the launcher, capturing output in memory files that the
/// launcher opens through `/proc/<caller>/fd/N`.
impl Launch for Launcher {
    fn launch(&mut self, image: &str, job: &JobSpec) -> std::result::Result<Outcome, String> {
        let mut out = conformance::capture_file("skiff-stdout").map_err(|e| e.to_string())?;
        let mut err = conformance::capture_file("skiff-stderr").map_err(|e| e.to_string())?;
        let me = std::process::id();
        let req = Request {
            image: image.to_string(),
            job: job.clone(),
            runtime: self.runtime.clone(),
            stdout: Some(PathBuf::from(format!("/proc/{me}/fd/{}", out.as_raw_fd()))),
            stderr: Some(PathBuf::from(format!("/proc/{me}/fd/{}", err.as_raw_fd()))),
            output_cap: Some(conformance::OUTPUT_CAP),
        };
        match self.request(&req).map_err(|e| e.to_string())? {
            Reply::Ok(result) => Ok(Outcome {
                result,
                stdout: conformance::read_capture(&mut out),
                stderr: conformance::read_capture(&mut err),
            }),
            Reply::Error(e) => Ok(Outcome::failed(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_request_flat_json() {
        let req: Request = serde_json::from_str(
            r#"{"image":"busybox","command":["sh","-c","exit 3"],"pids_limit":16,
                "stdout":"/tmp/o","output_cap":1000,"runtime":"runc"}"#,
        )
        .expect("parse");
        assert_eq!(req.image, "busybox");
        assert_eq!(req.job.command, vec!["sh", "-c", "exit 3"]);
        assert_eq!(req.job.limits.pids, Some(16));
        assert_eq!(req.runtime.as_deref(), Some("runc"));
        assert_eq!(req.output_cap, Some(1000));
        let back: Request =
            serde_json::from_str(&serde_json::to_string(&req).expect("ser")).expect("de");
        assert_eq!(back, req);
    }

    #[test]
    fn test_reply_shapes() {
        let ok = serde_json::to_value(Reply::Ok(JobResult::default())).expect("ser");
        assert_eq!(ok["ok"]["exit_code"], 0);
        let err = serde_json::to_value(Reply::Error("boom".into())).expect("ser");
        assert_eq!(err["error"], "boom");
    }
}
