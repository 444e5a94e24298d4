//! Descriptors over a unix stream socket (`SCM_RIGHTS`), and the launcher's
//! takeover of the socket its caller gives it as stdin.
//!
//! The pool protocol ([`crate::pool`]) sends a request's output sinks as
//! descriptors attached to the request's first bytes; the launcher receives
//! them close-on-exec, so no job ever inherits them by accident.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{
    getsockopt, recvmsg, sendmsg, sockopt, ControlMessage, ControlMessageOwned, MsgFlags, SockType,
};

/// The most descriptors one message may carry; more are refused (the kernel
/// closes the ones that do not fit, and the message is flagged truncated).
pub const MAX_FDS: usize = 4;

/// Send all of `data` on `sock`, with `fds` attached to its first byte.
pub fn send_with_fds(sock: &UnixStream, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("at most {MAX_FDS} descriptors per request"),
        ));
    }
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let mut sent = 0;
    while sent < data.len() {
        let cmsg = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage<'_>] = if sent == 0 && !raw.is_empty() {
            &cmsg
        } else {
            &[]
        };
        let iov = [IoSlice::new(&data[sent..])];
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) => sent += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// What one `recvmsg` got.
#[derive(Debug)]
pub struct Received {
    /// Bytes read into the buffer (0 at end of stream).
    pub len: usize,
    /// Descriptors that came with them, close-on-exec.
    pub fds: Vec<OwnedFd>,
    /// More descriptors were sent than [`MAX_FDS`]; the extra ones were closed.
    pub fds_truncated: bool,
}

/// Receive bytes into `buf`, and any descriptors that came with them.
pub fn recv_with_fds(sock: &UnixStream, buf: &mut [u8]) -> io::Result<Received> {
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    loop {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut fds = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(list) = c {
                for fd in list {
                    // SAFETY: the kernel just installed this descriptor in
                    // this process for us; nothing else owns it.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        return Ok(Received {
            len: msg.bytes,
            fds,
            fds_truncated: msg.flags.contains(MsgFlags::MSG_CTRUNC),
        });
    }
}

/// Take over this process's stdin as the protocol socket: it must be a unix
/// stream socket. It is moved to a close-on-exec descriptor (≥ 3) and stdin
/// becomes `/dev/null`, so neither a job nor a runtime binary inherits it.
pub fn take_stdin_socket() -> io::Result<UnixStream> {
    // SAFETY: fd 0 is open for the life of the process (checked by
    // getsockopt below; it is only borrowed here).
    let stdin = unsafe { BorrowedFd::borrow_raw(0) };
    match getsockopt(&stdin, sockopt::SockType) {
        Ok(SockType::Stream) => {}
        Ok(other) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("stdin is a {other:?} socket, not a unix stream socket"),
            ))
        }
        Err(e) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("stdin is not a socket ({e}): start the launcher with one end of a unix socketpair as its stdin"),
            ))
        }
    }
    let moved = stdin.try_clone_to_owned()?; // F_DUPFD_CLOEXEC, lowest free fd ≥ 3
    let null = std::fs::File::open("/dev/null")?;
    nix::unistd::dup2(null.as_fd().as_raw_fd(), 0)?;
    Ok(UnixStream::from(moved))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn test_fd_passing_round_trip() {
        let (a, b) = UnixStream::pair().expect("pair");
        let mut file = tempfile::tempfile().expect("tmp");
        send_with_fds(&a, b"hello\n", &[file.as_fd()]).expect("send");
        let mut buf = [0u8; 64];
        let got = recv_with_fds(&b, &mut buf).expect("recv");
        assert_eq!(&buf[..got.len], b"hello\n");
        assert_eq!(got.fds.len(), 1);
        assert!(!got.fds_truncated);
        let flags = nix::fcntl::fcntl(got.fds[0].as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD)
            .expect("getfd");
        assert_ne!(
            flags & libc::FD_CLOEXEC,
            0,
            "received fds are close-on-exec"
        );
        let mut theirs = std::fs::File::from(got.fds.into_iter().next().expect("fd"));
        theirs.write_all(b"via fd").expect("write");
        let mut back = String::new();
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(0)).expect("seek");
        file.read_to_string(&mut back).expect("read");
        assert_eq!(back, "via fd");
    }

    #[test]
    fn test_fd_passing_too_many_fds_refused() {
        let (a, _b) = UnixStream::pair().expect("pair");
        let f = tempfile::tempfile().expect("tmp");
        let fds = vec![f.as_fd(); MAX_FDS + 1];
        assert!(send_with_fds(&a, b"x", &fds).is_err());
    }
}
