//! The default profile: an allowlist equivalent to Docker's default
//! profile (moby `profiles/seccomp/default.json`, as of Docker 25+), as an
//! OCI `LinuxSeccomp`.
//!
//! - Every syscall not listed fails with `EPERM` (Docker's `defaultErrnoRet`).
//!   So do new syscalls the list does not know yet.
//! - [`ALLOWED`] holds what any job may call. It follows Docker's list for
//!   the x86 family (x86-64, x86 and x32 names), including the additions for
//!   kernels 5.17 to 6.7 (`cachestat`, `fchmodat2`, `futex_wait`, …) and
//!   without `io_uring_*`, which Docker removed in 25.0.
//! - Some syscalls are allowed only with an argument check: `socket` for any
//!   family but `AF_VSOCK`, `personality` for the five personas Docker
//!   allows, and `clone` without a namespace flag.
//! - `clone3` returns `ENOSYS` (its flags are in memory seccomp cannot read),
//!   so libc falls back to `clone`, whose flags are checked.
//! - [`BY_CAPABILITY`]: adding a capability (`--cap-add SYS_ADMIN`, …)
//!   allows the syscalls that capability governs, as in Docker (`mount`,
//!   `unshare`, `setns`, `clone`/`clone3` with any flag for `SYS_ADMIN`;
//!   module loading for `SYS_MODULE`; …).
//! - Never allowed: keyrings (`add_key`, `keyctl`, `request_key`),
//!   `kexec_*`, `userfaultfd`, `io_uring_*`, `swapon`/`swapoff`, `uselib`,
//!   `ustat`, `sysfs`, `_sysctl`, `nfsservctl`, `lookup_dcookie` without
//!   `SYS_ADMIN`, `open_by_handle_at` without `DAC_READ_SEARCH`, …
//!
//! A name libseccomp does not know (an older libseccomp) is skipped by the
//! backend, so that syscall stays blocked.
//!
//! A runtime that reads the profile from `config.json` builds the filter
//! itself, and runtimes read the two values of `SCMP_CMP_MASKED_EQ`
//! differently: runc and crun as `(arg & value) == valueTwo` (libseccomp's
//! order), youki (libcontainer 0.7) as `(arg & valueTwo) == value`, which
//! written the OCI way would let `clone(CLONE_NEWUSER)` through. So the
//! profile is written for the reader ([`MaskedEqOrder`]).

use std::collections::BTreeSet;

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder,
    LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

use crate::error::{Error, Result};

/// Syscalls every job may make, by area.
pub const ALLOWED: &[&str] = &[
    // Processes, threads and exit.
    "arch_prctl",
    "capget",
    "capset",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrlimit",
    "getrusage",
    "getsid",
    "gettid",
    "ioprio_get",
    "ioprio_set",
    "kill",
    "membarrier",
    "modify_ldt",
    "pidfd_open",
    "pidfd_send_signal",
    "prctl",
    "prlimit64",
    "process_mrelease",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "restart_syscall",
    "rseq",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setpgid",
    "setpriority",
    "setrlimit",
    "setsid",
    "sysinfo",
    "tgkill",
    "times",
    "tkill",
    "ugetrlimit",
    "umask",
    "uname",
    "vfork",
    "wait4",
    "waitid",
    "waitpid",
    // Identity.
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getuid",
    "getuid32",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setuid",
    "setuid32",
    // Signals.
    "alarm",
    "pause",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    // Time and timers (reading; setting the clock needs SYS_TIME).
    "adjtimex",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "getitimer",
    "gettimeofday",
    "nanosleep",
    "setitimer",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    // Memory.
    "brk",
    "cachestat",
    "madvise",
    "map_shadow_stack",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mremap",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "remap_file_pages",
    // Synchronisation.
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    // Files: open, read, write, seek, sync.
    "close",
    "close_range",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "flock",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "_llseek",
    "lseek",
    "open",
    "openat",
    "openat2",
    "pread64",
    "preadv",
    "preadv2",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readv",
    "sendfile",
    "sendfile64",
    "splice",
    "sync",
    "sync_file_range",
    "syncfs",
    "tee",
    "truncate",
    "truncate64",
    "vmsplice",
    "write",
    "writev",
    // Files: names, metadata, attributes.
    "access",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "faccessat",
    "faccessat2",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fgetxattr",
    "flistxattr",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "futimesat",
    "getcwd",
    "getdents",
    "getdents64",
    "getxattr",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lsetxattr",
    "lstat",
    "lstat64",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "name_to_handle_at",
    "newfstatat",
    "readlink",
    "readlinkat",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "setxattr",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    // Waiting on descriptors, events.
    "_newselect",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "fanotify_mark",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "ioctl",
    "pipe",
    "pipe2",
    "poll",
    "ppoll",
    "ppoll_time64",
    "pselect6",
    "pselect6_time64",
    "select",
    // Asynchronous I/O (the old AIO interface; io_uring is not allowed).
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    // Sockets (`socket` itself is checked: no AF_VSOCK).
    "accept",
    "accept4",
    "bind",
    "connect",
    "getpeername",
    "getsockname",
    "getsockopt",
    "listen",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "send",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setsockopt",
    "shutdown",
    "socketcall",
    "socketpair",
    // System V and POSIX IPC (in the job's IPC namespace).
    "ipc",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    // Misc.
    "getrandom",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
];

/// Syscalls allowed only when the job holds the capability (Docker's
/// `includes.caps` rules).
pub const BY_CAPABILITY: &[(Capability, &[&str])] = &[
    (
        Capability::SysAdmin,
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    (Capability::DacReadSearch, &["open_by_handle_at"]),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["chroot"]),
    (
        Capability::SysModule,
        &["delete_module", "init_module", "finit_module"],
    ),
    (Capability::SysPacct, &["acct"]),
    (
        Capability::SysPtrace,
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    (Capability::SysRawio, &["iopl", "ioperm"]),
    (
        Capability::SysTime,
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    (Capability::SysTtyConfig, &["vhangup"]),
    (
        Capability::SysNice,
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    (Capability::Syslog, &["syslog"]),
    (Capability::Bpf, &["bpf"]),
    (Capability::Perfmon, &["perf_event_open"]),
];

/// The `personality(2)` values Docker allows: `PER_LINUX`, `PER_LINUX32`,
/// `UNAME26`, `PER_LINUX32|UNAME26`, and the query `0xffffffff`.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// `AF_VSOCK`: talking to the hypervisor is not for jobs.
const AF_VSOCK: u64 = 40;

/// clone(2) flags that create namespaces: NEWNS, NEWCGROUP, NEWUTS, NEWIPC,
/// NEWUSER, NEWPID, NEWNET.
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// How the backend reads the two values of a `SCMP_CMP_MASKED_EQ` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaskedEqOrder {
    /// `(arg & value) == valueTwo`: runc, crun, libseccomp (the OCI reading).
    #[default]
    ValueIsMask,
    /// `(arg & valueTwo) == value`: youki's libcontainer 0.7.
    ValueTwoIsMask,
}

fn bad(e: oci_spec::OciSpecError) -> Error {
    Error::BuildSpec(e)
}

fn rule(names: Vec<String>, action: LinuxSeccompAction) -> Result<LinuxSyscall> {
    LinuxSyscallBuilder::default()
        .names(names)
        .action(action)
        .build()
        .map_err(bad)
}

/// A rule allowing `name` when argument `index` compares with `value`
/// (`(arg & mask) == value` for masked equality, in the backend's `order`).
fn allow_if(
    name: &str,
    index: usize,
    op: LinuxSeccompOperator,
    value: u64,
    mask: Option<(u64, MaskedEqOrder)>,
) -> Result<LinuxSyscall> {
    let mut arg = LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op);
    match mask {
        Some((m, MaskedEqOrder::ValueIsMask)) => arg = arg.value(m).value_two(value),
        Some((m, MaskedEqOrder::ValueTwoIsMask)) => arg = arg.value(value).value_two(m),
        None => {}
    }
    LinuxSyscallBuilder::default()
        .names(vec![name.to_string()])
        .action(LinuxSeccompAction::ScmpActAllow)
        .args(vec![arg.build().map_err(bad)?])
        .build()
        .map_err(bad)
}

/// The syscalls a job holding `caps` may make without argument checks.
pub fn allowed_names(caps: &[Capability]) -> BTreeSet<&'static str> {
    let mut names: BTreeSet<&'static str> = ALLOWED.iter().copied().collect();
    for (cap, list) in BY_CAPABILITY {
        if caps.contains(cap) {
            names.extend(list.iter().copied());
        }
    }
    names
}

/// The default profile for a job holding `caps`, for a backend that reads
/// masked comparisons in `order`.
pub fn default_profile(caps: &[Capability], order: MaskedEqOrder) -> Result<LinuxSeccomp> {
    let names = allowed_names(caps);
    let mut syscalls = vec![rule(
        names.iter().map(|n| n.to_string()).collect(),
        LinuxSeccompAction::ScmpActAllow,
    )?];
    syscalls.push(allow_if(
        "socket",
        0,
        LinuxSeccompOperator::ScmpCmpNe,
        AF_VSOCK,
        None,
    )?);
    for p in PERSONALITIES {
        syscalls.push(allow_if(
            "personality",
            0,
            LinuxSeccompOperator::ScmpCmpEq,
            *p,
            None,
        )?);
    }
    if !names.contains("clone") {
        // Flags are clone's first argument on x86.
        syscalls.push(allow_if(
            "clone",
            0,
            LinuxSeccompOperator::ScmpCmpMaskedEq,
            0,
            Some((CLONE_NAMESPACE_FLAGS, order)),
        )?);
    }
    if !names.contains("clone3") {
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
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(libc::EPERM as u32)
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

    fn unconditional(p: &LinuxSeccomp) -> Vec<String> {
        p.syscalls().as_ref().expect("syscalls")[0].names().clone()
    }

    fn has(p: &LinuxSeccomp, name: &str) -> bool {
        unconditional(p).iter().any(|x| x == name)
    }

    #[test]
    fn test_default_profile_is_an_allowlist() {
        let p = default_profile(crate::oci::DEFAULT_CAPS, MaskedEqOrder::ValueIsMask).expect("ok");
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(libc::EPERM as u32));
        for s in ["read", "write", "execve", "openat", "clone3", "chroot"] {
            if s == "clone3" {
                assert!(!has(&p, s), "{s} allowed unconditionally");
            } else {
                assert!(has(&p, s), "{s} not allowed");
            }
        }
        for s in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "init_module",
            "finit_module",
            "kexec_load",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "perf_event_open",
            "userfaultfd",
            "open_by_handle_at",
            "io_uring_setup",
            "reboot",
            "clock_settime",
            "swapon",
            "clone",
            "socket",
            "personality",
        ] {
            assert!(!has(&p, s), "{s} allowed unconditionally");
        }
    }

    #[test]
    fn test_default_profile_argument_rules() {
        let p = default_profile(&[], MaskedEqOrder::ValueIsMask).expect("ok");
        let rules = p.syscalls().as_ref().expect("syscalls");
        let find = |name: &str| -> Vec<&LinuxSyscall> {
            rules
                .iter()
                .filter(|r| r.names().iter().any(|n| n == name))
                .collect()
        };
        let clone = find("clone");
        assert_eq!(clone.len(), 1);
        let arg = &clone[0].args().as_ref().expect("args")[0];
        assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(
            (arg.value(), arg.value_two()),
            (CLONE_NAMESPACE_FLAGS, Some(0))
        );
        // The same rule as libcontainer reads it.
        let p = default_profile(&[], MaskedEqOrder::ValueTwoIsMask).expect("ok");
        let rules = p.syscalls().as_ref().expect("syscalls");
        let clone = rules
            .iter()
            .find(|r| r.names().iter().any(|n| n == "clone"))
            .expect("clone rule");
        let arg = &clone.args().as_ref().expect("args")[0];
        assert_eq!(
            (arg.value(), arg.value_two()),
            (0, Some(CLONE_NAMESPACE_FLAGS))
        );
        let clone3 = find("clone3");
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3[0].errno_ret(), Some(libc::ENOSYS as u32));
        assert_eq!(find("personality").len(), PERSONALITIES.len());
        let socket = &find("socket")[0].args().as_ref().expect("args")[0];
        assert_eq!(
            (socket.op(), socket.value()),
            (LinuxSeccompOperator::ScmpCmpNe, AF_VSOCK)
        );
    }

    #[test]
    fn test_cap_add_allows_guarded_syscalls() {
        let p = default_profile(&[Capability::SysAdmin], MaskedEqOrder::default()).expect("ok");
        for s in ["mount", "unshare", "setns", "clone", "clone3", "bpf"] {
            assert!(has(&p, s), "{s} not allowed with SYS_ADMIN");
        }
        assert!(!has(&p, "init_module"));
        // No conditional clone rule and no clone3 ENOSYS once both are allowed.
        let rules = p.syscalls().as_ref().expect("syscalls");
        assert!(rules[1..]
            .iter()
            .all(|r| !r.names().iter().any(|n| n == "clone" || n == "clone3")));
        let p = default_profile(
            &[Capability::SysModule, Capability::DacReadSearch],
            MaskedEqOrder::default(),
        )
        .expect("ok");
        assert!(has(&p, "finit_module"));
        assert!(has(&p, "open_by_handle_at"));
        assert!(!has(&p, "mount"));
    }

    #[test]
    fn test_allowlist_has_no_duplicates() {
        let set: BTreeSet<&str> = ALLOWED.iter().copied().collect();
        assert_eq!(set.len(), ALLOWED.len());
    }
}
