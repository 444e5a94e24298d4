//! Warm sandboxes' state, without the launch path: the stock and its key,
//! the waiting init's executor and the frame it reads. The launch side
//! (create, handoff, discard) is in `warm/`.
//!
//! Warm sandboxes: containers created and started before their job
//! arrives, waiting in skiff's executor, so that a job costs a handoff
//! instead of a libcontainer create. See `docs/warm-sandboxes.md`.
//!
//! | step | file | what it does |
//! | --- | --- | --- |
//! | create | `create.rs` | lookup, rootfs, spec and create+start under a sandbox id |
//! | wait | `executor.rs` | in the init: confine, say ready, block on the channel |
//! | handoff | `handoff.rs` | limits, accounting baseline, hostname, the [`JobFrame`] |
//! | discard | `discard.rs` | kill an unused sandbox; tear a used one down |
//!
//! A sandbox is keyed by the image id and the job's *shape*: every
//! [`JobSpec`] field that is fixed at create (user, groups, capabilities,
//! seccomp, `no_new_privs`, network, volumes, tmpfs, read-only, ulimits,
//! workdir, scratch). The per-job fields (name, command, entrypoint, env,
//! hostname, limits, timeouts) travel at handoff. Each sandbox serves one
//! job and is never reused.

pub mod executor;
pub mod frame;

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use imagestore::{ImageId, Lease};

use crate::job::JobSpec;
use crate::state::JobDir;

pub use frame::JobFrame;

/// How many sandboxes a launcher keeps, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmConfig {
    /// Sandboxes in stock at most, over all keys (0: warm sandboxes off).
    pub total: usize,
    /// Sandboxes in stock at most per (image, shape).
    pub per_key: usize,
    /// A sandbox older than this is discarded, not used (the host's
    /// `/etc/resolv.conf` it copied may have changed).
    pub ttl: Duration,
}

impl Default for WarmConfig {
    fn default() -> Self {
        WarmConfig {
            total: 0,
            per_key: 2,
            ttl: Duration::from_secs(300),
        }
    }
}

/// What a request asks of the warm stock (`"warm"` in a pool request).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WarmPolicy {
    /// A waiting sandbox if one matches, else the cold path (the default).
    #[default]
    Prefer,
    /// Always through a sandbox: on a miss, one is created for this job on
    /// its path (tests and the compatibility matrix use it to put every
    /// case through the warm path). An ineligible job is refused.
    Require,
    /// The cold path.
    Off,
}

/// How a job ran, when warm sandboxes were asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WarmUse {
    /// A waiting sandbox ran it.
    Hit,
    /// A sandbox made for it on its path ran it ([`WarmPolicy::Require`]).
    Made,
    /// The cold path ran it.
    Miss,
}

/// The stock key: the image id and the shape, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub(crate) image: ImageId,
    shape: String,
}

/// The shape of `job`: the job with its per-job fields cleared, and the
/// scratch size made explicit (by default it follows the memory limit).
pub fn shape_of(job: &JobSpec) -> JobSpec {
    JobSpec {
        name: String::new(),
        command: Vec::new(),
        entrypoint: None,
        env: Vec::new(),
        hostname: None,
        limits: Default::default(),
        timeout: None,
        stop_timeout: crate::job::DEFAULT_STOP_TIMEOUT,
        scratch_size: Some(job.scratch_bytes()),
        ..job.clone()
    }
}

impl Key {
    /// The key of `job` on `image`.
    pub fn of(image: &ImageId, job: &JobSpec) -> Key {
        Key {
            image: image.clone(),
            shape: serde_json::to_string(&shape_of(job)).unwrap_or_default(),
        }
    }
}

/// One created and started sandbox, waiting for its job.
#[derive(Debug)]
pub struct Sandbox {
    /// Its own id (`w-…`): container id, `ROOT/run` entry, cgroup, lease.
    pub(crate) id: String,
    pub(crate) key: Key,
    /// The shape it was created with.
    pub(crate) shape: JobSpec,
    /// The init, waiting in the executor; a child of the launcher.
    pub(crate) pid: i32,
    pub(crate) pidfd: Option<OwnedFd>,
    /// The launcher's end of the job channel.
    pub(crate) channel: UnixStream,
    pub(crate) dir: JobDir,
    pub(crate) scratch: PathBuf,
    /// Mounts made for it, outermost first.
    pub(crate) mounted: Vec<PathBuf>,
    pub(crate) lease: Lease,
    /// The image's config (entrypoint, cmd, env at handoff).
    pub(crate) config: oci_spec::image::ImageConfiguration,
    /// Docker's rules applied at create: user (its home) and cwd.
    pub(crate) plan: crate::oci::ProcessPlan,
    pub(crate) created: Instant,
    /// `/etc/resolv.conf` as copied in.
    pub(crate) resolv: Vec<u8>,
    /// Milliseconds its create and start took (off any job's path).
    pub(crate) create_ms: f64,
    /// Its init was reaped already (by another wait): only tear down.
    pub(crate) reaped: bool,
}

/// Counters a launcher reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WarmCounters {
    /// Jobs that got a warm sandbox.
    pub hits: u64,
    /// Eligible jobs that took the cold path.
    pub misses: u64,
    /// Sandboxes created.
    pub created: u64,
    /// Sandboxes discarded unused (stale, dead, or at exit).
    pub discarded: u64,
}

/// A launcher's warm sandboxes: the stock, the keys it refills, and the
/// used sandboxes whose teardown waits until the reply is sent.
#[derive(Debug, Default)]
pub struct Stock {
    pub(crate) cfg: WarmConfig,
    pub(crate) ready: Vec<Sandbox>,
    /// Keys to keep in stock, most recently used first, with an example
    /// job of that shape.
    pub(crate) wanted: Vec<(Key, JobSpec)>,
    pub(crate) used: Vec<Sandbox>,
    pub(crate) counters: WarmCounters,
}

impl Stock {
    /// Whether warm sandboxes are on.
    pub fn enabled(&self) -> bool {
        self.cfg.total > 0
    }

    /// Sandboxes waiting.
    pub fn len(&self) -> usize {
        self.ready.len()
    }

    /// Whether none is waiting.
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty()
    }

    /// The counters so far.
    pub fn counters(&self) -> WarmCounters {
        self.counters
    }

    /// The pids of the waiting sandboxes' inits.
    pub fn pids(&self) -> Vec<i32> {
        self.ready.iter().map(|s| s.pid).collect()
    }

    /// Remember that `key` is in use, most recent first, at most `total` keys.
    pub(crate) fn want(&mut self, key: &Key, job: &JobSpec) {
        self.wanted.retain(|(k, _)| k != key);
        self.wanted.insert(0, (key.clone(), shape_of(job)));
        self.wanted.truncate(self.cfg.total.max(1));
    }

    /// Sandboxes whose init another wait reaped (`reap_orphans` after a
    /// runtime binary's job): they are dead; tear them down.
    pub(crate) fn forget_reaped(&mut self, pids: &[i32]) {
        let (dead, live): (Vec<_>, Vec<_>) = std::mem::take(&mut self.ready)
            .into_iter()
            .partition(|s| pids.contains(&s.pid));
        self.ready = live;
        for mut s in dead {
            s.reaped = true;
            self.counters.discarded += 1;
            self.used.push(s);
        }
    }

    /// The next key below its share of the stock, if the stock has room.
    pub(crate) fn next_to_fill(&self) -> Option<(Key, JobSpec)> {
        if self.ready.len() >= self.cfg.total {
            return None;
        }
        self.wanted
            .iter()
            .find(|(k, _)| self.ready.iter().filter(|s| &s.key == k).count() < self.cfg.per_key)
            .cloned()
    }
}
