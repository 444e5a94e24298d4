//! [`Runner`]: one job from image reference to result, phase by phase.

use std::fs;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use imagestore::Store;

use crate::backend::{self, Backend, JobStdio, Started};
use crate::cgroups::{self, CgroupDriver, CgroupStats, CgroupVersion};
use crate::error::{Error, IoContext, Result};
use crate::exec::{lookup_command, SkiffExecutor};
use crate::image_process::{merge_env, process_args};
use crate::job::{JobSpec, NetworkMode, ScratchMode, SeccompMode};
use crate::mounts;
use crate::oci::{self, ProcessPlan, SpecPaths};
use crate::safe_root::SafeRoot;
use crate::seccomp;
use crate::state::{process_start_time, random_id, JobDir, JobRecord};
use crate::supervise::{self, JobControl, OutputSink, SignalGuard};
use crate::user::resolve_user;

/// Milliseconds spent in each launch phase.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Phases {
    /// Image lookup in the store, config read, lease.
    pub lookup_ms: f64,
    /// State directory, scratch tmpfs and overlay mount.
    pub rootfs_ms: f64,
    /// Users, workdir, /etc files, OCI spec and config.json.
    pub spec_ms: f64,
    /// Container create (includes the cgroup attach, recording the init pid
    /// and bringing `lo` up).
    pub create_ms: f64,
    /// Container start.
    pub start_ms: f64,
    /// From start to exit and drained output.
    pub wait_ms: f64,
    /// Accounting, cgroup removal, unmounts, state removal.
    pub cleanup_ms: f64,
}

/// The result of a job, as `--json` prints it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct JobResult {
    /// Job name.
    pub name: String,
    /// Docker-style exit status: the job's, 128+N for signal N, 137 when OOM-killed.
    pub exit_code: i32,
    /// The signal that killed the job, if any.
    pub signal: Option<i32>,
    /// Whether the kernel OOM-killed a process of the job.
    pub oom_killed: bool,
    /// Whether `--timeout` fired.
    pub timed_out: bool,
    /// Whole run, in milliseconds.
    pub wall_ms: f64,
    /// From the start of the run until the job was started.
    pub launch_ms: f64,
    /// CPU time of the job's cgroup, in microseconds.
    pub cpu_usec: Option<u64>,
    /// Peak memory of the job's cgroup, in bytes.
    pub peak_memory_bytes: Option<u64>,
    /// Bytes of captured output dropped by the cap (stdout, stderr).
    pub output_dropped_bytes: [u64; 2],
    /// Output streams that could not be written (e.g. a full disk), with
    /// the error and the bytes lost; `skiff run` then exits 125.
    pub output_errors: Vec<supervise::OutputError>,
    /// Backend name.
    pub runtime: String,
    /// Per-phase timings.
    pub phases: Phases,
}

/// Where a job's stdio goes.
#[derive(Debug)]
pub enum JobIo {
    /// Stream to the caller's fds 1 and 2; with `stdin`, copy fd 0 in.
    Inherit,
    /// Capture to files, each capped at `cap` bytes; stdin is /dev/null.
    Capture {
        /// stdout file.
        stdout: fs::File,
        /// stderr file.
        stderr: fs::File,
        /// Byte cap per stream.
        cap: u64,
    },
}

/// Launches jobs from one store. Create it once per process: it detects the
/// cgroup layout and moves the process into a private mount namespace.
#[derive(Debug)]
pub struct Runner {
    store: Store,
    cgroups: Box<dyn CgroupDriver>,
    run_root: PathBuf,
    bounding: Vec<oci_spec::runtime::Capability>,
    seccomp: seccomp::Cache,
    /// A shared lock on [`launchers_lock_path`] while this launcher lives.
    _launcher: imagestore::process_lock::ProcessLock,
}

/// The file every launcher of a store holds a shared lock on: `skiff gc`
/// prunes the store's group cgroups only when it can lock it exclusively
/// (no launcher could be creating a job's cgroup under them).
pub fn launchers_lock_path(store_root: &Path) -> PathBuf {
    store_root.join("launchers.lock")
}

fn open_launchers_lock(store_root: &Path) -> Result<fs::File> {
    let p = launchers_lock_path(store_root);
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&p)
        .ctx("open", p)
}

/// Prune the store's empty group cgroups when no launcher is alive;
/// returns how many were removed.
pub fn prune_group_cgroups(store_root: &Path, cgroups: &dyn CgroupDriver) -> Result<usize> {
    let file = open_launchers_lock(store_root)?;
    let p = launchers_lock_path(store_root);
    match imagestore::process_lock::ProcessLock::try_acquire(file).ctx("lock", &p)? {
        Some(_alone) => Ok(cgroups.prune_groups()),
        None => Ok(0),
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::io("create", "pipe", std::io::Error::last_os_error()));
    }
    // SAFETY: two fresh descriptors nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

struct InitControl {
    pid: i32,
}

impl JobControl for InitControl {
    fn forward(&mut self, sig: libc::c_int) {
        // SAFETY: kill(2) with a pid we created.
        unsafe { libc::kill(self.pid, sig) };
    }
    fn terminate(&mut self) {
        self.forward(libc::SIGTERM);
    }
    fn kill(&mut self) {
        // The init is the pid namespace's reaper: killing it kills them all.
        self.forward(libc::SIGKILL);
    }
}

fn hosts_file(hostname: &str, network: NetworkMode) -> String {
    if network == NetworkMode::Host {
        if let Ok(h) = fs::read_to_string("/etc/hosts") {
            return h;
        }
    }
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
    )
}

/// Docker's rules for a job's process, applied to its image's config: the
/// user (resolved in the image's own `/etc/passwd` and `/etc/group`, read
/// through `root`), hostname (default: the first 12 characters of
/// `job.name`), environment, argv, working directory (created in the rootfs
/// when missing) and capabilities (never beyond `bounding`). Every backend's
/// `config.json` is built from this plan by [`oci::build_spec`].
pub fn plan_process(
    job: &JobSpec,
    config: &oci_spec::image::ImageConfiguration,
    root: &SafeRoot,
    bounding: &[oci_spec::runtime::Capability],
) -> Result<ProcessPlan> {
    let cfg = config.config().clone().unwrap_or_default();
    let read = |p: &str| -> Result<Option<String>> {
        Ok(root
            .read_small(p, 1 << 20)
            .ctx("read image file", p)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    };
    let user_spec = job
        .user
        .clone()
        .or_else(|| cfg.user().clone())
        .unwrap_or_default();
    let user = resolve_user(
        &user_spec,
        read("/etc/passwd")?.as_deref(),
        read("/etc/group")?.as_deref(),
    )?;
    let hostname = job
        .hostname
        .clone()
        .unwrap_or_else(|| job.name.chars().take(12).collect());
    let env = merge_env(
        cfg.env().as_deref().unwrap_or(&[]),
        &job.env,
        &hostname,
        &user.home,
    );
    let args = process_args(
        cfg.entrypoint().as_deref(),
        cfg.cmd().as_deref(),
        job.entrypoint.as_deref(),
        &job.command,
    )?;
    let cwd = job
        .workdir
        .clone()
        .or_else(|| cfg.working_dir().clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_string());
    if !cwd.starts_with('/') {
        return Err(Error::InvalidOption {
            what: "working directory",
            value: cwd,
            detail: "must be an absolute path".into(),
        });
    }
    root.mkdir_all(&cwd).ctx("create working directory", &cwd)?;
    let resolved = root.resolve(&cwd).ctx("resolve working directory", &cwd)?;
    if is_proc_magic_link(&resolved) {
        // Such a path leads wherever a descriptor of the init points: the
        // class of CVE-2024-21626. Docker refuses it too.
        return Err(Error::InvalidOption {
            what: "working directory",
            value: cwd,
            detail: format!("{resolved} is a magic link of /proc, not a directory of the image"),
        });
    }
    let caps = oci::capabilities(&job.cap_add, &job.cap_drop, bounding)?;
    Ok(ProcessPlan {
        args,
        env,
        cwd,
        user,
        hostname,
        caps,
    })
}

/// Whether `path` (absolute, symlinks resolved) names or passes through a
/// per-process magic link of `/proc`: `/proc/{self,thread-self,PID}/`
/// followed by `fd`, `cwd`, `root`, `exe`, `map_files` or `task`.
pub fn is_proc_magic_link(path: &str) -> bool {
    let comps: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    match comps.as_slice() {
        ["proc", who, what, ..] => {
            (*who == "self" || *who == "thread-self" || who.bytes().all(|b| b.is_ascii_digit()))
                && matches!(*what, "fd" | "cwd" | "root" | "exe" | "map_files" | "task")
        }
        _ => false,
    }
}

/// Write a job's `hostname`, `hosts` and `resolv.conf` (the host's) into
/// `etc`, from where [`oci::build_spec`] bind-mounts them over the image's.
pub fn write_etc_files(etc: &Path, hostname: &str, network: NetworkMode) -> Result<()> {
    fs::write(etc.join("hostname"), format!("{hostname}\n")).ctx("write", etc.join("hostname"))?;
    fs::write(etc.join("hosts"), hosts_file(hostname, network)).ctx("write", etc.join("hosts"))?;
    let resolv = fs::read("/etc/resolv.conf").unwrap_or_default();
    fs::write(etc.join("resolv.conf"), resolv).ctx("write", etc.join("resolv.conf"))
}

impl Runner {
    /// Prepare to run jobs from `store`: detect cgroups, collect orphans of
    /// dead launchers, enter a private mount namespace.
    pub fn new(store: Store) -> Result<Runner> {
        if !crate::readonly_exe::exe_is_read_only() {
            // A job could otherwise overwrite this binary (CVE-2019-5736).
            return Err(Error::ReadOnlyExe {
                detail: "call readonly_exe::reexec_read_only() before Runner::new".into(),
            });
        }
        let launcher_file = open_launchers_lock(store.root())?;
        let lp = launchers_lock_path(store.root());
        let launcher = imagestore::process_lock::ProcessLock::acquire_shared(launcher_file)
            .ctx("lock", &lp)?;
        let cgroups = cgroups::detect(&cgroups::group_key(store.root()))?;
        let run_root = store.root().join("run");
        fs::create_dir_all(&run_root).ctx("create", &run_root)?;
        let report = crate::gc::collect(&run_root, cgroups.as_ref())?;
        if !report.jobs.is_empty() || !report.stray_cgroups.is_empty() {
            // Never a warning: a launcher's stderr may be a job's stderr.
            tracing::info!(jobs = ?report.jobs, cgroups = ?report.stray_cgroups, "cleaned up after killed jobs");
        }
        if !crate::readonly_exe::in_private_namespace() {
            mounts::enter_private_mount_namespace()?;
        }
        let seccomp = seccomp::Cache::new(store.root().join("cache").join("seccomp"));
        Ok(Runner {
            store,
            cgroups,
            run_root,
            bounding: oci::caller_bounding_set(),
            seccomp,
            _launcher: launcher,
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The cgroup driver.
    pub fn cgroups(&self) -> &dyn CgroupDriver {
        self.cgroups.as_ref()
    }

    /// `ROOT/run`.
    pub fn run_root(&self) -> &Path {
        &self.run_root
    }

    /// Run one job to completion.
    pub fn run(
        &mut self,
        image: &str,
        mut job: JobSpec,
        backend: &Backend,
        io: JobIo,
    ) -> Result<JobResult> {
        let t0 = Instant::now();
        if *backend == Backend::Libcontainer && thread_count() != Some(1) {
            // libcontainer deadlocks or races when other threads exist.
            return Err(Error::InvalidOption {
                what: "launcher process",
                value: format!("{:?} threads", thread_count()),
                detail: "libcontainer must be called from a single-threaded process".into(),
            });
        }
        if job.name.is_empty() {
            job.name = random_id();
        }
        let span = tracing::info_span!("job", id = %job.name);
        let _enter = span.enter();
        let mut phases = Phases::default();

        let t = Instant::now();
        let rec = self.store.resolve(image)?;
        let config = self.store.image_config(&rec)?;
        let desc = self.store.mount_description(&rec)?;
        // The name is claimed first: a second job of the same name is
        // refused here, before it could touch the first one's lease.
        let dir = JobDir::create(&self.run_root, &job.name)?;
        let lease = match self.store.lease(&job.name, &rec) {
            Ok(l) => l,
            Err(e) => {
                let _ = dir.remove();
                return Err(e.into());
            }
        };
        phases.lookup_ms = ms(t);

        let t = Instant::now();
        let scratch = dir.scratch();
        let mut mounted: Vec<PathBuf> = Vec::new();
        let result = self.run_in(
            &dir,
            &scratch,
            &mut mounted,
            &job,
            &config,
            &desc,
            backend,
            io,
            &mut phases,
            t,
            t0,
        );

        let t = Instant::now();
        let stats = self.cgroups.stats(&job.name).unwrap_or_default();
        let mut cleanup_err = None;
        if let Backend::Binary(runtime) = backend {
            // The runtime removes its state and the cgroups it made (including
            // hierarchies skiff does not use, e.g. name=systemd); a job that
            // never got created has nothing to delete.
            if scratch.join("state").join("init.pid").exists() {
                cleanup_err =
                    backend::delete_binary(runtime, &job.name, &scratch.join("state")).err();
            }
            backend::reap_orphans();
        }
        if let Err(e) = self.cgroups.remove(&job.name) {
            cleanup_err.get_or_insert(e);
        }
        // A lazy unmount takes the submounts along: unmounting the outermost
        // (the scratch tmpfs, or the rootfs on disk) is enough.
        if let Some(m) = mounted.first() {
            if let Err(e) = mounts::unmount(m) {
                cleanup_err.get_or_insert(e);
            }
        }
        if let Err(e) = dir.remove() {
            cleanup_err.get_or_insert(e);
        }
        drop(lease);
        phases.cleanup_ms = ms(t);

        let mut res = result?;
        if let Some(e) = cleanup_err {
            tracing::warn!(error = %e, "cleanup after the job was incomplete; `skiff gc` will retry");
        }
        apply_stats(&mut res, &stats);
        res.phases = phases;
        res.wall_ms = ms(t0);
        res.runtime = backend.name();
        res.name = job.name;
        Ok(res)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_in(
        &mut self,
        dir: &JobDir,
        scratch: &Path,
        mounted: &mut Vec<PathBuf>,
        job: &JobSpec,
        config: &oci_spec::image::ImageConfiguration,
        desc: &imagestore::MountDescription,
        backend: &Backend,
        io: JobIo,
        phases: &mut Phases,
        t_rootfs: Instant,
        t0: Instant,
    ) -> Result<JobResult> {
        fs::create_dir(scratch).ctx("create", scratch)?;
        if job.scratch == ScratchMode::Tmpfs {
            mounts::mount_scratch_tmpfs(scratch, job.scratch_bytes())?;
            mounted.push(scratch.to_path_buf());
        }
        let sub = |n: &str| scratch.join(n);
        for d in ["upper", "work", "rootfs", "etc", "bundle", "state"] {
            fs::create_dir(sub(d)).ctx("create", sub(d))?;
        }
        let rootfs = sub("rootfs");
        mounts::init_layer(&sub("upper"))?;
        mounts::mount_rootfs(desc, &sub("upper"), &sub("work"), &rootfs)?;
        mounted.push(rootfs.clone());
        phases.rootfs_ms = ms(t_rootfs);

        // Docker semantics, read from the image through a safe root.
        let t = Instant::now();
        let root = SafeRoot::open(&rootfs).ctx("open", &rootfs)?;
        let plan = plan_process(job, config, &root, &self.bounding)?;
        let in_volume = job
            .volumes
            .iter()
            .any(|v| plan.args[0].starts_with(&format!("{}/", v.target.trim_end_matches('/'))));
        if !in_volume {
            if let Err(e) = lookup_command(&root, &plan.args[0], &plan.env, &plan.cwd) {
                eprintln!("skiff: {e}");
                return Ok(JobResult {
                    exit_code: e.exit_code(),
                    launch_ms: ms(t0),
                    ..Default::default()
                });
            }
        }
        let etc = sub("etc");
        write_etc_files(&etc, &plan.hostname, job.network)?;
        let executor = SkiffExecutor {
            seccomp: match (job.seccomp, backend.seccomp_placement()) {
                (SeccompMode::Default, seccomp::Placement::Executor) => {
                    Some(self.seccomp.default_filter(&plan.caps)?)
                }
                _ => None,
            },
        };
        let cgroup_path = self.cgroups.job_path(&job.name);
        let spec = oci::build_spec(
            job,
            &plan,
            &SpecPaths {
                rootfs: &rootfs,
                etc_dir: &etc,
                cgroups_path: &cgroup_path,
                seccomp: backend.seccomp_placement(),
            },
            Some(cgroups::resources(&job.limits)?),
        )?;
        let bundle = sub("bundle");
        spec.save(bundle.join("config.json"))
            .map_err(|e| Error::BuildSpec(e.to_string()))?;
        let mut record = JobRecord {
            name: job.name.clone(),
            launcher_pid: std::process::id() as i32,
            init_pid: None,
            init_start_time: None,
            cgroup_path,
        };
        dir.write_record(&record)?;
        phases.spec_ms = ms(t);

        // Launch.
        let signals = SignalGuard::install()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let inherit = matches!(io, JobIo::Inherit);
        let (stdin_job, stdin_feed) = if job.stdin && inherit {
            let (r, w) = pipe()?;
            (r, Some((0 as RawFd, w)))
        } else {
            let null = fs::File::open("/dev/null").ctx("open", "/dev/null")?;
            (OwnedFd::from(null), None)
        };
        let stdio = JobStdio {
            stdin: stdin_job,
            stdout: out_w,
            stderr: err_w,
        };
        let started: Started = match backend {
            Backend::Libcontainer => {
                let network = job.network;
                backend::launch_libcontainer(
                    &job.name,
                    &bundle,
                    &sub("state"),
                    stdio,
                    executor,
                    &mut |pid| {
                        record.init_pid = Some(pid);
                        record.init_start_time = process_start_time(pid);
                        dir.write_record(&record)?;
                        if network == NetworkMode::None {
                            backend::loopback_up(pid)?;
                        }
                        Ok(())
                    },
                )?
            }
            Backend::Binary(path) => backend::launch_binary(
                path,
                &job.name,
                &bundle,
                &sub("state"),
                stdio,
                self.cgroups.version() == CgroupVersion::V1,
                &mut |pid| {
                    record.init_pid = Some(pid);
                    record.init_start_time = process_start_time(pid);
                    dir.write_record(&record)
                },
            )?,
        };
        phases.create_ms = started.create_ms;
        phases.start_ms = started.start_ms;
        let launch_ms = ms(t0);

        let t = Instant::now();
        let (out_sink, err_sink) = match io {
            JobIo::Inherit => (OutputSink::Fd(1), OutputSink::Fd(2)),
            JobIo::Capture {
                stdout,
                stderr,
                cap,
            } => (
                OutputSink::Capped { file: stdout, cap },
                OutputSink::Capped { file: stderr, cap },
            ),
        };
        let mut control = InitControl {
            pid: started.wait_pid,
        };
        let outcome = supervise::supervise(
            started.wait_pid,
            &mut control,
            &signals,
            (out_r, out_sink),
            (err_r, err_sink),
            stdin_feed,
            job.timeout,
            job.stop_timeout,
        )?;
        phases.wait_ms = ms(t);
        drop(signals);

        let st = outcome.wait_status;
        let (exit_code, signal) = if libc::WIFEXITED(st) {
            (libc::WEXITSTATUS(st), None)
        } else if libc::WIFSIGNALED(st) {
            let s = libc::WTERMSIG(st);
            (128 + s, Some(s))
        } else {
            (crate::exec::EXIT_CANNOT_INVOKE, None)
        };
        Ok(JobResult {
            exit_code,
            signal,
            timed_out: outcome.timed_out,
            launch_ms,
            output_dropped_bytes: outcome.dropped,
            output_errors: outcome.output_errors,
            ..Default::default()
        })
    }
}

/// Threads of this process, from `/proc/self/status`.
fn thread_count() -> Option<u32> {
    fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

fn apply_stats(res: &mut JobResult, stats: &CgroupStats) {
    res.cpu_usec = stats.cpu_usec;
    res.peak_memory_bytes = stats.peak_memory_bytes;
    if stats.oom_kills > 0 {
        res.oom_killed = true;
        if res.signal == Some(libc::SIGKILL) {
            res.exit_code = 137;
        }
    }
}

/// Whether `fd` refers to something (used by tests of fd leaks).
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD on any integer is harmless.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_is_proc_magic_link() {
        for p in [
            "/proc/self/fd/5",
            "/proc/1/cwd",
            "/proc/thread-self/root/x",
            "/proc//self/./fd",
        ] {
            assert!(is_proc_magic_link(p), "{p}");
        }
        for p in [
            "/proc",
            "/proc/self",
            "/proc/sys/kernel",
            "/data/proc/self/fd/5",
            "/",
        ] {
            assert!(!is_proc_magic_link(p), "{p}");
        }
    }
}
