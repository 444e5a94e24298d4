//! The dispatcher: moves due jobs to `queued`, admits queued jobs onto free
//! launcher slots within the worker's capacity, records each outcome, and
//! drains on shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};

use crate::claim::Admission;
use crate::error::QueueError;
use crate::finish::Ended;
use crate::launchers::{job_name, signal_job, Slots};
use crate::queue::{Claim, Outcome, Queue};
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

/// Run the dispatcher until `stop` turns true, then drain for at most
/// `drain`: running jobs past it are stopped and queued again.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    queue: Queue,
    slots: Slots,
    capacity: Capacity,
    wake: Arc<Notify>,
    changed: Changed,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
    run_root: std::path::PathBuf,
) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(usize, Outcome)>();
    let mut free: Vec<usize> = (0..slots.len()).rev().collect();
    let mut running: HashMap<usize, Running> = HashMap::new();
    let mut refresh = true;
    let mut next_due: Option<i64> = None;
    let mut limits = HashMap::new();
    let mut code_limits = HashMap::new();
    let mut ended: Vec<(Running, Outcome)> = Vec::new();
    loop {
        if *stop.borrow() {
            break;
        }
        // Delayed jobs and the caps are read again only when something may
        // have changed them: a wake from the API or the scheduler, a retry
        // put off, the due time of the next delayed job, or once a second.
        // Between, finishing a job and claiming the next cost no more.
        if refresh || next_due.is_some_and(|t| t <= crate::queue::now_ms()) {
            refresh = false;
            next_due = match queue.promote_delayed().await {
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
            limits = crate::queues::limits(&queue).await.unwrap_or_else(|e| {
                tracing::error!("queue limits: {e}");
                Default::default()
            });
            code_limits = crate::code::limits(&queue).await.unwrap_or_else(|e| {
                tracing::error!("code package limits: {e}");
                Default::default()
            });
        }
        // Each claim carries the records of the attempts that ended since
        // the last: one round trip per job (`crate::turn`).
        while let Some(&slot) = free.last() {
            let fits = admission(&running, capacity, &limits, &code_limits);
            let (turn, delayed) = take_turn(&queue, &changed, &mut ended, Some(&fits)).await;
            refresh |= delayed;
            let claim = match turn {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    tracing::error!("claim a job: {e}");
                    break;
                }
            };
            free.pop();
            crate::metrics::started(&claim);
            let _ = changed.send((claim.id.clone(), JobState::Running));
            running.insert(
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
            slots.run(slot, claim, &done_tx);
        }
        crate::metrics::slots(running.len(), free.len());
        if !ended.is_empty() {
            refresh |= record(&queue, &changed, &mut ended).await;
        }
        if refresh {
            continue;
        }
        let sleep = match next_due {
            Some(t) => Duration::from_millis((t - crate::queue::now_ms()).clamp(1, 1000) as u64),
            None => Duration::from_secs(1),
        };
        tokio::select! {
            _ = wake.notified() => refresh = true,
            Some(done) = done_rx.recv() => {
                ended.extend(free_slot(&mut running, &mut free, done));
                while let Ok(done) = done_rx.try_recv() {
                    ended.extend(free_slot(&mut running, &mut free, done));
                }
            }
            _ = tokio::time::sleep(sleep) => refresh = true,
            _ = stop.changed() => {}
        }
    }
    record(&queue, &changed, &mut ended).await;
    // Drain: take nothing new; wait for the running jobs up to `drain`.
    tracing::info!(running = running.len(), "draining");
    let deadline = tokio::time::Instant::now() + drain;
    while !running.is_empty() {
        tokio::select! {
            Some(done) = done_rx.recv() => {
                ended.extend(free_slot(&mut running, &mut free, done));
                record(&queue, &changed, &mut ended).await;
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    if !running.is_empty() {
        let ids: Vec<(String, i64)> = running
            .values()
            .map(|r| (r.id.clone(), r.attempt))
            .collect();
        match queue.requeue_stopped(&ids).await {
            Ok(()) => {}
            Err(e) => tracing::error!("requeue stopped jobs: {e}"),
        }
        for r in running.values() {
            signal_job(
                &run_root,
                &job_name(&r.id, r.attempt),
                nix::sys::signal::Signal::SIGKILL,
            );
            tracing::warn!(job = %r.id, slot = r.slot, "stopped at drain timeout, queued again");
        }
    }
    drop(done_tx);
    tokio::task::spawn_blocking(move || slots.shutdown())
        .await
        .ok();
}

/// What a job may still take, given what runs, the capacity and the caps
/// of queues and code packages.
fn admission(
    running: &HashMap<usize, Running>,
    capacity: Capacity,
    limits: &HashMap<String, i64>,
    code_limits: &HashMap<String, i64>,
) -> Admission {
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
        full_queues: full(limits, &|r| Some(r.queue.as_str())),
        full_codes: full(code_limits, &|r| r.code.as_deref()),
    }
}

/// Free the slot of an ended attempt; the attempt, to be recorded.
fn free_slot(
    running: &mut HashMap<usize, Running>,
    free: &mut Vec<usize>,
    (slot, outcome): (usize, Outcome),
) -> Option<(Running, Outcome)> {
    free.push(slot);
    running.remove(&slot).map(|r| (r, outcome))
}

/// Record the attempts in `ended` (emptied); whether a job was put off for
/// a retry. A failure is logged per attempt (see [`take_turn`]).
async fn record(queue: &Queue, changed: &Changed, ended: &mut Vec<(Running, Outcome)>) -> bool {
    take_turn(queue, changed, ended, None).await.1
}

/// Record the attempts in `ended` (emptied) and, given `fits`, claim the
/// next job, in one transaction; the claim, and whether a job was put off
/// for a retry.
async fn take_turn(
    queue: &Queue,
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
