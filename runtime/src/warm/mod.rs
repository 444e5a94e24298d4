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

mod create;
mod discard;
pub mod executor;
pub mod frame;
mod handoff;

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use imagestore::{ImageId, Lease};

use crate::job::JobSpec;
use crate::state::JobDir;

pub use frame::JobFrame;
pub use handoff::Handoff;

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
    image: ImageId,
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

impl crate::run::Runner {
    /// Turn warm sandboxes on (or off, with `total` 0) for this launcher.
    pub fn set_warm(&mut self, cfg: WarmConfig) {
        self.warm.cfg = cfg;
    }

    /// The warm stock.
    pub fn warm(&self) -> &Stock {
        &self.warm
    }

    /// Run a job through a waiting sandbox of its key when there is one,
    /// else the cold path ([`Runner::run`]), as `policy` says. Eligible:
    /// libcontainer without stdin; others always take the cold path.
    pub fn run_pooled(
        &mut self,
        image: &ImageId,
        mut job: JobSpec,
        backend: &crate::backend::Backend,
        io: crate::run::JobIo,
        policy: WarmPolicy,
    ) -> crate::error::Result<crate::run::JobResult> {
        // stdin (`-i`) would need the launcher's copy loop from the start.
        let eligible = *backend == crate::backend::Backend::Libcontainer && !job.stdin;
        if policy == WarmPolicy::Require && !eligible {
            return Err(crate::error::Error::InvalidOption {
                what: "warm",
                value: "require".into(),
                detail: "warm sandboxes run libcontainer jobs without stdin (-i)".into(),
            });
        }
        if policy == WarmPolicy::Off
            || !eligible
            || (!self.warm.enabled() && policy == WarmPolicy::Prefer)
        {
            return self.run(image, job, backend, io);
        }
        let t0 = Instant::now();
        if job.name.is_empty() {
            job.name = crate::state::random_id();
        }
        let key = Key::of(image, &job);
        if self.warm.enabled() {
            self.warm.want(&key, &job);
        }
        let mut made = false;
        loop {
            let s = match self.warm.ready.iter().position(|s| s.key == key) {
                Some(i) => self.warm.ready.remove(i),
                None if policy == WarmPolicy::Require && !made => {
                    made = true;
                    let s = create::create(self, image, &shape_of(&job))?;
                    self.warm.counters.created += 1;
                    s
                }
                None => break,
            };
            let mut s = s;
            if self.is_stale(&mut s) {
                self.warm.counters.discarded += 1;
                discard::discard(self, s);
                continue;
            }
            let used = if made { WarmUse::Made } else { WarmUse::Hit };
            match handoff::prepare(&s, &job) {
                Err(e) => {
                    self.warm.ready.push(s);
                    return Err(e);
                }
                Ok(Err(not_runnable)) => {
                    // Nothing ran: the sandbox stays for the next job.
                    self.warm.ready.push(s);
                    eprintln!("skiff: {not_runnable}");
                    return Ok(crate::run::JobResult {
                        name: job.name.clone(),
                        exit_code: not_runnable.exit_code(),
                        launch_ms: crate::timing::ms_since(t0),
                        wall_ms: crate::timing::ms_since(t0),
                        runtime: backend.name(),
                        warm: Some(used),
                        ..Default::default()
                    });
                }
                Ok(Ok(h)) => {
                    if used == WarmUse::Hit {
                        self.warm.counters.hits += 1;
                    }
                    let create_ms = s.create_ms;
                    let mut res = handoff::run(self, s, &job, h, io, t0)?;
                    if used == WarmUse::Made {
                        // The sandbox was made on the job's path: show it as create.
                        res.phases.create_ms = create_ms;
                        res.phases.lookup_ms = (res.phases.lookup_ms - create_ms).max(0.0);
                    }
                    res.warm = Some(used);
                    return Ok(res);
                }
            }
        }
        if policy == WarmPolicy::Require {
            return Err(crate::error::Error::Protocol(
                "warm: require: the sandbox made for the job went stale before use".into(),
            ));
        }
        self.warm.counters.misses += 1;
        let mut res = self.run(image, job, backend, io)?;
        res.warm = Some(WarmUse::Miss);
        Ok(res)
    }

    /// Whether a waiting sandbox must not be used: its init died, it is
    /// older than the TTL, the host's `/etc/resolv.conf` changed, or its
    /// image was removed.
    fn is_stale(&self, s: &mut Sandbox) -> bool {
        discard::has_exited(s)
            || s.created.elapsed() > self.warm.cfg.ttl
            || std::fs::read("/etc/resolv.conf").unwrap_or_default() != s.resolv
            || self.store.image(&s.key.image).is_err()
    }

    /// After a reply: tear down the sandboxes jobs used.
    pub fn warm_after_reply(&mut self) {
        for s in std::mem::take(&mut self.warm.used) {
            discard::teardown(self, s);
        }
    }

    /// Create one sandbox for the most recent key below its share, if the
    /// stock has room. `false` when nothing was made.
    pub fn warm_refill_one(&mut self) -> bool {
        let Some((key, shape)) = self.warm.next_to_fill() else {
            return false;
        };
        match create::create(self, &key.image, &shape) {
            Ok(s) => {
                self.warm.counters.created += 1;
                self.warm.ready.push(s);
                true
            }
            Err(e) => {
                // Not retried until a job of that key comes again.
                tracing::info!(error = %crate::error::error_chain(&e), "warm sandbox not created");
                self.warm.wanted.retain(|(k, _)| *k != key);
                false
            }
        }
    }

    /// Discard the waiting sandboxes that went stale; tear down used ones.
    pub fn warm_tick(&mut self) {
        self.warm_after_reply();
        let mut keep = Vec::new();
        for mut s in std::mem::take(&mut self.warm.ready) {
            if self.is_stale(&mut s) {
                self.warm.counters.discarded += 1;
                discard::discard(self, s);
            } else {
                keep.push(s);
            }
        }
        self.warm.ready = keep;
    }

    /// Discard every sandbox (the launcher is ending).
    pub fn warm_shutdown(&mut self) {
        self.warm_after_reply();
        for s in std::mem::take(&mut self.warm.ready) {
            self.warm.counters.discarded += 1;
            discard::discard(self, s);
        }
        self.warm.wanted.clear();
    }
}

impl Drop for crate::run::Runner {
    /// Sandboxes die with their runner: killed, reaped, unmounted and
    /// removed, so that a later runner of the store (or `gc`) finds no
    /// live sandbox behind an unlocked directory.
    fn drop(&mut self) {
        self.warm_shutdown();
    }
}
