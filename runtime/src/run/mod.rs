//! [`Runner`]: one job from image reference to result, phase by phase, one
//! file per phase around a per-job context ([`JobCtx`]):
//!
//! | phase | file | what it does |
//! | --- | --- | --- |
//! | lookup | `lookup.rs` | image, config, mount description; claim the name; lease |
//! | rootfs | `rootfs.rs` | scratch tmpfs, init layer, overlay |
//! | spec | `spec.rs` | Docker's process rules, `/etc` files, `config.json`, job record |
//! | launch | `launch.rs` | stdio pipes, create and start through the backend |
//! | wait | `wait.rs` | the supervise loop, the exit status |
//! | cleanup | `cleanup.rs` | accounting, cgroup, unmount, state, lease |
//!
//! Each phase's milliseconds land in [`Phases`].

pub(crate) mod cleanup;
pub(crate) mod launch;
pub(crate) mod lookup;
pub(crate) mod rootfs;
pub(crate) mod spec;
pub(crate) mod wait;

use std::fs;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use imagestore::Store;

use crate::backend::Backend;
use crate::cgroups::{self, CgroupDriver};
use crate::error::{Error, IoContext, Result};
use crate::job::JobSpec;
use crate::mounts;
use crate::oci;
use crate::seccomp;
use crate::state::{random_id, JobDir};
use crate::supervise;
use crate::timing::ms_since;

pub use spec::{is_proc_magic_link, plan_process, write_etc_files};

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
    /// With warm sandboxes asked about: whether a waiting sandbox ran the
    /// job (`hit`), one made for it (`made`), or the cold path (`miss`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warm: Option<crate::sandbox::WarmUse>,
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
    pub(crate) store: Store,
    pub(crate) cgroups: Box<dyn CgroupDriver>,
    pub(crate) run_root: PathBuf,
    pub(crate) bounding: Vec<oci_spec::runtime::Capability>,
    pub(crate) seccomp: seccomp::Cache,
    /// Warm sandboxes (empty and off unless [`Runner::set_warm`]).
    pub(crate) warm: crate::sandbox::Stock,
    /// Whether [`Runner::run`] leaves a job's teardown to
    /// [`Runner::after_reply`].
    teardown_after_reply: bool,
    /// Teardowns left until after the reply.
    pub(crate) after_reply: Vec<cleanup::Teardown>,
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

/// Prune the store's empty group cgroups (`…/skiff/<store key>`) when no
/// launcher of the store is alive: below this process's cgroup and wherever
/// else in a mounted hierarchy a launcher of the store left one (it ran
/// from another cgroup). `rmdir` never removes one that holds a job's
/// cgroup or a task; the shared `skiff` parents stay. Returns how many were
/// removed, or `None` (nothing touched) while a launcher holds
/// [`launchers_lock_path`].
pub fn prune_group_cgroups(store_root: &Path, cgroups: &dyn CgroupDriver) -> Result<Option<usize>> {
    let file = open_launchers_lock(store_root)?;
    let p = launchers_lock_path(store_root);
    let Some(_alone) = imagestore::process_lock::ProcessLock::try_acquire(file).ctx("lock", &p)?
    else {
        return Ok(None);
    };
    let mut removed = cgroups.prune_groups();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for dir in cgroups::find_group_dirs(&mountinfo, &cgroups::group_key(store_root)) {
        match fs::remove_dir(&dir) {
            Ok(()) => removed += 1,
            Err(e) => tracing::debug!(dir = %dir.display(), error = %e, "group cgroup kept"),
        }
    }
    Ok(Some(removed))
}

/// What one job carries through its phases.
#[derive(Debug)]
pub(crate) struct JobCtx<'a> {
    /// The request.
    pub(crate) job: &'a JobSpec,
    /// Who launches it.
    pub(crate) backend: &'a Backend,
    /// `ROOT/run/<job>/`, locked.
    pub(crate) dir: JobDir,
    /// `ROOT/run/<job>/scratch`.
    pub(crate) scratch: PathBuf,
    /// Mounts made for the job, outermost first.
    pub(crate) mounted: Vec<PathBuf>,
    /// Milliseconds per phase so far.
    pub(crate) phases: Phases,
    /// When the run began.
    pub(crate) t0: Instant,
}

impl JobCtx<'_> {
    /// A directory of the scratch tree.
    pub(crate) fn sub(&self, name: &str) -> PathBuf {
        self.scratch.join(name)
    }
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
        // Descriptors leaked to us by our caller must reach no job: a
        // runtime binary (crun 1.8 was seen doing so) would `chdir` through
        // one. skiff's own children get what they need explicitly.
        crate::confine::mark_inherited_fds_cloexec();
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
            warm: crate::sandbox::Stock::default(),
            teardown_after_reply: false,
            after_reply: Vec::new(),
            _launcher: launcher,
        })
    }

    /// With `on`, a job that ran leaves its teardown (cgroup removal,
    /// unmount, state directory, lease) to [`Runner::after_reply`]: its
    /// result, accounting included, is final before that, and a launcher
    /// replies first. `cleanup_ms` then counts only the accounting read.
    pub fn set_teardown_after_reply(&mut self, on: bool) {
        self.teardown_after_reply = on;
    }

    /// Tear down what jobs left until after their reply: their own state
    /// and the sandboxes they used.
    pub fn after_reply(&mut self) {
        for t in std::mem::take(&mut self.after_reply) {
            t.run(self);
        }
        self.warm_after_reply();
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

    /// Run one job to completion, from an image resolved already
    /// ([`Store::resolve`], [`Store::resolve_or_import`]).
    pub fn run(
        &mut self,
        image: &imagestore::ImageId,
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

        let t = Instant::now();
        let found = lookup::lookup(&self.store, &self.run_root, image, &job.name)?;
        let mut ctx = JobCtx {
            job: &job,
            backend,
            scratch: found.dir.scratch(),
            dir: found.dir,
            mounted: Vec::new(),
            phases: Phases {
                lookup_ms: ms_since(t),
                ..Phases::default()
            },
            t0,
        };
        let result = self.prepare_and_run(&mut ctx, &found.config, &found.desc, io);
        let t = Instant::now();
        let stats = cleanup::stats(self, &job.name);
        let mut phases = ctx.phases;
        phases.cleanup_ms = ms_since(t);
        let teardown = cleanup::Teardown::of(ctx, found.lease);
        if result.is_ok() && self.teardown_after_reply {
            self.after_reply.push(teardown);
        } else {
            phases.cleanup_ms += teardown.run(self);
        }

        let mut res = result?;
        cleanup::apply_stats(&mut res, &stats);
        res.phases = phases;
        res.wall_ms = ms_since(t0);
        res.runtime = backend.name();
        res.name = job.name.clone();
        Ok(res)
    }

    /// rootfs, spec, launch and wait; cleanup runs whatever this returns.
    fn prepare_and_run(
        &mut self,
        ctx: &mut JobCtx<'_>,
        config: &oci_spec::image::ImageConfiguration,
        desc: &imagestore::MountDescription,
        io: JobIo,
    ) -> Result<JobResult> {
        let t = Instant::now();
        let rootfs = rootfs::rootfs(ctx, desc)?;
        ctx.phases.rootfs_ms = ms_since(t);

        let t = Instant::now();
        let prepared = match spec::spec(self, ctx, config, &rootfs, None)? {
            spec::Prepared::Ready(p) => *p,
            spec::Prepared::NotRunnable(e) => {
                eprintln!("skiff: {e}");
                return Ok(JobResult {
                    exit_code: e.exit_code(),
                    launch_ms: ms_since(ctx.t0),
                    ..Default::default()
                });
            }
        };
        ctx.phases.spec_ms = ms_since(t);

        let launched = launch::launch(self, ctx, prepared, matches!(io, JobIo::Inherit))?;
        ctx.phases.create_ms = launched.started.create_ms;
        ctx.phases.start_ms = launched.started.start_ms;
        let launch_ms = ms_since(ctx.t0);

        let t = Instant::now();
        let mut res = wait::wait(ctx, launched, io)?;
        ctx.phases.wait_ms = ms_since(t);
        res.launch_ms = launch_ms;
        Ok(res)
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

/// Whether `fd` refers to something (used by tests of fd leaks).
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD on any integer is harmless.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}
