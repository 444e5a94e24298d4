//! Probes that must not touch the caller: each runs in a forked child,
//! which reports a few integers (usually errno values) through a pipe.
//!
//! The child runs only the probe's closure and then `_exit`s. The closure
//! must not allocate or take locks (another thread of the caller could
//! hold them at fork time): build every path and option string before.

use std::ffi::CStr;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The errno of the last failed libc call, without allocating.
pub(crate) fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// 0 when `rc` is a success (non-negative), else the errno.
pub(crate) fn rc_errno(rc: i64) -> i32 {
    if rc < 0 {
        errno().max(1)
    } else {
        0
    }
}

/// Run `f` in a forked child; `f` fills `N` slots, which come back here.
/// `Err` when the child could not be made or died without reporting.
pub(crate) fn in_child<const N: usize>(f: impl FnOnce(&mut [i32; N])) -> io::Result<[i32; N]> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (r, w) = (fds[0], fds[1]);
    // SAFETY: the child only runs `f` (which must not allocate or lock),
    // writes to the pipe and `_exit`s; nothing of the parent's state is used.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = io::Error::last_os_error();
        // SAFETY: closing our own descriptors.
        unsafe {
            libc::close(r);
            libc::close(w);
        }
        return Err(e);
    }
    if pid == 0 {
        let mut out = [0i32; N];
        let code = match catch_unwind(AssertUnwindSafe(|| f(&mut out))) {
            Ok(()) => 0,
            Err(_) => 101,
        };
        // SAFETY: writing a local array to our pipe, then leaving without
        // running the parent's atexit handlers or destructors.
        unsafe {
            libc::write(w, out.as_ptr().cast(), std::mem::size_of_val(&out));
            libc::_exit(code);
        }
    }
    // SAFETY: the parent's copy of the write end is ours to close.
    unsafe { libc::close(w) };
    let mut buf = [0i32; N];
    let want = std::mem::size_of_val(&buf);
    let mut got = 0usize;
    while got < want {
        // SAFETY: reading into the unfilled tail of `buf`.
        let n = unsafe { libc::read(r, buf.as_mut_ptr().cast::<u8>().add(got).cast(), want - got) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            break;
        }
        got += n as usize;
    }
    // SAFETY: our read end.
    unsafe { libc::close(r) };
    let mut status = 0;
    loop {
        // SAFETY: waiting for the child we forked.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc >= 0 || errno() != libc::EINTR {
            break;
        }
    }
    if got != want || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(io::Error::other(format!(
            "probe child died (status {status:#x}, {got} of {want} bytes reported)"
        )));
    }
    Ok(buf)
}

/// `mount(2)` with C strings; returns 0 or the errno.
pub(crate) fn mount(src: &CStr, target: &CStr, fstype: &CStr, flags: u64, data: &CStr) -> i32 {
    // SAFETY: valid NUL-terminated strings.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    rc_errno(rc.into())
}

/// Enter a new mount namespace with private propagation (in a probe child).
pub(crate) fn private_mount_ns() -> i32 {
    // SAFETY: unshare and mount with constant arguments.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return errno().max(1);
        }
        let rc = libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        );
        rc_errno(rc.into())
    }
}

/// Describe an errno for a report.
pub(crate) fn errno_text(e: i32) -> String {
    io::Error::from_raw_os_error(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_in_child_reports_slots() {
        let out = in_child(|o: &mut [i32; 3]| {
            o[0] = 7;
            o[2] = 9;
        })
        .expect("child");
        assert_eq!(out, [7, 0, 9]);
    }

    #[test]
    fn test_in_child_panic_is_an_error() {
        let r = in_child(|_: &mut [i32; 1]| panic!("boom"));
        assert!(r.is_err());
    }
}
