//! Namespaces and kernel interfaces, each probed by using it: unshare in a
//! forked child, call the syscall, install a filter.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::Serialize;

use super::child::{errno, errno_text, in_child, rc_errno};
use super::Probe;

/// Namespace kinds and their clone flags, in report order.
pub const NAMESPACES: &[(&str, libc::c_int)] = &[
    ("mount", libc::CLONE_NEWNS),
    ("pid", libc::CLONE_NEWPID),
    ("net", libc::CLONE_NEWNET),
    ("uts", libc::CLONE_NEWUTS),
    ("ipc", libc::CLONE_NEWIPC),
    ("user", libc::CLONE_NEWUSER),
    ("cgroup", libc::CLONE_NEWCGROUP),
];

/// Unshare each namespace kind in a forked child. For pid, a grandchild
/// must then be pid 1 of the new namespace.
pub fn namespaces() -> BTreeMap<String, Probe> {
    let mut out = BTreeMap::new();
    for (name, flag) in NAMESPACES {
        let flag = *flag;
        let pid_ns = flag == libc::CLONE_NEWPID;
        let r = in_child(|o: &mut [i32; 1]| {
            // SAFETY: unshare with a constant flag.
            if unsafe { libc::unshare(flag) } != 0 {
                o[0] = errno().max(1);
                return;
            }
            if pid_ns {
                // SAFETY: fork; the grandchild only calls getpid and _exit.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    // SAFETY: as above.
                    unsafe { libc::_exit(if libc::getpid() == 1 { 0 } else { 1 }) };
                }
                if pid < 0 {
                    o[0] = errno().max(1);
                    return;
                }
                let mut st = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut st, 0) };
                if !(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0) {
                    o[0] = -1;
                }
            }
        });
        let p = match r {
            Ok([0]) => Probe::ok(),
            Ok([-1]) => Probe::failed("the first process in the new pid namespace is not pid 1"),
            Ok([e]) => Probe::failed(format!("unshare: {}", errno_text(e))),
            Err(e) => Probe::failed(e.to_string()),
        };
        out.insert(name.to_string(), p);
    }
    out
}

/// Kernel interfaces skiff (or libcontainer) uses or could use.
#[derive(Debug, Clone, Serialize)]
pub struct Interfaces {
    /// `mount_setattr(MOUNT_ATTR_IDMAP)` on a detached clone of a directory
    /// on the store's filesystem.
    pub idmapped_mounts: Probe,
    /// `clone3` exists.
    pub clone3: Probe,
    /// `clone3(CLONE_INTO_CGROUP)` into the caller's own cgroup2 cgroup.
    pub clone_into_cgroup: Probe,
    /// `pidfd_open` (skiff's supervisor waits on a pidfd).
    pub pidfd_open: Probe,
    /// `openat2(RESOLVE_IN_ROOT)` (skiff reads image files through it).
    pub openat2: Probe,
    /// Installing a seccomp filter (after `PR_SET_NO_NEW_PRIVS`) in a child.
    pub seccomp_filter: Probe,
    /// The caller's own seccomp mode (0 none, 1 strict, 2 filter).
    pub caller_seccomp_mode: i32,
}

/// `struct clone_args` (v2, with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const OPEN_TREE_CLONE: u32 = 1;
const AT_RECURSIVE: u32 = 0x8000;

/// `struct mount_attr`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `struct open_how`.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}
const RESOLVE_IN_ROOT: u64 = 0x10;

fn syscall_probe(rc: i64) -> Probe {
    if rc < 0 {
        Probe::failed(errno_text(errno()))
    } else {
        Probe::ok()
    }
}

/// Probe the interfaces. `store_dir` is an existing directory on the
/// store's filesystem; `own_cgroup2` the caller's cgroup2 directory, if any.
pub fn interfaces(store_dir: &Path, own_cgroup2: Option<&Path>) -> Interfaces {
    Interfaces {
        idmapped_mounts: idmapped(store_dir),
        clone3: clone3(),
        clone_into_cgroup: clone_into_cgroup(own_cgroup2),
        pidfd_open: pidfd(),
        openat2: openat2(),
        seccomp_filter: seccomp_filter(),
        caller_seccomp_mode: caller_seccomp_mode(),
    }
}

fn clone3() -> Probe {
    // A NULL argument of size 0: EINVAL when clone3 exists, ENOSYS when not.
    // SAFETY: the kernel rejects the size before touching the pointer.
    let rc = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) };
    match (rc, errno()) {
        (r, _) if r >= 0 => Probe::ok(),
        (_, libc::EINVAL) => Probe::ok(),
        (_, e) => Probe::failed(errno_text(e)),
    }
}

fn clone_into_cgroup(own: Option<&Path>) -> Probe {
    let Some(dir) = own else {
        return Probe::failed("no cgroup2 hierarchy is mounted");
    };
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return Probe::failed("bad path");
    };
    // SAFETY: a valid path; the descriptor is closed below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Probe::failed(format!("open {}: {}", dir.display(), errno_text(errno())));
    }
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: fd as u64,
        ..Default::default()
    };
    // SAFETY: clone3 without CLONE_VM is a fork; the child exits at once
    // without touching any state.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        // SAFETY: leave the child immediately.
        unsafe { libc::_exit(0) };
    }
    let e = errno();
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
    if pid < 0 {
        return Probe::failed(errno_text(e));
    }
    let mut st = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid as i32, &mut st, 0) };
    Probe::ok()
}

fn pidfd() -> Probe {
    // SAFETY: pidfd_open of our own pid; the descriptor is closed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    let p = syscall_probe(fd);
    if fd >= 0 {
        // SAFETY: our descriptor.
        unsafe { libc::close(fd as i32) };
    }
    p
}

fn openat2() -> Probe {
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT,
    };
    // SAFETY: a valid path and struct; the descriptor is closed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c"/".as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    let p = syscall_probe(fd);
    if fd >= 0 {
        // SAFETY: our descriptor.
        unsafe { libc::close(fd as i32) };
    }
    p
}

fn seccomp_filter() -> Probe {
    let r = in_child(|o: &mut [i32; 2]| {
        // An allow-everything filter.
        let mut insns = [libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        }];
        let prog = libc::sock_fprog {
            len: 1,
            filter: insns.as_mut_ptr(),
        };
        // SAFETY: prctl and seccomp with valid arguments, in the child.
        unsafe {
            o[0] = rc_errno(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0).into());
            o[1] = rc_errno(libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog,
            ));
        }
    });
    match r {
        Ok([0, 0]) => Probe::ok(),
        Ok([e, 0]) => Probe::failed(format!("PR_SET_NO_NEW_PRIVS: {}", errno_text(e))),
        Ok([_, e]) => Probe::failed(format!("seccomp(SET_MODE_FILTER): {}", errno_text(e))),
        Err(e) => Probe::failed(e.to_string()),
    }
}

fn caller_seccomp_mode() -> i32 {
    super::status_field("Seccomp")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A user namespace with a mapping, for idmapped mounts: a child unshares
/// it and waits; we write its maps and open its `ns/user`.
fn userns_fd() -> Result<i32, String> {
    let mut ready = [0; 2];
    let mut hold = [0; 2];
    // SAFETY: valid arrays.
    unsafe {
        if libc::pipe2(ready.as_mut_ptr(), libc::O_CLOEXEC) != 0
            || libc::pipe2(hold.as_mut_ptr(), libc::O_CLOEXEC) != 0
        {
            return Err(errno_text(errno()));
        }
    }
    // SAFETY: the child unshares, signals, blocks on a read and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: only syscalls on our own descriptors.
        unsafe {
            libc::close(ready[0]);
            libc::close(hold[1]);
            let ok: u8 = u8::from(libc::unshare(libc::CLONE_NEWUSER) == 0);
            libc::write(ready[1], (&ok as *const u8).cast(), 1);
            let mut b = 0u8;
            libc::read(hold[0], (&mut b as *mut u8).cast(), 1);
            libc::_exit(0);
        }
    }
    // SAFETY: closing the child's ends in the parent.
    unsafe {
        libc::close(ready[1]);
        libc::close(hold[0]);
    }
    let finish = |pid: i32| {
        // SAFETY: releasing and reaping our child.
        unsafe {
            libc::close(hold[1]);
            libc::close(ready[0]);
            let mut st = 0;
            libc::waitpid(pid, &mut st, 0);
        }
    };
    if pid < 0 {
        let e = errno_text(errno());
        finish(-1);
        return Err(e);
    }
    let mut ok = 0u8;
    // SAFETY: reading one byte from our pipe.
    unsafe { libc::read(ready[0], (&mut ok as *mut u8).cast(), 1) };
    if ok != 1 {
        finish(pid);
        return Err("cannot create a user namespace".into());
    }
    let res = (|| {
        std::fs::write(format!("/proc/{pid}/uid_map"), "0 100000 65536\n")
            .map_err(|e| format!("uid_map: {e}"))?;
        std::fs::write(format!("/proc/{pid}/gid_map"), "0 100000 65536\n")
            .map_err(|e| format!("gid_map: {e}"))?;
        let f = std::fs::File::open(format!("/proc/{pid}/ns/user"))
            .map_err(|e| format!("ns/user: {e}"))?;
        Ok(std::os::fd::IntoRawFd::into_raw_fd(f))
    })();
    finish(pid);
    res
}

fn idmapped(dir: &Path) -> Probe {
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return Probe::failed("bad path");
    };
    let userns = match userns_fd() {
        Ok(fd) => fd,
        Err(e) => return Probe::failed(format!("user namespace: {e}")),
    };
    // SAFETY: open_tree on a valid path; a detached clone, dropped on close.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as u32,
        )
    };
    if tree < 0 {
        let e = errno_text(errno());
        // SAFETY: our descriptor.
        unsafe { libc::close(userns) };
        return Probe::failed(format!("open_tree: {e}"));
    }
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns as u64,
    };
    // SAFETY: a valid descriptor, empty path with AT_EMPTY_PATH, valid struct.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree as i32,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as u32 | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    let e = errno();
    // SAFETY: our descriptors.
    unsafe {
        libc::close(tree as i32);
        libc::close(userns);
    }
    if rc < 0 {
        Probe::failed(format!(
            "mount_setattr(MOUNT_ATTR_IDMAP): {}",
            errno_text(e)
        ))
    } else {
        Probe::ok()
    }
}

/// What the caller may do with rlimits.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    /// CAP_SYS_RESOURCE (bit 24) in the bounding set.
    pub cap_sys_resource_bounding: bool,
    /// CAP_SYS_RESOURCE in the effective set.
    pub cap_sys_resource_effective: bool,
    /// Raising the hard `RLIMIT_NOFILE` by one, tried in a child.
    pub raise_hard_rlimit: Probe,
    /// The caller's `RLIMIT_NOFILE` (soft, hard), which jobs inherit.
    pub nofile: (u64, u64),
    /// The caller's `RLIMIT_NPROC` (soft, hard).
    pub nproc: (u64, u64),
}

/// Capability bit of CAP_SYS_RESOURCE.
pub const CAP_SYS_RESOURCE: u32 = 24;

fn cap_bit(field: &str, bit: u32) -> bool {
    super::status_field(field)
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .is_some_and(|m| m & (1 << bit) != 0)
}

fn rlimit(res: libc::__rlimit_resource_t) -> (u64, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid struct.
    unsafe { libc::getrlimit(res, &mut r) };
    (r.rlim_cur, r.rlim_max)
}

/// Probe rlimit privileges.
pub fn limits() -> Limits {
    let nofile = rlimit(libc::RLIMIT_NOFILE);
    let raise = if nofile.1 == libc::RLIM_INFINITY {
        Probe::ok()
    } else {
        let r = in_child(|o: &mut [i32; 1]| {
            let r = libc::rlimit {
                rlim_cur: nofile.0,
                rlim_max: nofile.1 + 1,
            };
            // SAFETY: a valid struct, in the child.
            o[0] = rc_errno(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) }.into());
        });
        match r {
            Ok([0]) => Probe::ok(),
            Ok([e]) => Probe::failed(format!("setrlimit(NOFILE, hard+1): {}", errno_text(e))),
            Err(e) => Probe::failed(e.to_string()),
        }
    };
    Limits {
        cap_sys_resource_bounding: cap_bit("CapBnd", CAP_SYS_RESOURCE),
        cap_sys_resource_effective: cap_bit("CapEff", CAP_SYS_RESOURCE),
        raise_hard_rlimit: raise,
        nofile,
        nproc: rlimit(libc::RLIMIT_NPROC),
    }
}
