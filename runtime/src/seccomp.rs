//! The default seccomp profile.
//!
//! Docker's default profile is an allowlist of about 350 syscalls. skiff's is
//! the complement that matters: it allows by default and returns `EPERM` for
//! the syscalls Docker's profile blocks for a container with the default
//! capabilities (mount and namespace syscalls, module loading, kexec, clock
//! setting, keyrings, bpf, perf, userfaultfd, …), including `clone` with any
//! namespace flag. `clone3` gets `ENOSYS` so libc falls back to `clone`,
//! whose flags can be checked. As in Docker, adding a capability
//! (`--cap-add SYS_ADMIN`, …) re-allows the syscalls that capability guards.
//! The rules cover the x86-64, x86 and x32 ABIs.

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder,
    LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

use crate::error::{Error, Result};

/// Syscalls blocked unless the job holds the capability named.
const BLOCKED: &[(Option<Capability>, &[&str])] = &[
    (
        Some(Capability::SysAdmin),
        &[
            "mount",
            "umount2",
            "pivot_root",
            "unshare",
            "setns",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "open_tree",
            "move_mount",
            "mount_setattr",
            "quotactl",
            "quotactl_fd",
            "lookup_dcookie",
            "bpf",
            "perf_event_open",
            "fanotify_init",
            "name_to_handle_at",
            "open_by_handle_at",
            "swapon",
            "swapoff",
            "vhangup",
            "syslog",
        ],
    ),
    (
        Some(Capability::SysModule),
        &[
            "init_module",
            "finit_module",
            "delete_module",
            "create_module",
            "query_module",
            "get_kernel_syms",
        ],
    ),
    (
        Some(Capability::SysBoot),
        &["reboot", "kexec_load", "kexec_file_load"],
    ),
    (
        Some(Capability::SysTime),
        &["settimeofday", "clock_settime", "clock_adjtime", "adjtimex"],
    ),
    (Some(Capability::SysPacct), &["acct"]),
    (Some(Capability::SysRawio), &["iopl", "ioperm"]),
    (Some(Capability::SysPtrace), &["kcmp"]),
    (
        Some(Capability::SysNice),
        &["mbind", "set_mempolicy", "move_pages", "get_mempolicy"],
    ),
    (
        None,
        &[
            "add_key",
            "request_key",
            "keyctl",
            "uselib",
            "userfaultfd",
            "ustat",
            "sysfs",
            "_sysctl",
            "nfsservctl",
            "afs_syscall",
        ],
    ),
];

/// clone(2) flags that create namespaces (CLONE_NEWNS … CLONE_NEWNET, CLONE_NEWCGROUP, CLONE_NEWTIME).
const CLONE_NS_FLAGS: &[u64] = &[
    0x0002_0000, // NEWNS
    0x0200_0000, // NEWCGROUP
    0x0400_0000, // NEWUTS
    0x0800_0000, // NEWIPC
    0x1000_0000, // NEWUSER
    0x2000_0000, // NEWPID
    0x4000_0000, // NEWNET
    0x0000_0080, // NEWTIME
];

fn bad(e: oci_spec::OciSpecError) -> Error {
    Error::BuildSpec(e.to_string())
}

/// The default profile for a job holding `caps`.
pub fn default_profile(caps: &[Capability]) -> Result<LinuxSeccomp> {
    let eperm = libc::EPERM as u32;
    let mut names: Vec<String> = Vec::new();
    for (cap, list) in BLOCKED {
        if cap.is_some_and(|c| caps.contains(&c)) {
            continue;
        }
        for n in *list {
            if !names.iter().any(|x| x == n) {
                names.push((*n).to_string());
            }
        }
    }
    let mut syscalls: Vec<LinuxSyscall> = vec![LinuxSyscallBuilder::default()
        .names(names)
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(eperm)
        .build()
        .map_err(bad)?];
    if !caps.contains(&Capability::SysAdmin) {
        // clone's flags are its first argument on x86 (the ABI puts them first).
        for flag in CLONE_NS_FLAGS {
            let arg = LinuxSeccompArgBuilder::default()
                .index(0usize)
                .value(*flag)
                .value_two(*flag)
                .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                .build()
                .map_err(bad)?;
            syscalls.push(
                LinuxSyscallBuilder::default()
                    .names(vec!["clone".to_string()])
                    .action(LinuxSeccompAction::ScmpActErrno)
                    .errno_ret(eperm)
                    .args(vec![arg])
                    .build()
                    .map_err(bad)?,
            );
        }
        syscalls.push(
            LinuxSyscallBuilder::default()
                .names(vec!["clone3".to_string()])
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(libc::ENOSYS as u32)
                .build()
                .map_err(bad)?,
        );
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(vec![
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX86,
            Arch::ScmpArchX32,
        ])
        .syscalls(syscalls)
        .build()
        .map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(p: &LinuxSeccomp) -> Vec<String> {
        p.syscalls().as_ref().expect("syscalls")[0].names().clone()
    }

    #[test]
    fn test_default_profile_blocks_mount_and_modules() {
        let p = default_profile(&[]).expect("ok");
        let b = blocked(&p);
        for s in [
            "mount",
            "init_module",
            "finit_module",
            "unshare",
            "setns",
            "keyctl",
            "bpf",
        ] {
            assert!(b.iter().any(|x| x == s), "{s} not blocked");
        }
    }

    #[test]
    fn test_cap_add_reallows_guarded_syscalls() {
        let p = default_profile(&[Capability::SysAdmin]).expect("ok");
        let b = blocked(&p);
        assert!(!b.iter().any(|x| x == "mount"));
        assert!(b.iter().any(|x| x == "init_module"));
    }
}
