//! Pool launchers: single-threaded processes (`skiff launcher`, the same
//! binary behind a hidden subcommand) that each own a [`Runner`] and run one
//! job at a time for a caller that may have threads.
//!
//! ## Transport
//!
//! The caller starts the launcher with one end of a unix stream socketpair
//! as its stdin ([`Launcher::spawn`] does this). The launcher moves that
//! socket to a close-on-exec descriptor ≥ 3 and reopens stdin as
//! `/dev/null` ([`fd_passing::take_stdin_socket`]), so no job, runtime
//! binary or helper can inherit the channel and forge replies. Nothing is
//! read from or written to the launcher's stdout.
//!
//! ## Messages
//!
//! One JSON object per line, in both directions:
//!
//! ```text
//! caller → launcher   {"image":"busybox","command":["true"],"pids_limit":16,
//!                      "stdout":{"fd":0},"stderr":{"path":"job7/err"},"output_cap":1048576}
//!                     (+ descriptors attached with SCM_RIGHTS)
//! launcher → caller   {"ok":{"exit_code":0,"wall_ms":11.2,…}}   (a JobResult)
//!                  or {"error":"no image named …"}
//! ```
//!
//! A [`Request`] is the image, the [`JobSpec`] fields (flat, see its doc), an
//! optional `runtime` (as `--runtime`), and where the output goes, a
//! [`Sink`] per stream:
//! - `{"fd": N}`: the N-th descriptor attached to the request's first bytes
//!   (at most [`fd_passing::MAX_FDS`]); the caller's own file, pipe or socket;
//! - `{"path": "REL"}`: a regular file beneath the directory the launcher
//!   was given with `--output-dir`, opened with `openat2(RESOLVE_BENEATH |
//!   RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` ([`OutputDir`]), created
//!   if missing and appended to; without `--output-dir` paths are refused;
//! - absent: `/dev/null`.
//!
//! `fd_volumes` (`[{"fd": N, "target": "/data", "read_only": true}]`) mount
//! attached descriptors of detached mounts (`open_tree(OPEN_TREE_CLONE)`)
//! into the job ([`crate::fd_volume`]): for callers that resolved a host
//! path safely and must not hand over a path that could change before the
//! mount.
//!
//! Unknown fields are an error naming them, and every value is validated
//! ([`JobSpec::validate`]) before anything is launched: [`parse_request`].
//!
//! A request line may be at most [`MAX_REQUEST_BYTES`]. A longer one is
//! read (and discarded) to its newline without being held in memory, gets
//! an error reply, and the launcher goes on with the next line: the stream
//! resynchronises at the newline. The launcher exits when the socket closes.
//! [`serve`] is the launcher side; [`Launcher`] the caller side.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::error::{Error, IoContext, Result};
use crate::fd_passing::{self, MAX_FDS};
use crate::fd_volume::FdVolume;
use crate::job::{JobSpec, Via};
use crate::output_dir::{OutputDir, OutputDirError};
use crate::run::{JobIo, JobResult, Runner};

/// Default cap per output stream when the request gives none (16 MiB).
pub const DEFAULT_OUTPUT_CAP: u64 = 16 << 20;

/// The largest request line, newline excluded (1 MiB).
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// Where one output stream of a job goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Sink {
    /// The N-th descriptor attached to the request.
    Fd(usize),
    /// A regular file beneath the launcher's `--output-dir`, relative to it.
    Path(PathBuf),
}

/// One request: a job and where its output goes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Image reference in the launcher's store (a tag, id or id prefix),
    /// resolved once, by [`handle`], before the job is run.
    pub image: String,
    /// The job (its fields are flat in the JSON object).
    #[serde(flatten)]
    pub job: JobSpec,
    /// `--runtime`: `libcontainer` (default), `runc`, `crun`, `youki` or a path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// The job's stdout (appended to), default `/dev/null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<Sink>,
    /// The job's stderr (appended to), default `/dev/null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<Sink>,
    /// Bytes kept per stream; the rest is counted in `output_dropped_bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_cap: Option<u64>,
    /// Whether to use a warm sandbox: `prefer` (default), `require`, `off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm: Option<crate::sandbox::WarmPolicy>,
    /// Volumes whose host side is a descriptor sent with the request
    /// (see [`crate::fd_volume`]); mounted after `volumes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fd_volumes: Vec<FdVolume>,
    /// Reply as soon as the result is final (exit status, accounting,
    /// output), and tear the job down after: its cgroup, mounts, state
    /// directory and name are released while the caller reads the reply,
    /// before the next request is read. Default `false`: the reply comes
    /// after the teardown.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reply_before_cleanup: bool,
}

/// The fields of [`Request`] besides the flattened [`JobSpec`] ones.
const REQUEST_FIELDS: &[&str] = &[
    "image",
    "runtime",
    "stdout",
    "stderr",
    "output_cap",
    "warm",
    "fd_volumes",
    "reply_before_cleanup",
];

/// Why a request was refused before anything ran.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The line is longer than [`MAX_REQUEST_BYTES`].
    #[error("request too large: {size} bytes or more, at most {MAX_REQUEST_BYTES} bytes per line")]
    TooLarge {
        /// Bytes seen before giving up (at least this many).
        size: usize,
    },
    /// The line is not a JSON object of the right shape.
    #[error("malformed request: {0}")]
    Json(#[source] serde_json::Error),
    /// A field name is not one the protocol knows (a misspelling).
    #[error("unknown request field {field:?} (known fields: {known})")]
    UnknownField {
        /// The field as given.
        field: String,
        /// The accepted names, comma-separated.
        known: String,
    },
    /// A field has a value out of range.
    #[error("invalid request: {0}")]
    Invalid(#[source] Error),
    /// An output sink cannot be opened or used.
    #[error("request {stream}: {detail}")]
    Sink {
        /// `stdout` or `stderr`.
        stream: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// An output path cannot be opened safely.
    #[error("request {stream}")]
    SinkPath {
        /// `stdout` or `stderr`.
        stream: &'static str,
        #[source]
        source: OutputDirError,
    },
}

/// Parse and check one request line (without its newline): the size cap,
/// the JSON, unknown fields, and [`JobSpec::validate`] with the request's
/// field names. Pure apart from validation's look at the host (CPU count,
/// whether volume sources exist); it opens nothing and launches nothing.
pub fn parse_request(bytes: &[u8]) -> std::result::Result<Request, RequestError> {
    if bytes.len() > MAX_REQUEST_BYTES {
        return Err(RequestError::TooLarge { size: bytes.len() });
    }
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(bytes).map_err(RequestError::Json)?;
    let job_fields = JobSpec::json_fields();
    let known = |k: &str| REQUEST_FIELDS.contains(&k) || job_fields.iter().any(|f| f == k);
    if let Some(field) = map.keys().find(|k| !known(k)) {
        let mut all: Vec<&str> = REQUEST_FIELDS.to_vec();
        all.extend(job_fields.iter().map(String::as_str));
        return Err(RequestError::UnknownField {
            field: field.clone(),
            known: all.join(", "),
        });
    }
    let req: Request =
        serde_json::from_value(serde_json::Value::Object(map)).map_err(RequestError::Json)?;
    if req.image.is_empty() {
        return Err(RequestError::Invalid(Error::InvalidOption {
            what: "image",
            value: String::new(),
            detail: "an image reference is required".into(),
        }));
    }
    for (stream, sink) in [("stdout", &req.stdout), ("stderr", &req.stderr)] {
        match sink {
            Some(Sink::Fd(n)) if *n >= MAX_FDS => {
                return Err(RequestError::Sink {
                    stream,
                    detail: format!("descriptor index {n} out of range 0 to {}", MAX_FDS - 1),
                })
            }
            Some(Sink::Path(p))
                if p.is_absolute()
                    || p.as_os_str().is_empty()
                    || p.components()
                        .any(|c| matches!(c, std::path::Component::ParentDir)) =>
            {
                return Err(RequestError::SinkPath {
                    stream,
                    source: OutputDirError::NotRelative(p.clone()),
                })
            }
            _ => {}
        }
    }
    req.job
        .validate(Via::Request)
        .map_err(RequestError::Invalid)?;
    Ok(req)
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

/// Open one output stream of a request.
fn open_sink(
    stream: &'static str,
    sink: &Option<Sink>,
    fds: &[OwnedFd],
    dir: Option<&OutputDir>,
) -> std::result::Result<File, RequestError> {
    let bad = |detail: String| RequestError::Sink { stream, detail };
    match sink {
        None => OpenOptions::new()
            .append(true)
            .open("/dev/null")
            .map_err(|e| bad(format!("cannot open /dev/null: {e}"))),
        Some(Sink::Fd(n)) => {
            let fd = fds.get(*n).ok_or_else(|| {
                bad(format!(
                    "descriptor {n} was not sent with the request ({} attached)",
                    fds.len()
                ))
            })?;
            let mode = nix::fcntl::fcntl(
                std::os::fd::AsRawFd::as_raw_fd(fd),
                nix::fcntl::FcntlArg::F_GETFL,
            )
            .map_err(|e| bad(format!("descriptor {n}: {e}")))?;
            if mode & libc::O_ACCMODE == libc::O_RDONLY {
                return Err(bad(format!("descriptor {n} is not open for writing")));
            }
            let file = File::from(
                fd.try_clone()
                    .map_err(|e| bad(format!("descriptor {n}: {e}")))?,
            );
            if file.metadata().is_ok_and(|m| m.is_dir()) {
                return Err(bad(format!("descriptor {n} is a directory")));
            }
            Ok(file)
        }
        Some(Sink::Path(p)) => {
            let dir = dir.ok_or_else(|| {
                bad(format!(
                    "output path {p:?} given, but the launcher has no --output-dir; \
                     send a descriptor instead"
                ))
            })?;
            dir.open_sink(p)
                .map_err(|source| RequestError::SinkPath { stream, source })
        }
    }
}

/// Run one request on `runner`; `fds` are the descriptors that came with it.
pub fn handle(
    runner: &mut Runner,
    mut req: Request,
    fds: &[OwnedFd],
    dir: Option<&OutputDir>,
) -> Reply {
    let sinks = || -> std::result::Result<(File, File), RequestError> {
        Ok((
            open_sink("stdout", &req.stdout, fds, dir)?,
            open_sink("stderr", &req.stderr, fds, dir)?,
        ))
    };
    let (stdout, stderr) = match sinks() {
        Ok(s) => s,
        Err(e) => return Reply::Error(crate::error::error_chain(&e)),
    };
    // Dropped (unmounted) when the job is over; nothing to do (and no
    // allocation on the launch path) without descriptor volumes.
    let _pins = if req.fd_volumes.is_empty() {
        None
    } else {
        let dir = runner.run_root().join(crate::state::pins_dir_name());
        match crate::fd_volume::pin(&dir, &req.fd_volumes, fds) {
            Ok((pins, vols)) => {
                req.job.volumes.extend(vols);
                Some(pins)
            }
            Err(e) => return Reply::Error(crate::error::error_chain(&e)),
        }
    };
    let run = || -> Result<JobResult> {
        let backend = Backend::parse(req.runtime.as_deref().unwrap_or(""))?;
        let io = JobIo::Capture {
            stdout,
            stderr,
            cap: req.output_cap.unwrap_or(DEFAULT_OUTPUT_CAP),
        };
        // The pool's edge: the reference is resolved here, once; the job
        // runs from the image's id.
        let image = runner.store().resolve(&req.image)?.image_id();
        runner.set_teardown_after_reply(req.reply_before_cleanup);
        runner.run_pooled(&image, req.job, &backend, io, req.warm.unwrap_or_default())
    };
    match run() {
        Ok(r) => Reply::Ok(r),
        Err(e) => Reply::Error(crate::error::error_chain(&e)),
    }
}

/// One request line as read off the socket.
#[derive(Debug)]
pub enum Frame {
    /// A complete line (newline removed) and the descriptors that came with it.
    Line(Vec<u8>, Vec<OwnedFd>),
    /// A line over [`MAX_REQUEST_BYTES`]: discarded up to its newline.
    TooLarge {
        /// Bytes seen (at least [`MAX_REQUEST_BYTES`] + 1).
        size: usize,
    },
    /// More descriptors than [`MAX_FDS`] came with a line; it is refused.
    TooManyFds,
}

/// Reads request lines off the launcher's socket, holding at most
/// [`MAX_REQUEST_BYTES`] plus one read's worth of data in memory.
#[derive(Debug)]
pub struct RequestReader<'a> {
    sock: &'a UnixStream,
    pending: Vec<u8>,
    fds: Vec<OwnedFd>,
    fds_truncated: bool,
    eof: bool,
}

impl<'a> RequestReader<'a> {
    /// Read from `sock`.
    pub fn new(sock: &'a UnixStream) -> Self {
        RequestReader {
            sock,
            pending: Vec::new(),
            fds: Vec::new(),
            fds_truncated: false,
            eof: false,
        }
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let got = fd_passing::recv_with_fds(self.sock, buf).ctx("read a request from", "socket")?;
        self.fds.extend(got.fds);
        self.fds_truncated |= got.fds_truncated;
        if got.len == 0 {
            self.eof = true;
        }
        Ok(got.len)
    }

    fn take_frame(&mut self, line: Vec<u8>) -> Frame {
        let fds = std::mem::take(&mut self.fds);
        if std::mem::take(&mut self.fds_truncated) {
            return Frame::TooManyFds;
        }
        Frame::Line(line, fds)
    }

    /// Whether a line (or the end of the stream) can be had without
    /// blocking longer than `timeout_ms`.
    pub fn readable(&self, timeout_ms: i32) -> bool {
        use std::os::fd::AsRawFd;
        if self.eof || self.pending.contains(&b'\n') {
            return true;
        }
        let mut pfd = libc::pollfd {
            fd: self.sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd that lives for the call.
        unsafe { libc::poll(&mut pfd, 1, timeout_ms) != 0 }
    }

    /// The next line, or `None` at end of stream. Blank lines are skipped.
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
                let rest = self.pending.split_off(pos + 1);
                let mut line = std::mem::replace(&mut self.pending, rest);
                line.pop();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(self.take_frame(line)));
            }
            if self.pending.len() > MAX_REQUEST_BYTES {
                return self.skip_line(&mut buf).map(Some);
            }
            if self.eof {
                if self.pending.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                let line = std::mem::take(&mut self.pending);
                return Ok(Some(self.take_frame(line)));
            }
            let n = self.fill(&mut buf)?;
            self.pending.extend_from_slice(&buf[..n]);
        }
    }

    /// Discard the rest of an over-long line, up to and including its newline.
    fn skip_line(&mut self, buf: &mut [u8]) -> Result<Frame> {
        let mut size = self.pending.len();
        self.pending.clear();
        loop {
            if self.eof {
                break;
            }
            let n = self.fill(buf)?;
            if let Some(pos) = buf[..n].iter().position(|b| *b == b'\n') {
                size += pos;
                self.pending.extend_from_slice(&buf[pos + 1..n]);
                break;
            }
            size += n;
        }
        self.fds.clear();
        self.fds_truncated = false;
        Ok(Frame::TooLarge { size })
    }
}

/// Serve requests from `sock` until it closes, one at a time, writing one
/// reply line per request line back to it. A malformed, too large or
/// invalid request gets an error reply; only I/O errors on the socket end
/// the loop early. Output paths are opened beneath `dir`, if given.
///
/// With warm sandboxes on ([`Runner::set_warm`]), used sandboxes are torn
/// down after the reply is written, the stock is refilled while no request
/// is waiting, and stale sandboxes are discarded when idle; all of them go
/// when the socket closes.
pub fn serve(runner: &mut Runner, sock: &UnixStream, dir: Option<&OutputDir>) -> Result<()> {
    let mut reader = RequestReader::new(sock);
    let served = serve_requests(runner, &mut reader, sock, dir);
    runner.warm_shutdown();
    served
}

/// How often an idle launcher with warm sandboxes checks them.
const WARM_TICK_MS: i32 = 1000;

fn serve_requests(
    runner: &mut Runner,
    reader: &mut RequestReader<'_>,
    sock: &UnixStream,
    dir: Option<&OutputDir>,
) -> Result<()> {
    let mut out = sock;
    loop {
        // The last job's teardown, if it was left until after its reply.
        runner.after_reply();
        if runner.warm().enabled() {
            while !reader.readable(0) && runner.warm_refill_one() {}
            while !reader.readable(WARM_TICK_MS) {
                runner.warm_tick();
                while !reader.readable(0) && runner.warm_refill_one() {}
            }
        }
        let Some(frame) = reader.next_frame()? else {
            return Ok(());
        };
        let reply = match frame {
            Frame::Line(line, fds) => match parse_request(&line) {
                Ok(req) => handle(runner, req, &fds, dir),
                Err(e) => Reply::Error(crate::error::error_chain(&e)),
            },
            Frame::TooLarge { size } => Reply::Error(RequestError::TooLarge { size }.to_string()),
            Frame::TooManyFds => Reply::Error(format!(
                "request refused: more than {MAX_FDS} descriptors attached"
            )),
        };
        let mut text =
            serde_json::to_vec(&reply).map_err(|e| Error::Protocol(format!("reply: {e}")))?;
        text.push(b'\n');
        out.write_all(&text).ctx("write a reply to", "socket")?;
    }
}

/// The caller's end of one launcher process.
#[derive(Debug)]
pub struct Launcher {
    child: Child,
    /// Readable when the launcher exits: its socket may outlive it (a job's
    /// init killed during create inherited it), so EOF alone cannot tell.
    pidfd: Option<OwnedFd>,
    sock: Option<UnixStream>,
    replies: BufReader<UnixStream>,
    runtime: Option<String>,
    warm: Option<crate::sandbox::WarmPolicy>,
}

impl Launcher {
    /// Start a launcher: `cmd` is e.g. `skiff --root ROOT launcher`. Its
    /// stdin becomes the launcher's end of a new socketpair and its stdout
    /// `/dev/null` (set stderr as you like).
    pub fn spawn(mut cmd: Command) -> Result<Launcher> {
        let (ours, theirs) = UnixStream::pair().ctx("create", "launcher socketpair")?;
        let mut child = cmd
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .spawn()
            .ctx("start launcher", format!("{cmd:?}"))?;
        // Drop the command, and with it our copy of the launcher's end, so
        // that a dead launcher reads as end of stream.
        drop(cmd);
        let replies = match ours.try_clone() {
            Ok(r) => BufReader::new(r),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::io("clone", "launcher socket", e));
            }
        };
        let pidfd = crate::supervise::pidfd_open(child.id() as i32).ok();
        Ok(Launcher {
            child,
            pidfd,
            sock: Some(ours),
            replies,
            runtime: None,
            warm: None,
        })
    }

    /// The `runtime` that [`Launch::launch`] puts in its requests (default:
    /// the launcher's libcontainer).
    pub fn set_runtime(&mut self, runtime: Option<String>) {
        self.runtime = runtime;
    }

    /// The `runtime` set by [`Launcher::set_runtime`].
    pub fn runtime(&self) -> Option<&str> {
        self.runtime.as_deref()
    }

    /// The `warm` policy that [`Launch::launch`] puts in its requests.
    pub fn set_warm_policy(&mut self, warm: Option<crate::sandbox::WarmPolicy>) {
        self.warm = warm;
    }

    /// The policy set by [`Launcher::set_warm_policy`].
    pub fn warm_policy(&self) -> Option<crate::sandbox::WarmPolicy> {
        self.warm
    }

    /// The launcher's pid (for counting its fds and mounts).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send one request (no descriptors) and wait for its reply.
    pub fn request(&mut self, req: &Request) -> Result<Reply> {
        self.request_with_fds(req, &[])
    }

    /// Send one request with `fds` attached (`{"fd": N}` sinks index them)
    /// and wait for its reply.
    pub fn request_with_fds(&mut self, req: &Request, fds: &[BorrowedFd<'_>]) -> Result<Reply> {
        let mut line =
            serde_json::to_vec(req).map_err(|e| Error::Protocol(format!("request: {e}")))?;
        line.push(b'\n');
        self.send_raw(&line, fds)?;
        self.read_reply()
    }

    /// Send raw bytes (tests: malformed or oversized requests).
    pub fn send_raw(&mut self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
        let sock = self
            .sock
            .as_ref()
            .ok_or_else(|| Error::Protocol("launcher socket is closed".into()))?;
        fd_passing::send_with_fds(sock, bytes, fds).ctx("send a request to", "launcher")
    }

    /// Read one reply line.
    pub fn read_reply(&mut self) -> Result<Reply> {
        self.wait_readable_or_exited()?;
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

    /// Wait until a reply can be read, or fail when the launcher exited
    /// without one.
    fn wait_readable_or_exited(&mut self) -> Result<()> {
        use std::os::fd::AsRawFd;
        if self.replies.buffer().contains(&b'\n') {
            return Ok(());
        }
        let Some(pidfd) = &self.pidfd else {
            return Ok(());
        };
        let mut fds = [
            libc::pollfd {
                fd: self.replies.get_ref().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        loop {
            // SAFETY: two valid pollfds that live for the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::io("wait for a reply from", "launcher", e));
            }
            break;
        }
        if fds[0].revents != 0 {
            return Ok(()); // a reply, or the end of the stream
        }
        Err(Error::Protocol("launcher exited".into()))
    }

    /// Close the socket and wait for the launcher to exit.
    pub fn finish(mut self) -> Result<ExitStatus> {
        self.close();
        self.child.wait().ctx("wait for", "launcher")
    }

    fn close(&mut self) {
        if let Some(s) = self.sock.take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        self.close();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_request_flat_json() {
        let req: Request = serde_json::from_str(
            r#"{"image":"busybox","command":["sh","-c","exit 3"],"pids_limit":16,
                "stdout":{"path":"o"},"stderr":{"fd":1},"output_cap":1000,"runtime":"runc"}"#,
        )
        .expect("parse");
        assert_eq!(req.image, "busybox");
        assert_eq!(req.job.command, vec!["sh", "-c", "exit 3"]);
        assert_eq!(req.job.limits.pids, Some(16));
        assert_eq!(req.runtime.as_deref(), Some("runc"));
        assert_eq!(req.output_cap, Some(1000));
        assert_eq!(req.stdout, Some(Sink::Path("o".into())));
        assert_eq!(req.stderr, Some(Sink::Fd(1)));
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

    #[test]
    fn test_parse_request_accepts_every_known_field() {
        let req = parse_request(
            br#"{"image":"i","name":"n","command":["true"],"entrypoint":null,"env":["A=1"],
                "workdir":"/","user":"0","hostname":"h","memory_bytes":67108864,"cpus":0.5,
                "cpu_shares":512,"pids_limit":64,"network":"none","read_only":true,
                "volumes":[],"tmpfs":["/t:size=1m"],"cap_add":[],"cap_drop":[],
                "seccomp":"default","stdin":false,"timeout_ms":1000,"stop_timeout_ms":10,
                "scratch":"tmpfs","scratch_size_bytes":8388608,"runtime":"runc",
                "stdout":{"fd":0},"stderr":{"path":"e"},"output_cap":5,"warm":"require",
                "reply_before_cleanup":true}"#,
        )
        .expect("every field known");
        assert_eq!(req.job.limits.cpus, Some(0.5));
        assert_eq!(req.job.scratch_size, Some(8 << 20));
        assert_eq!(req.warm, Some(crate::sandbox::WarmPolicy::Require));
        assert!(req.reply_before_cleanup);
    }

    #[test]
    fn test_parse_request_unknown_field_named() {
        let e = parse_request(br#"{"image":"i","pids_limt":5}"#).expect_err("misspelt");
        assert!(e.to_string().contains("\"pids_limt\""), "{e}");
        let e = parse_request(br#"{"image":"i","stdout":{"fd":0,"x":1}}"#).expect_err("nested");
        assert!(matches!(e, RequestError::Json(_)), "{e}");
    }

    #[test]
    fn test_parse_request_too_large() {
        let mut big = br#"{"image":"i","name":""#.to_vec();
        big.resize(MAX_REQUEST_BYTES + 1, b'a');
        assert!(matches!(
            parse_request(&big),
            Err(RequestError::TooLarge { .. })
        ));
    }

    #[test]
    fn test_parse_request_validates_with_field_names() {
        for (body, field) in [
            (
                r#"{"image":"i","timeout_ms":18446744073709551615}"#,
                "timeout_ms",
            ),
            (r#"{"image":"i","cpus":1000}"#, "cpus"),
            (r#"{"image":"i","memory_bytes":1024}"#, "memory_bytes"),
            (r#"{"image":"i","env":["=x"]}"#, "env"),
            (r#"{"image":"i","tmpfs":["rel"]}"#, "tmpfs"),
        ] {
            let e = parse_request(body.as_bytes()).expect_err(body);
            assert!(e.to_string().contains(field), "{body}: {e}");
        }
        for (body, what) in [
            (
                r#"{"image":"i","stdout":{"path":"/proc/self/fd/1"}}"#,
                "relative",
            ),
            (r#"{"image":"i","stderr":{"path":"../x"}}"#, "relative"),
            (r#"{"image":"i","stderr":{"fd":9}}"#, "out of range"),
            (r#"{"command":["true"]}"#, "image"),
            (r#"[1]"#, "malformed"),
        ] {
            let e = crate::error::error_chain(&parse_request(body.as_bytes()).expect_err(body));
            assert!(e.contains(what), "{body}: {e}");
        }
    }

    #[test]
    fn test_request_reader_resynchronises_after_too_large_line() {
        let (a, b) = UnixStream::pair().expect("pair");
        let writer = std::thread::spawn(move || {
            let mut a = a;
            let big = vec![b'x'; MAX_REQUEST_BYTES * 2];
            a.write_all(&big).expect("big");
            a.write_all(b"\n{\"image\":\"i\"}\n").expect("next");
        });
        let mut r = RequestReader::new(&b);
        match r.next_frame().expect("read") {
            Some(Frame::TooLarge { size }) => assert_eq!(size, MAX_REQUEST_BYTES * 2),
            other => panic!("expected TooLarge, got {other:?}"),
        }
        match r.next_frame().expect("read") {
            Some(Frame::Line(l, fds)) => {
                assert_eq!(l, b"{\"image\":\"i\"}");
                assert!(fds.is_empty());
            }
            other => panic!("expected the next line, got {other:?}"),
        }
        writer.join().expect("writer");
        assert!(r.next_frame().expect("eof").is_none());
    }
}
