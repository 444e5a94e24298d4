//! The single-threaded supervision loop: one `poll` over the job's output
//! pipes, the caller's stdin, a signalfd and a pidfd, with the timeout as
//! poll's timer. No threads, no async runtime.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The signals a launcher takes over while a job runs and forwards to it.
pub const FORWARDED: &[libc::c_int] = &[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Blocks [`FORWARDED`] and reads them from a signalfd. Dropping restores
/// the previous mask.
#[derive(Debug)]
pub struct SignalGuard {
    fd: OwnedFd,
    old: libc::sigset_t,
}

impl SignalGuard {
    /// Block the forwarded signals; they queue on the returned fd. Call
    /// before creating the job so no signal is lost in between (the job's
    /// init unblocks them before exec).
    pub fn install() -> Result<SignalGuard> {
        // SAFETY: libc signal-set calls on local, initialised sets; the fd
        // returned by signalfd is checked and then owned.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in FORWARDED {
                libc::sigaddset(&mut set, *s);
            }
            if libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old) != 0 {
                return Err(Error::io("block signals", "", io::Error::last_os_error()));
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            if fd < 0 {
                return Err(Error::io("signalfd", "", io::Error::last_os_error()));
            }
            Ok(SignalGuard {
                fd: OwnedFd::from_raw_fd(fd),
                old,
            })
        }
    }

    fn read(&self) -> Option<libc::c_int> {
        // SAFETY: reading one signalfd_siginfo into a local of that size.
        unsafe {
            let mut info: libc::signalfd_siginfo = std::mem::zeroed();
            let n = libc::read(
                self.fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                std::mem::size_of::<libc::signalfd_siginfo>(),
            );
            (n == std::mem::size_of::<libc::signalfd_siginfo>() as isize)
                .then_some(info.ssi_signo as libc::c_int)
        }
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        // Drain pending signals so unblocking does not deliver them to us.
        while self.read().is_some() {}
        // SAFETY: restoring the mask saved at install.
        unsafe {
            libc::sigprocmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut());
        }
    }
}

/// Open a pidfd for a child.
pub fn pidfd_open(pid: i32) -> Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags; the result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(Error::io(
            "pidfd_open",
            format!("pid {pid}"),
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// How the job is stopped on timeout and which process gets forwarded signals.
pub trait JobControl {
    /// Deliver a forwarded signal.
    fn forward(&mut self, sig: libc::c_int);
    /// Ask the job to stop (SIGTERM).
    fn terminate(&mut self);
    /// Kill the job and everything in it.
    fn kill(&mut self);
}

/// Where the job's output goes.
#[derive(Debug)]
pub enum OutputSink {
    /// Copy to a file descriptor (the caller's stdout or stderr).
    Fd(RawFd),
    /// Capture into a file, at most `cap` bytes; the rest is counted and dropped.
    Capped {
        /// Destination.
        file: std::fs::File,
        /// Byte cap.
        cap: u64,
    },
}

/// A failure to write one of the job's output streams to its sink: the
/// first error, and every byte that should have reached the sink but did not.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutputError {
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The first write error, e.g. "No space left on device (os error 28)".
    pub error: String,
    /// Bytes of the job's output lost from that error on.
    pub bytes_lost: u64,
}

impl std::fmt::Display for OutputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "writing the job's {}: {} ({} bytes lost)",
            self.stream, self.error, self.bytes_lost
        )
    }
}

/// What the loop saw.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Raw wait status of the waited pid.
    pub wait_status: i32,
    /// Whether the timeout fired.
    pub timed_out: bool,
    /// Bytes of output dropped by a cap (stdout, stderr).
    pub dropped: [u64; 2],
    /// Streams whose sink failed (at most one entry per stream).
    pub output_errors: Vec<OutputError>,
}

struct Stream {
    name: &'static str,
    fd: Option<OwnedFd>,
    sink: OutputSink,
    written: u64,
    dropped: u64,
    /// The first write error, and the bytes lost since (the sink is not
    /// written to again once it failed; the pipe is still drained so the
    /// job never blocks).
    failed: Option<OutputError>,
}

impl Stream {
    fn new(name: &'static str, fd: OwnedFd, sink: OutputSink) -> Stream {
        Stream {
            name,
            fd: Some(fd),
            sink,
            written: 0,
            dropped: 0,
            failed: None,
        }
    }

    /// Write `data` to the sink's fd unless it failed before; count what
    /// does not get there.
    fn deliver(&mut self, fd: RawFd, data: &[u8]) {
        if let Some(f) = &mut self.failed {
            f.bytes_lost += data.len() as u64;
            return;
        }
        let mut done = 0;
        while done < data.len() {
            // SAFETY: writing from a valid buffer of the given length.
            let n = unsafe { libc::write(fd, data[done..].as_ptr().cast(), data.len() - done) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if e.kind() == io::ErrorKind::WouldBlock {
                    // A non-blocking caller fd: wait until it takes more.
                    let mut p = libc::pollfd {
                        fd,
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut p, 1, -1) };
                    continue;
                }
                self.failed = Some(OutputError {
                    stream: self.name.to_string(),
                    error: e.to_string(),
                    bytes_lost: (data.len() - done) as u64,
                });
                return;
            }
            if n == 0 {
                self.failed = Some(OutputError {
                    stream: self.name.to_string(),
                    error: "the output accepted no more bytes".into(),
                    bytes_lost: (data.len() - done) as u64,
                });
                return;
            }
            done += n as usize;
        }
    }
}

impl Stream {
    /// Read once; returns false on EOF.
    fn pump(&mut self, buf: &mut [u8]) -> bool {
        let Some(fd) = &self.fd else { return false };
        // SAFETY: reading into a valid buffer of the given length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) {
                return true;
            }
            self.fd = None;
            return false;
        }
        if n == 0 {
            self.fd = None;
            return false;
        }
        let data = &buf[..n as usize];
        match &self.sink {
            OutputSink::Fd(out) => {
                let out = *out;
                self.deliver(out, data);
            }
            OutputSink::Capped { file, cap } => {
                let (out, cap) = (file.as_raw_fd(), *cap);
                let room = cap.saturating_sub(self.written) as usize;
                let take = room.min(data.len());
                if take > 0 {
                    self.deliver(out, &data[..take]);
                    self.written += take as u64;
                }
                self.dropped += (data.len() - take) as u64;
            }
        }
        true
    }
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a valid descriptor.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// A started job's streams: each output pipe with its sink, and the
/// caller's stdin fd with the job's stdin pipe (`-i`).
#[derive(Debug)]
pub struct JobStreams {
    /// The job's stdout pipe and where it goes.
    pub stdout: (OwnedFd, OutputSink),
    /// The job's stderr pipe and where it goes.
    pub stderr: (OwnedFd, OutputSink),
    /// The caller's stdin and the job's stdin pipe, when attached.
    pub stdin: Option<(RawFd, OwnedFd)>,
}

/// When to stop a job: SIGTERM at `timeout`, SIGKILL `stop_timeout` later.
#[derive(Debug, Clone, Copy)]
pub struct StopPolicy {
    /// How long the job may run.
    pub timeout: Option<Duration>,
    /// How long after SIGTERM before SIGKILL.
    pub stop_timeout: Duration,
}

/// Supervise a started job until `wait_pid` exits and its output is drained.
///
/// - output pipes are copied to their sinks as data arrives;
/// - stdin (the caller's fd and the job's pipe) is copied until EOF;
/// - forwarded signals go to `control`;
/// - at the timeout, SIGTERM, then SIGKILL after the stop timeout.
pub fn supervise(
    wait_pid: i32,
    control: &mut dyn JobControl,
    signals: &SignalGuard,
    streams: JobStreams,
    stop: StopPolicy,
) -> Result<Outcome> {
    let JobStreams {
        stdout,
        stderr,
        stdin,
    } = streams;
    let StopPolicy {
        timeout,
        stop_timeout,
    } = stop;
    let pidfd = pidfd_open(wait_pid)?;
    let mut streams = [
        Stream::new("stdout", stdout.0, stdout.1),
        Stream::new("stderr", stderr.0, stderr.1),
    ];
    for s in &streams {
        if let Some(fd) = &s.fd {
            set_nonblocking(fd.as_raw_fd());
        }
    }
    let mut stdin = stdin;
    let start = Instant::now();
    let mut term_deadline = timeout.map(|t| start + t);
    let mut kill_deadline: Option<Instant> = None;
    let mut outcome = Outcome::default();
    let mut exited = false;
    let mut drain_deadline: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let streams_open = streams.iter().any(|s| s.fd.is_some());
        if exited && (!streams_open || drain_deadline.is_some_and(|d| Instant::now() >= d)) {
            break;
        }
        let now = Instant::now();
        if !exited {
            if let Some(d) = term_deadline.filter(|d| now >= *d) {
                let _ = d;
                outcome.timed_out = true;
                control.terminate();
                term_deadline = None;
                kill_deadline = Some(now + stop_timeout);
            }
            if kill_deadline.is_some_and(|d| now >= d) {
                control.kill();
                kill_deadline = None;
            }
        }
        let next = [term_deadline, kill_deadline, drain_deadline]
            .into_iter()
            .flatten()
            .min();
        let wait_ms: libc::c_int = match next {
            Some(d) => d.saturating_duration_since(now).as_millis().min(60_000) as libc::c_int + 1,
            None => -1,
        };
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(5);
        let mut roles: Vec<u8> = Vec::with_capacity(5);
        let mut add = |fd: RawFd, role: u8| {
            fds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
            roles.push(role);
        };
        for (i, s) in streams.iter().enumerate() {
            if let Some(fd) = &s.fd {
                add(fd.as_raw_fd(), i as u8);
            }
        }
        if !exited {
            add(pidfd.as_raw_fd(), 2);
            add(signals.fd.as_raw_fd(), 3);
        }
        if let Some((src, _)) = &stdin {
            add(*src, 4);
        }
        // SAFETY: `fds` is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(Error::io("poll", "", e));
        }
        for (p, role) in fds.iter().zip(roles.iter()) {
            if p.revents == 0 {
                continue;
            }
            match role {
                0 | 1 => {
                    streams[*role as usize].pump(&mut buf);
                }
                2 => {
                    let mut status = 0;
                    // SAFETY: reaping our own child; status is a valid out pointer.
                    let r = unsafe { libc::waitpid(wait_pid, &mut status, libc::WNOHANG) };
                    if r == wait_pid {
                        outcome.wait_status = status;
                        exited = true;
                        drain_deadline = Some(Instant::now() + Duration::from_secs(2));
                        stdin = None;
                    }
                }
                3 => {
                    while let Some(sig) = signals.read() {
                        control.forward(sig);
                    }
                }
                4 => {
                    let Some((src, dst)) = &stdin else { continue };
                    // SAFETY: reading into a valid buffer.
                    let r = unsafe { libc::read(*src, buf.as_mut_ptr().cast(), buf.len()) };
                    if r <= 0 {
                        stdin = None; // EOF: closing our end gives the job EOF.
                    } else {
                        let mut f = std::mem::ManuallyDrop::new(
                            // SAFETY: borrowing the pipe fd we own in `dst`.
                            unsafe { std::fs::File::from_raw_fd(dst.as_raw_fd()) },
                        );
                        if f.write_all(&buf[..r as usize]).is_err() {
                            stdin = None;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    outcome.dropped = [streams[0].dropped, streams[1].dropped];
    outcome.output_errors = streams.iter_mut().filter_map(|s| s.failed.take()).collect();
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pumped(sink: OutputSink, chunks: &[&[u8]]) -> Stream {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let mut s = Stream::new("stdout", r, sink);
        let mut w = std::fs::File::from(w);
        let mut buf = vec![0u8; 1024];
        for c in chunks {
            w.write_all(c).expect("feed");
            assert!(s.pump(&mut buf));
        }
        s
    }

    #[test]
    fn test_stream_write_error_recorded_with_bytes_lost() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let s = pumped(
            OutputSink::Capped {
                file: full,
                cap: 1 << 20,
            },
            &[b"hello", b"world!"],
        );
        let f = s.failed.expect("the ENOSPC is recorded");
        assert_eq!(f.stream, "stdout");
        assert!(f.error.contains("No space left on device"), "{}", f.error);
        assert_eq!(f.bytes_lost, 11);
        assert!(f.to_string().contains("stdout"));
    }

    #[test]
    fn test_stream_cap_drops_are_not_errors() {
        let file = tempfile::tempfile().expect("tmp");
        let s = pumped(OutputSink::Capped { file, cap: 4 }, &[b"hello"]);
        assert!(s.failed.is_none());
        assert_eq!((s.written, s.dropped), (4, 1));
    }
}
