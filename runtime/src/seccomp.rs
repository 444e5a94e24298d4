//! The default seccomp profile: an allowlist equivalent to Docker's default
//! profile (moby `profiles/seccomp/default.json`, as of Docker 25+).
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
//! ## Where the filter is built
//!
//! libseccomp takes about 10 ms of CPU to turn this profile into BPF, and
//! libcontainer would do it in every job's init. skiff instead [`compile`]s
//! it once, caches the BPF per profile in `ROOT/cache/seccomp/` ([`Cache`]),
//! and skiff's executor [`install`]s it in the init just before `execve`
//! (where libcontainer would have loaded it; `no_new_privs` is already set).
//! The filter is built with libseccomp's binary-tree optimisation, so a
//! syscall costs a few comparisons, not a walk down 400 names.
//!
//! Runtime binaries (`--runtime`) get the profile in `config.json` and build
//! it themselves. They read the two values of `SCMP_CMP_MASKED_EQ`
//! differently: runc and crun as `(arg & value) == valueTwo` (libseccomp's
//! order), youki (libcontainer 0.7) as `(arg & valueTwo) == value`, which
//! written the OCI way would let `clone(CLONE_NEWUSER)` through; so the
//! profile is written for the backend that reads it ([`MaskedEqOrder`]).

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext};
use sha2::{Digest, Sha256};

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

/// Where a job's default filter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Into `linux.seccomp` of `config.json`, for a runtime that compiles it
    /// and reads masked comparisons in this order.
    Spec(MaskedEqOrder),
    /// Nowhere in the spec: skiff compiles it ([`Cache`]) and its executor
    /// installs it ([`install`]).
    Executor,
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

/// A compiled filter: classic BPF instructions (8 bytes each), as
/// `seccomp(SECCOMP_SET_MODE_FILTER)` takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bpf(Arc<[u8]>);

/// The kernel's limit on a filter's length (`BPF_MAXINSNS`).
const BPF_MAX_INSNS: usize = 4096;

impl Bpf {
    /// Wrap raw instructions, checking their shape.
    pub fn from_bytes(b: &[u8]) -> Option<Bpf> {
        let ok = !b.is_empty() && b.len() & 7 == 0 && b.len() / 8 <= BPF_MAX_INSNS;
        ok.then(|| Bpf(Arc::from(b)))
    }

    /// The instructions.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Number of instructions.
    pub fn len(&self) -> usize {
        self.0.len() / 8
    }

    /// Whether it has no instructions (never true for a compiled filter).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn scmp_action(a: LinuxSeccompAction, errno: Option<u32>) -> ScmpAction {
    let errno = errno.map(|e| e as i32).unwrap_or(libc::EPERM);
    match a {
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        // Not used by skiff's profiles; refuse rather than guess.
        LinuxSeccompAction::ScmpActTrace | LinuxSeccompAction::ScmpActNotify => {
            ScmpAction::KillProcess
        }
    }
}

fn scmp_arch(a: Arch) -> Option<ScmpArch> {
    Some(match a {
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchNative => ScmpArch::Native,
        _ => return None,
    })
}

fn scmp_op(op: LinuxSeccompOperator, value_two: Option<u64>) -> ScmpCompareOp {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // OCI order: value is the mask (filled in by the caller), valueTwo the datum.
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(value_two.unwrap_or(0)),
    }
}

/// Compile a profile written in the OCI order ([`MaskedEqOrder::ValueIsMask`])
/// to BPF with libseccomp, as runc would. Names this libseccomp does not
/// know are skipped (so those syscalls get the default action).
pub fn compile(profile: &LinuxSeccomp) -> Result<Bpf> {
    let err = Error::SeccompCompile;
    let mut ctx = ScmpFilterContext::new(scmp_action(
        profile.default_action(),
        profile.default_errno_ret(),
    ))
    .map_err(err)?;
    // Only export: no_new_privs is the runtime's business.
    ctx.set_ctl_nnp(false).map_err(err)?;
    // A binary tree over syscall numbers (libseccomp 2.5+); older ones keep
    // the linear filter.
    let _ = ctx.set_ctl_optimize(2);
    for a in profile.architectures().iter().flatten() {
        if let Some(arch) = scmp_arch(*a) {
            if !ctx.is_arch_present(arch).map_err(err)? {
                ctx.add_arch(arch).map_err(err)?;
            }
        }
    }
    for rule in profile.syscalls().iter().flatten() {
        let action = scmp_action(rule.action(), rule.errno_ret());
        for name in rule.names() {
            let Ok(sc) = libseccomp::ScmpSyscall::from_name(name) else {
                continue;
            };
            match rule.args() {
                Some(args) if !args.is_empty() => {
                    let cmps: Vec<ScmpArgCompare> = args
                        .iter()
                        .map(|a| {
                            let (datum, two) = match a.op() {
                                // (arg & value) == valueTwo: the datum is valueTwo.
                                LinuxSeccompOperator::ScmpCmpMaskedEq => {
                                    (a.value_two().unwrap_or(0), Some(a.value()))
                                }
                                _ => (a.value(), a.value_two()),
                            };
                            ScmpArgCompare::new(a.index() as u32, scmp_op(a.op(), two), datum)
                        })
                        .collect();
                    ctx.add_rule_conditional(action, sc, &cmps).map_err(err)?;
                }
                _ => {
                    ctx.add_rule(action, sc).map_err(err)?;
                }
            }
        }
    }
    let mut out = crate::capture::capture_file("skiff-seccomp-bpf")?;
    ctx.export_bpf(&out).map_err(err)?;
    let mut buf = Vec::new();
    out.rewind()
        .and_then(|()| out.read_to_end(&mut buf))
        .map_err(|e| Error::io("read", "exported seccomp filter", e))?;
    Bpf::from_bytes(&buf).ok_or_else(|| {
        Error::io(
            "export",
            "seccomp filter",
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} bytes is not a filter", buf.len()),
            ),
        )
    })
}

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

/// Bumped when the compiler above changes what it emits.
const CACHE_FORMAT: &str = "skiff-seccomp-bpf-1";

/// Compiled filters, in memory and on disk (`DIR/<sha256>.bpf`), keyed by
/// the profile, the libseccomp version and [`CACHE_FORMAT`]. Files are
/// written atomically; one that does not look like a filter is rebuilt.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    by_caps: HashMap<Vec<Capability>, Bpf>,
}

impl Cache {
    /// A cache in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Cache {
        Cache {
            dir: dir.into(),
            by_caps: HashMap::new(),
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The compiled default profile for a job holding `caps`.
    pub fn default_filter(&mut self, caps: &[Capability]) -> Result<Bpf> {
        let mut key_caps = caps.to_vec();
        key_caps.sort_by_key(|c| c.to_string());
        key_caps.dedup();
        if let Some(b) = self.by_caps.get(&key_caps) {
            return Ok(b.clone());
        }
        let profile = default_profile(&key_caps, MaskedEqOrder::ValueIsMask)?;
        let bpf = self.filter(&profile)?;
        self.by_caps.insert(key_caps, bpf.clone());
        Ok(bpf)
    }

    /// The compiled form of any profile (OCI order).
    pub fn filter(&self, profile: &LinuxSeccomp) -> Result<Bpf> {
        let json = serde_json::to_vec(profile).map_err(Error::EncodeSeccompProfile)?;
        let version = libseccomp::ScmpVersion::current()
            .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
            .unwrap_or_default();
        let mut h = Sha256::new();
        h.update(CACHE_FORMAT.as_bytes());
        h.update([0]);
        h.update(version.as_bytes());
        h.update([0]);
        h.update(&json);
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let path = self.dir.join(format!("{hex}.bpf"));
        if let Some(b) = std::fs::read(&path).ok().and_then(|d| Bpf::from_bytes(&d)) {
            return Ok(b);
        }
        let bpf = compile(profile)?;
        // A failed write only costs the next launcher a compile.
        let tmp = self.dir.join(format!(".{hex}.{}.tmp", std::process::id()));
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&tmp, bpf.bytes()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(path = %path.display(), error = %e, "cannot cache the seccomp filter");
        }
        Ok(bpf)
    }
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
    fn test_compile_default_profile_to_bpf() {
        let p = default_profile(crate::oci::DEFAULT_CAPS, MaskedEqOrder::ValueIsMask).expect("ok");
        let bpf = compile(&p).expect("compile");
        assert!(
            bpf.len() > 100 && bpf.len() <= BPF_MAX_INSNS,
            "{}",
            bpf.len()
        );
        // Deterministic: the cache key stands for the bytes.
        assert_eq!(compile(&p).expect("again"), bpf);
    }

    #[test]
    fn test_cache_writes_then_reads_the_same_filter() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut cache = Cache::new(dir.path().join("seccomp"));
        let a = cache.default_filter(crate::oci::DEFAULT_CAPS).expect("a");
        let files: Vec<_> = std::fs::read_dir(dir.path().join("seccomp"))
            .expect("dir")
            .flatten()
            .collect();
        assert_eq!(files.len(), 1);
        let mut fresh = Cache::new(dir.path().join("seccomp"));
        assert_eq!(
            fresh.default_filter(crate::oci::DEFAULT_CAPS).expect("b"),
            a
        );
        // A different capability set is a different filter.
        let c = fresh.default_filter(&[Capability::SysAdmin]).expect("c");
        assert_ne!(c, a);
        // A corrupt file is rebuilt.
        std::fs::write(files[0].path(), b"junk").expect("write");
        let mut again = Cache::new(dir.path().join("seccomp"));
        assert_eq!(
            again.default_filter(crate::oci::DEFAULT_CAPS).expect("d"),
            a
        );
    }

    #[test]
    fn test_allowlist_has_no_duplicates() {
        let set: BTreeSet<&str> = ALLOWED.iter().copied().collect();
        assert_eq!(set.len(), ALLOWED.len());
    }
}
