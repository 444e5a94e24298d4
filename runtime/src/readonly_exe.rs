//! Launch jobs from a skiff binary that no job can write (the class of
//! runc's CVE-2019-5736).
//!
//! A job's init is a clone of the launcher, so until it execs, its
//! `/proc/self/exe` is the skiff binary. An image whose entrypoint is
//! `/proc/self/exe` (with its own dynamic loader) runs its code in a process
//! whose executable is skiff's; it can keep that file open and, once no
//! process executes it any more (the launcher was SIGKILLed), reopen it for
//! writing and replace the host's skiff.
//!
//! Like runc 1.2, skiff makes the binary it runs from read-only: a launching
//! process first moves into a private mount namespace, bind-mounts its own
//! binary read-only over itself there, and re-executes from that mount
//! ([`reexec_read_only`]). Every reopening of `/proc/self/exe` then lands on
//! a read-only mount (EROFS), whether or not the launcher is alive; the
//! host's mount table is untouched. It costs one `unshare`, two mounts and
//! one `execve` per launching process.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use nix::mount::{mount, MsFlags};

use crate::error::{Error, Result};

/// Set in the environment of the re-executed process, so a failure to make
/// the binary read-only cannot loop.
const MARKER: &str = "_SKIFF_READONLY_EXE";

/// Whether this process is the re-execution of [`reexec_read_only`]: it
/// then runs in the private mount namespace that call made.
pub fn in_private_namespace() -> bool {
    std::env::var_os(MARKER).is_some() && exe_is_read_only()
}

/// Whether this process runs from a binary on a read-only mount.
pub fn exe_is_read_only() -> bool {
    match nix::sys::statvfs::statvfs("/proc/self/exe") {
        Ok(s) => s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
        Err(_) => false,
    }
}

fn exe_path() -> Result<PathBuf> {
    let p =
        std::fs::read_link("/proc/self/exe").map_err(|e| Error::io("read", "/proc/self/exe", e))?;
    if p.as_os_str().as_bytes().ends_with(b" (deleted)") {
        return Err(Error::ReadOnlyExe {
            detail: format!("{} was deleted or replaced while skiff ran", p.display()),
        });
    }
    Ok(p)
}

/// Make sure this process runs from a read-only view of its binary: return
/// at once when it already does, otherwise enter a private mount namespace,
/// bind the binary read-only over itself, and `execve` it with the same
/// arguments and environment (this call then does not return). Call it
/// first thing, while the process has a single thread.
pub fn reexec_read_only() -> Result<()> {
    if exe_is_read_only() {
        return Ok(());
    }
    if std::env::var_os(MARKER).is_some() {
        return Err(Error::ReadOnlyExe {
            detail: "the re-executed binary is still on a writable mount".into(),
        });
    }
    let exe = exe_path()?;
    crate::mounts::enter_private_mount_namespace()?;
    let fail = |what: &'static str| {
        let exe = exe.clone();
        move |e: nix::Error| Error::Mount {
            what,
            target: exe,
            source: e.into(),
        }
    };
    mount(
        Some(&exe),
        &exe,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(fail("bind of the skiff binary"))?;
    mount(
        None::<&str>,
        &exe,
        None::<&str>,
        MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .map_err(fail("read-only remount of the skiff binary"))?;
    std::env::set_var(MARKER, "1");
    let to_c = |s: OsString| CString::new(s.into_vec()).ok();
    let argv: Vec<CString> = std::env::args_os().filter_map(to_c).collect();
    let envp: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            to_c(kv)
        })
        .collect();
    let path = CString::new(exe.as_os_str().as_bytes()).map_err(|_| Error::ReadOnlyExe {
        detail: format!("{} has a NUL byte", exe.display()),
    })?;
    let Err(e) = nix::unistd::execve(&path, &argv, &envp);
    Err(Error::ReadOnlyExe {
        detail: format!("re-execute {}: {e}", exe.display()),
    })
}
