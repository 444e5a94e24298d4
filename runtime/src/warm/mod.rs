//! Warm sandboxes: containers created and started before their job
//! arrives, waiting in skiff's executor, so that a job costs a handoff
//! instead of a libcontainer create. See `docs/warm-sandboxes.md`. The
//! stock, executor and frame live in `sandbox/` (no launch-path code);
//! here, the launch side:
//!
//! | step | file | what it does |
//! | --- | --- | --- |
//! | create | `create.rs` | lookup, rootfs, spec and create+start under a sandbox id |
//! | handoff | `handoff.rs` | limits, accounting baseline, hostname, the frame |
//! | discard | `discard.rs` | kill an unused sandbox; tear a used one down |

mod create;
mod discard;
mod handoff;

use std::time::Instant;

use imagestore::ImageId;

use crate::job::JobSpec;

pub use crate::sandbox::{
    executor, frame, shape_of, JobFrame, Key, Sandbox, Stock, WarmConfig, WarmCounters, WarmPolicy,
    WarmUse,
};
pub use handoff::Handoff;

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
        self.after_reply();
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
