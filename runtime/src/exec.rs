//! The last step inside the container: find the command and `execve` it.
//!
//! skiff gives libcontainer its own [`Executor`] so that a command that is
//! missing exits 127 and one that cannot be run exits 126, as under Docker,
//! and so that the signal state the launcher set up for itself (blocked
//! SIGINT/SIGTERM for its signalfd, ignored SIGPIPE) is reset before the job
//! runs. The same lookup, done from the outside in [`lookup_command`], lets
//! skiff fail fast before launching anything.

use std::ffi::CString;

use libcontainer::workload::{
    Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError,
};
use oci_spec::runtime::Spec;

use crate::safe_root::SafeRoot;
use crate::seccomp::SeccompPlan;

/// Exit status when the command is not found.
pub const EXIT_NOT_FOUND: i32 = crate::exit_code::NOT_FOUND;
/// Exit status when the command cannot be invoked.
pub const EXIT_CANNOT_INVOKE: i32 = crate::exit_code::CANNOT_INVOKE;

/// Why a command cannot be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// No such file, or not in `$PATH`.
    NotFound(String),
    /// Found, but not an executable regular file.
    NotExecutable(String),
}

impl LookupError {
    /// Docker's exit status for it.
    pub fn exit_code(&self) -> i32 {
        match self {
            LookupError::NotFound(_) => EXIT_NOT_FOUND,
            LookupError::NotExecutable(_) => EXIT_CANNOT_INVOKE,
        }
    }
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::NotFound(c) if c.contains('/') => {
                write!(f, "exec: {c:?}: no such file or directory")
            }
            LookupError::NotFound(c) => {
                write!(f, "exec: {c:?}: executable file not found in $PATH")
            }
            LookupError::NotExecutable(c) => write!(f, "exec: {c:?}: permission denied"),
        }
    }
}

/// Look the command up inside the root filesystem, as `execvp` will.
/// `cwd` resolves relative commands containing a slash.
pub fn lookup_command(
    root: &SafeRoot,
    cmd: &str,
    env: &[String],
    cwd: &str,
) -> Result<String, LookupError> {
    let check = |p: &str| -> Option<bool> {
        let fd = root.open_in(p, libc::O_PATH).ok()?;
        let meta = std::fs::File::from(fd).metadata().ok()?;
        use std::os::unix::fs::PermissionsExt;
        Some(meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    };
    if cmd.contains('/') {
        let full = if cmd.starts_with('/') {
            cmd.to_string()
        } else {
            format!("{}/{}", cwd.trim_end_matches('/'), cmd)
        };
        return match check(&full) {
            Some(true) => Ok(full),
            Some(false) => Err(LookupError::NotExecutable(cmd.to_string())),
            None => Err(LookupError::NotFound(cmd.to_string())),
        };
    }
    let mut found_non_exec = false;
    for full in crate::path_lookup::candidates(env, cmd) {
        match check(&full) {
            Some(true) => return Ok(full),
            Some(false) => found_non_exec = true,
            None => {}
        }
    }
    if found_non_exec {
        Err(LookupError::NotExecutable(cmd.to_string()))
    } else {
        Err(LookupError::NotFound(cmd.to_string()))
    }
}

/// skiff's libcontainer executor: installs the job's precompiled seccomp
/// filter, if any, then execs the command.
#[derive(Debug, Clone, Default)]
pub struct SkiffExecutor {
    /// The filter to install just before `execve`.
    pub seccomp: Option<crate::seccomp::Bpf>,
}

impl SkiffExecutor {
    /// The executor of a job with this seccomp plan: it installs the
    /// plan's filter when the plan is [`SeccompPlan::Executor`].
    pub fn new(seccomp: &SeccompPlan) -> SkiffExecutor {
        SkiffExecutor {
            seccomp: seccomp.executor_filter().cloned(),
        }
    }
}

pub(crate) fn die(msg: &str, code: i32) -> ! {
    let line = format!("skiff: {msg}\n");
    // SAFETY: writing a valid buffer to fd 2, then exiting without running
    // destructors (we are in a forked child).
    unsafe {
        libc::write(2, line.as_ptr().cast(), line.len());
        libc::_exit(code)
    }
}

pub(crate) fn reset_signals() {
    // SAFETY: plain libc calls on a local, initialised signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        for sig in [
            libc::SIGPIPE,
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
        ] {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
}

/// The job's last steps in its init, shared by the cold executor and a warm
/// sandbox's: close what the launcher left open, die with the launcher,
/// enter the working directory inside the root, install `seccomp` (when
/// not installed already), and `execve` the command, trying `$PATH` as
/// `execvp` does. Never returns: 126/127 as Docker when nothing runs.
pub(crate) fn exec_job(
    args: &[String],
    env: &[String],
    cwd: &str,
    seccomp: Option<&crate::seccomp::Bpf>,
) -> ! {
    let Some(cmd) = args.first() else {
        die("no command", EXIT_CANNOT_INVOKE)
    };
    let to_c = |s: &str| match CString::new(s) {
        Ok(c) => c,
        Err(_) => die(&format!("{s:?} holds a NUL byte"), EXIT_CANNOT_INVOKE),
    };
    let argv: Vec<CString> = args.iter().map(|a| to_c(a)).collect();
    let envp: Vec<CString> = env.iter().map(|e| to_c(e)).collect();
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    reset_signals();
    // Nothing of the launcher's stays open past this point; the job
    // dies with its launcher; the cwd is resolved inside the root.
    if let Err(e) = crate::confine::close_inherited_fds() {
        die(
            &format!("close inherited descriptors: {e}"),
            EXIT_CANNOT_INVOKE,
        );
    }
    if let Err(e) = crate::confine::die_with_launcher() {
        die(&e.to_string(), EXIT_CANNOT_INVOKE);
    }
    match crate::confine::enter_workdir(cwd) {
        Ok(()) => {}
        // Not searchable by the job's user: libcontainer entered it as
        // root (as runc does); keep that only if it is inside the root.
        Err(crate::confine::WorkdirError::Resolve(e))
            if e.raw_os_error() == Some(libc::EACCES)
                && crate::confine::cwd_is_inside_root().unwrap_or(false) => {}
        Err(e) => die(
            &format!("working directory {cwd:?}: {e}"),
            EXIT_CANNOT_INVOKE,
        ),
    }
    let candidates: Vec<String> = if cmd.contains('/') {
        vec![cmd.clone()]
    } else {
        crate::path_lookup::candidates(env, cmd).collect()
    };
    let c_candidates: Vec<CString> = candidates.iter().map(|c| to_c(c)).collect();
    if let Some(bpf) = seccomp {
        // The last step before execve, as runtimes do; no_new_privs is set.
        if let Err(e) = crate::seccomp::install(bpf.bytes()) {
            die(&format!("install seccomp filter: {e}"), EXIT_CANNOT_INVOKE);
        }
    }
    let mut denied = None;
    for c in &c_candidates {
        // SAFETY: argv and envp are NULL-terminated arrays of valid C
        // strings that outlive the call.
        unsafe { libc::execve(c.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => continue,
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EISDIR) => {
                denied = Some(err);
                continue;
            }
            _ => die(&format!("exec: {cmd:?}: {err}"), EXIT_CANNOT_INVOKE),
        }
    }
    match denied {
        Some(_) => die(
            &LookupError::NotExecutable(cmd.clone()).to_string(),
            EXIT_CANNOT_INVOKE,
        ),
        None => die(
            &LookupError::NotFound(cmd.clone()).to_string(),
            EXIT_NOT_FOUND,
        ),
    }
}

impl Executor for SkiffExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let process = spec.process().as_ref().ok_or(ExecutorError::InvalidArg)?;
        let args = process.args().as_ref().ok_or(ExecutorError::InvalidArg)?;
        let env: Vec<String> = process.env().clone().unwrap_or_default();
        let cwd = process.cwd().to_string_lossy().into_owned();
        exec_job(args, &env, &cwd, self.seccomp.as_ref())
    }

    fn validate(&self, _spec: &Spec) -> Result<(), ExecutorValidationError> {
        Ok(())
    }

    fn setup_envs(
        &self,
        _envs: std::collections::HashMap<String, String>,
    ) -> Result<(), ExecutorSetEnvsError> {
        // The environment is passed to execve explicitly.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_lookup_command_path_and_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("bin")).expect("mkdir");
        std::fs::write(dir.path().join("bin/tool"), "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(
            dir.path().join("bin/tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        std::fs::write(dir.path().join("bin/data"), "x").expect("write");
        let root = SafeRoot::open(dir.path()).expect("root");
        let env = vec!["PATH=/usr/bin:/bin".to_string()];
        assert_eq!(
            lookup_command(&root, "tool", &env, "/"),
            Ok("/bin/tool".to_string())
        );
        assert_eq!(
            lookup_command(&root, "/bin/tool", &env, "/"),
            Ok("/bin/tool".to_string())
        );
        assert_eq!(
            lookup_command(&root, "nope", &env, "/").map_err(|e| e.exit_code()),
            Err(127)
        );
        assert_eq!(
            lookup_command(&root, "data", &env, "/").map_err(|e| e.exit_code()),
            Err(126)
        );
        assert_eq!(
            lookup_command(&root, "/bin", &env, "/").map_err(|e| e.exit_code()),
            Err(126)
        );
        assert_eq!(
            lookup_command(&root, "./tool", &env, "/bin"),
            Ok("/bin/./tool".to_string())
        );
    }
}
