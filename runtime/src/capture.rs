//! Output captured in memory files (memfds): a job's stdout and stderr
//! when a caller wants them back, data handed to a child by descriptor, and
//! the BPF libseccomp exports ([`crate::seccomp::compile`]).

use std::fs;
use std::io::{Read, Seek};
use std::os::fd::{FromRawFd, OwnedFd};

use crate::error::{Error, Result};

/// An anonymous in-memory file for captured output.
pub fn capture_file(name: &str) -> Result<fs::File> {
    let c = std::ffi::CString::new(name).map_err(|_| Error::InvalidOption {
        what: "capture file name",
        value: name.to_string(),
        detail: "contains a NUL byte".into(),
    })?;
    // SAFETY: a valid C string and flags; the result is checked.
    let fd = unsafe { libc::memfd_create(c.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::io(
            "memfd_create",
            name,
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Read a capture file from its start.
pub fn read_capture(f: &mut fs::File) -> String {
    let mut buf = Vec::new();
    let _ = f.rewind().and_then(|()| f.read_to_end(&mut buf));
    String::from_utf8_lossy(&buf).into_owned()
}
