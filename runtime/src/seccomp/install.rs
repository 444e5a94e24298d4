//! Installing a compiled filter: the last step of skiff's executor in the
//! job's init, just before `execve` (where libcontainer would have loaded
//! it; `no_new_privs` is already set).

/// Load `bpf` as this thread's seccomp filter. For the job's init, just
/// before `execve`: async-signal-safe, no allocation.
pub fn install(bpf: &[u8]) -> std::io::Result<()> {
    let prog = libc::sock_fprog {
        len: (bpf.len() / 8) as libc::c_ushort,
        filter: bpf.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `bpf`, which outlives the call; the kernel
    // copies the program.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::{compile, default_profile, MaskedEqOrder};

    #[test]
    fn test_install_default_filter_blocks_in_a_child() {
        let profile =
            default_profile(crate::oci::DEFAULT_CAPS, MaskedEqOrder::ValueIsMask).expect("profile");
        let bpf = compile(&profile).expect("compile");
        // SAFETY: the child makes only async-signal-safe calls (prctl,
        // syscall, _exit) before it exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: raw syscalls in the forked child; it never returns.
            unsafe {
                let nnp = libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0;
                let installed = nnp && install(bpf.bytes()).is_ok();
                // keyctl is never allowed: EPERM under the filter.
                let r = libc::syscall(libc::SYS_keyctl, 0, 0, 0, 0, 0);
                let blocked = r == -1 && *libc::__errno_location() == libc::EPERM;
                let allowed = libc::getpid() > 0;
                libc::_exit(if installed && blocked && allowed {
                    0
                } else {
                    1
                });
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(r, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "status {status:#x}"
        );
    }
}
