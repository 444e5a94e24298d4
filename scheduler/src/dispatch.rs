//! The dispatcher: moves due jobs to `queued`, admits queued jobs onto free
//! launcher slots within the worker's capacity, records each outcome, and
//! drains on shutdown. A slot thread whose attempt ends records it and
//! claims its own next job in one turn ([`SlotEnd`]), so that a busy
//! worker's path from one job to the next is slot thread → database thread
//! → slot thread; the dispatcher task fills the slots left free.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex, Notify};

use crate::claim::Admission;
use crate::db::{Caps, Storage};
use crate::error::QueueError;
use crate::finish::Ended;
use crate::launchers::{job_name, signal_job, SlotEnd, Slots};
use crate::queue::{Claim, Outcome};
use crate::state::{JobState, RetryPolicy};

/// What the worker may run at once.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    /// Sum of running jobs' memory limits, bytes.
    pub memory_bytes: u64,
    /// Sum of running jobs' CPU limits.
    pub cpus: f64,
}

/// Events the dispatcher publishes: a job changed state.
pub type Changed = tokio::sync::broadcast::Sender<(String, JobState)>;

struct Running {
    slot: usize,
    id: String,
    attempt: i64,
    retry: RetryPolicy,
    memory: u64,
    cpus: f64,
    queue: String,
    code: Option<String>,
}

/// What the dispatcher task and the slot threads share, under one lock
/// that is also held over each turn: admission is decided from `running`,
/// so two claims must never be in flight at once.
#[derive(Default)]
struct State {
    free: Vec<usize>,
    running: HashMap<usize, Running>,
    /// Attempts ended but not yet recorded (a slot found gone).
    ended: Vec<(Running, Outcome)>,
    caps: Caps,
    /// A retry was put off since the dispatcher last read delayed jobs.
    refresh: bool,
    /// No claims: the worker is draining.
    draining: bool,
}

/// The worker's dispatcher: what it needs besides the slots.
#[derive(Debug)]
pub struct Dispatch {
    /// The queue, on either engine.
    pub queue: Arc<dyn Storage>,
    /// What may run at once.
    pub capacity: Capacity,
    /// Woken by the API and the scheduler when jobs or caps change.
    pub wake: Arc<Notify>,
    /// Where state changes are published.
    pub changed: Changed,
    /// How long a drain waits for running jobs.
    pub drain: Duration,
    /// The launchers' container records, to stop jobs at drain timeout.
    pub run_root: std::path::PathBuf,
}

/// The shared half: the slot threads end their attempts through it.
struct Shared {
    queue: Arc<dyn Storage>,
    changed: Changed,
    capacity: Capacity,
    state: Mutex<State>,
    /// Wakes the dispatcher task from a slot thread.
    poke: Notify,
    /// Turns true at SIGTERM: from then on no slot claims a job.
    stop: watch::Receiver<bool>,
    rt: tokio::runtime::Handle,
}

/// The attempts the worker runs (job, attempt), as its heartbeats report
/// them to the fleet.
#[derive(Clone)]
pub struct RunningJobs(Arc<Shared>);

impl std::fmt::Debug for RunningJobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunningJobs")
    }
}

impl RunningJobs {
    /// What runs now.
    pub async fn attempts(&self) -> Vec<(String, i64)> {
        let st = self.0.state.lock().await;
        st.running
            .values()
            .map(|r| (r.id.clone(), r.attempt))
            .collect()
    }
}

impl Dispatch {
    /// Start the dispatcher on the runtime: it runs until `stop` turns
    /// true, then drains for at most `drain` (running jobs past it are
    /// stopped and queued again).
    pub fn start(
        self,
        slots: Slots,
        stop: watch::Receiver<bool>,
    ) -> (tokio::task::JoinHandle<()>, RunningJobs) {
        let shared = Arc::new(Shared {
            queue: self.queue.clone(),
            changed: self.changed.clone(),
            capacity: self.capacity,
            state: Mutex::new(State {
                free: (0..slots.len()).rev().collect(),
                ..Default::default()
            }),
            poke: Notify::new(),
            stop: stop.clone(),
            rt: tokio::runtime::Handle::current(),
        });
        let view = RunningJobs(shared.clone());
        (tokio::spawn(self.run(shared, slots, stop)), view)
    }

    async fn run(self, shared: Arc<Shared>, slots: Slots, mut stop: watch::Receiver<bool>) {
        let end: Arc<dyn SlotEnd> = shared.clone();
        let mut refresh = true;
        let mut next_due: Option<i64> = None;
        loop {
            if *stop.borrow() {
                break;
            }
            // Delayed jobs and the caps are read again only when something
            // may have changed them: a wake from the API or the scheduler, a
            // retry put off, the due time of the next delayed job, or once a
            // second. Between, a slot thread that ends an attempt claims its
            // next job itself, in the same turn (`SlotEnd`).
            if refresh || next_due.is_some_and(|t| t <= crate::queue::now_ms()) {
                next_due = self.refresh(&shared).await;
            }
            let mut st = shared.state.lock().await;
            refresh = std::mem::take(&mut st.refresh);
            if refresh {
                continue;
            }
            shared.fill(&mut st, &slots, &end).await;
            refresh = std::mem::take(&mut st.refresh);
            drop(st);
            if refresh {
                continue;
            }
            let sleep = match next_due {
                Some(t) => {
                    Duration::from_millis((t - crate::queue::now_ms()).clamp(1, 1000) as u64)
                }
                None => Duration::from_secs(1),
            };
            tokio::select! {
                _ = self.wake.notified() => refresh = true,
                _ = shared.poke.notified() => {}
                _ = tokio::time::sleep(sleep) => refresh = true,
                _ = stop.changed() => {}
            }
        }
        self.drain(&shared).await;
        tokio::task::spawn_blocking(move || slots.shutdown())
            .await
            .ok();
    }

    /// Queue the delayed jobs that are due and read the caps again; when the
    /// next delayed job is due.
    async fn refresh(&self, shared: &Shared) -> Option<i64> {
        let next_due = match self.queue.promote_delayed().await {
            Ok((n, next)) => {
                if n > 0 {
                    tracing::debug!(jobs = n, "delayed jobs queued");
                }
                next
            }
            Err(e) => {
                tracing::error!("promote delayed jobs: {e}");
                None
            }
        };
        let caps = self.queue.caps().await.unwrap_or_else(|e| {
            tracing::error!("queue and code package caps: {e}");
            Default::default()
        });
        let mut st = shared.state.lock().await;
        st.caps = caps;
        next_due
    }

    /// Take nothing new; wait for the running jobs up to `drain`, then stop
    /// those left and queue them again.
    async fn drain(&self, shared: &Shared) {
        let mut st = shared.state.lock().await;
        st.draining = true;
        shared.record(&mut st).await;
        tracing::info!(running = st.running.len(), "draining");
        drop(st);
        let deadline = tokio::time::Instant::now() + self.drain;
        loop {
            let st = shared.state.lock().await;
            if st.running.is_empty() {
                break;
            }
            drop(st);
            tokio::select! {
                _ = shared.poke.notified() => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let mut st = shared.state.lock().await;
        if st.running.is_empty() {
            return;
        }
        let ids: Vec<(String, i64)> = st
            .running
            .values()
            .map(|r| (r.id.clone(), r.attempt))
            .collect();
        if let Err(e) = self.queue.requeue_stopped(&ids).await {
            tracing::error!("requeue stopped jobs: {e}");
        }
        // Their outcomes, when the kill ends them, have nothing to record.
        for (_, r) in st.running.drain() {
            signal_job(
                &self.run_root,
                &job_name(&r.id, r.attempt),
                nix::sys::signal::Signal::SIGKILL,
            );
            tracing::warn!(job = %r.id, slot = r.slot, "stopped at drain timeout, queued again");
        }
    }
}

impl Shared {
    /// Claim a job for every free slot that admission allows.
    async fn fill(&self, st: &mut State, slots: &Slots, end: &Arc<dyn SlotEnd>) {
        while let Some(&slot) = st.free.last() {
            let Some(claim) = self.turn(st, Some(slot)).await else {
                break;
            };
            if !slots.run(slot, claim, end) {
                // The slot's thread is gone: its job ends here, and the
                // slot is not used again.
                if let Some(r) = st.running.remove(&slot) {
                    tracing::error!(job = %r.id, slot, "launcher slot stopped");
                    st.ended
                        .push((r, crate::launchers::failed("launcher slot stopped".into())));
                }
            }
        }
        if !st.ended.is_empty() {
            self.record(st).await;
        }
        crate::metrics::slots(st.running.len(), st.free.len());
    }

    /// Record the attempts that ended.
    async fn record(&self, st: &mut State) {
        self.turn(st, None).await;
    }

    /// One turn: record the attempts that ended and, given a free `slot`
    /// and unless draining, claim its next job, in one transaction.
    async fn turn(&self, st: &mut State, slot: Option<usize>) -> Option<Claim> {
        let slot = slot.filter(|_| !st.draining && !*self.stop.borrow());
        let fits = slot.map(|_| admission(st, self.capacity));
        let (turn, delayed) =
            take_turn(&*self.queue, &self.changed, &mut st.ended, fits.as_ref()).await;
        st.refresh |= delayed;
        let claim = match turn {
            Ok(c) => c?,
            Err(e) => {
                tracing::error!("claim a job: {e}");
                return None;
            }
        };
        let slot = slot?;
        st.free.retain(|&s| s != slot);
        crate::metrics::started(&claim);
        let _ = self.changed.send((claim.id.clone(), JobState::Running));
        st.running.insert(
            slot,
            Running {
                slot,
                id: claim.id.clone(),
                attempt: claim.attempt,
                retry: claim.retry,
                memory: claim.memory_bytes.unwrap_or(0),
                cpus: claim.cpus.unwrap_or(0.0),
                queue: claim.queue.clone(),
                code: claim.request.code.clone(),
            },
        );
        Some(claim)
    }
}

impl SlotEnd for Shared {
    fn ended(&self, slot: usize, outcome: Outcome, claim_next: bool) -> Option<Claim> {
        self.rt.block_on(async {
            let mut st = self.state.lock().await;
            if let Some(r) = st.running.remove(&slot) {
                st.ended.push((r, outcome));
            }
            st.free.push(slot);
            let next = self.turn(&mut st, claim_next.then_some(slot)).await;
            crate::metrics::slots(st.running.len(), st.free.len());
            // The dispatcher task is needed only to put off a retry, to
            // fill other free slots while jobs are coming, or to see the
            // last job of a drain end.
            if st.refresh || st.draining || (next.is_some() && !st.free.is_empty()) {
                self.poke.notify_one();
            }
            next
        })
    }
}

/// What a job may still take, given what runs, the capacity and the caps
/// of queues and code packages.
fn admission(st: &State, capacity: Capacity) -> Admission {
    let running = &st.running;
    let used_mem: u64 = running.values().map(|r| r.memory).sum();
    let used_cpu: f64 = running.values().map(|r| r.cpus).sum();
    let full = |limits: &HashMap<String, i64>, of: &dyn Fn(&Running) -> Option<&str>| {
        limits
            .iter()
            .filter(|(name, &max)| {
                let n = running
                    .values()
                    .filter(|r| of(r) == Some(name.as_str()))
                    .count();
                n as i64 >= max
            })
            .map(|(name, _)| name.clone())
            .collect()
    };
    Admission {
        memory_bytes: capacity.memory_bytes.saturating_sub(used_mem),
        cpus: (capacity.cpus - used_cpu).max(0.0),
        full_queues: full(&st.caps.queues, &|r| Some(r.queue.as_str())),
        full_codes: full(&st.caps.codes, &|r| r.code.as_deref()),
    }
}

/// Record the attempts in `ended` (emptied) and, given `fits`, claim the
/// next job, in one transaction; the claim, and whether a job was put off
/// for a retry.
async fn take_turn(
    queue: &dyn Storage,
    changed: &Changed,
    ended: &mut Vec<(Running, Outcome)>,
    fits: Option<&Admission>,
) -> (Result<Option<Claim>, QueueError>, bool) {
    if ended.is_empty() && fits.is_none() {
        return (Ok(None), false);
    }
    let batch: Vec<Ended> = ended
        .drain(..)
        .map(|(r, outcome)| Ended {
            id: r.id,
            n: r.attempt,
            retry: r.retry,
            outcome,
        })
        .collect();
    let (recorded, claim) = match queue.turn(&batch, fits).await {
        Ok(turn) => (turn.recorded, turn.claim),
        Err(err) if !batch.is_empty() => {
            // The whole batch rolled back: record each attempt alone, so
            // that one bad record or a passing failure loses none of the
            // others (a job left `running` would wait for a restart).
            tracing::warn!("turn failed ({err}); recording its attempts one by one");
            let mut recorded = Vec::with_capacity(batch.len());
            for e in &batch {
                recorded.push(queue.finish(e).await.unwrap_or_else(|err| {
                    tracing::error!(job = %e.id, "record attempt: {err}");
                    None
                }));
            }
            (recorded, Err(err))
        }
        Err(err) => return (Err(err), false),
    };
    let mut delayed = false;
    for (e, state) in batch.iter().zip(recorded) {
        match state {
            Some(state) => {
                crate::metrics::attempt_ended(&e.outcome, state);
                let _ = changed.send((e.id.clone(), state));
                delayed |= state == JobState::Delayed;
            }
            None => tracing::debug!(job = %e.id, "attempt result fenced off"),
        }
    }
    (claim, delayed)
}
