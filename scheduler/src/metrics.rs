//! Prometheus metrics: their names, the recorder (installed once per
//! process), and the helpers the dispatcher and the API record with.
//! `GET /metrics` renders them (see `api::metrics`).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use ::metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::queue::{now_ms, Claim, Outcome};
use crate::state::JobState;

/// Gauge: jobs by `state` and `queue` (refreshed from the queue at scrape).
pub const JOBS: &str = "skiff_jobs";
/// Histogram: seconds from due (submit, delay or retry) to start.
pub const QUEUE_WAIT: &str = "skiff_job_queue_wait_seconds";
/// Histogram: seconds an attempt ran (wall time).
pub const RUN_TIME: &str = "skiff_job_run_seconds";
/// Histogram: seconds from the launcher's request to the job's process running.
pub const LAUNCH_LATENCY: &str = "skiff_job_launch_seconds";
/// Gauge: launcher slots by `state` (`busy`, `free`).
pub const SLOTS: &str = "skiff_launcher_slots";
/// Counter: attempts ended, by the attempt's `state`.
pub const ATTEMPTS: &str = "skiff_attempts_total";
/// Counter: failed attempts (retried or not), by the attempt's `state` and `reason`.
pub const ATTEMPT_FAILURES: &str = "skiff_attempt_failures_total";
/// Counter: jobs that ended failed (no retry left), by final `state` and `reason`.
pub const JOB_FAILURES: &str = "skiff_job_failures_total";

const WAIT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
const RUN_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
const LAUNCH_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The recorder could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("install the metrics recorder: {0}")]
pub struct MetricsError(#[from] BuildError);

static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
static JOB_LABELS: Mutex<Option<HashSet<(JobState, String)>>> = Mutex::new(None);

/// Install the process's Prometheus recorder (once: a later call returns
/// the same handle) and start its upkeep thread.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    let mut slot = HANDLE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(h) = slot.as_ref() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(QUEUE_WAIT.into()), WAIT_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(RUN_TIME.into()), RUN_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(LAUNCH_LATENCY.into()), LAUNCH_BUCKETS)?
        .install_recorder()?;
    describe();
    let h = handle.clone();
    // Without the exporter's own listener, upkeep (draining histogram
    // samples) is ours to run.
    let _ = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(5));
            h.run_upkeep();
        });
    *slot = Some(handle.clone());
    Ok(handle)
}

fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(JOBS, "Jobs by state and queue.");
    describe_histogram!(
        QUEUE_WAIT,
        Unit::Seconds,
        "Time from a job being due to its attempt starting."
    );
    describe_histogram!(RUN_TIME, Unit::Seconds, "Wall time of an attempt.");
    describe_histogram!(
        LAUNCH_LATENCY,
        Unit::Seconds,
        "Time from the launcher's request to the job's process running."
    );
    describe_gauge!(SLOTS, "Launcher slots by state (busy, free).");
    describe_counter!(ATTEMPTS, "Attempts ended, by state.");
    describe_counter!(
        ATTEMPT_FAILURES,
        "Failed attempts (retried or not), by state and reason."
    );
    describe_counter!(
        JOB_FAILURES,
        "Jobs that ended failed, by final state and reason."
    );
}

/// Set the jobs gauge from `Queue::counts()`; a (state, queue) seen
/// before and absent now reads 0.
pub fn set_job_counts(counts: &[(JobState, String, i64)]) {
    let mut seen = JOB_LABELS.lock().unwrap_or_else(|e| e.into_inner());
    let seen = seen.get_or_insert_with(HashSet::new);
    let now: HashSet<(JobState, String)> = counts.iter().map(|(s, q, _)| (*s, q.clone())).collect();
    for (s, q) in seen.iter().filter(|k| !now.contains(*k)) {
        gauge!(JOBS, "state" => s.as_str(), "queue" => q.clone()).set(0.0);
    }
    for (s, q, n) in counts {
        gauge!(JOBS, "state" => s.as_str(), "queue" => q.clone()).set(*n as f64);
    }
    seen.extend(now);
}

/// An attempt was claimed: its queue wait.
pub fn started(claim: &Claim) {
    let wait_ms = (now_ms() - claim.ready_at_ms).max(0);
    histogram!(QUEUE_WAIT).record(wait_ms as f64 / 1000.0);
}

/// The launcher slots' state.
pub fn slots(busy: usize, free: usize) {
    gauge!(SLOTS, "state" => "busy").set(busy as f64);
    gauge!(SLOTS, "state" => "free").set(free as f64);
}

/// A short class for why an attempt failed: `timeout`, `oom`,
/// `worker_lost`, `launch_error`, `signal`, `exit`, `cancelled`, `killed`.
pub fn reason_class(out: &Outcome) -> &'static str {
    let reason = out.reason.as_deref().unwrap_or_default();
    match out.state {
        Some(JobState::Timeout) => "timeout",
        Some(JobState::Cancelled) => "cancelled",
        _ if out.oom_killed == Some(true) => "oom",
        _ if reason.starts_with("launcher lost")
            || reason.starts_with("launcher slot lost")
            || reason == "worker lost" =>
        {
            "worker_lost"
        }
        Some(JobState::Killed) => "killed",
        _ if out.exit_code.is_none() => "launch_error",
        _ if out.signal.is_some() => "signal",
        _ => "exit",
    }
}

/// An attempt ended with `out`; the job moved to `job_state`.
pub fn attempt_ended(out: &Outcome, job_state: JobState) {
    if let Some(ms) = out.wall_ms {
        histogram!(RUN_TIME).record(ms / 1000.0);
    }
    if let Some(ms) = out.launch_ms {
        histogram!(LAUNCH_LATENCY).record(ms / 1000.0);
    }
    let state = out.state.unwrap_or(JobState::Error);
    counter!(ATTEMPTS, "state" => state.as_str()).increment(1);
    if state == JobState::Complete || job_state == JobState::Cancelled {
        return;
    }
    let reason = reason_class(out);
    counter!(ATTEMPT_FAILURES, "state" => state.as_str(), "reason" => reason).increment(1);
    if job_state.is_terminal() {
        counter!(JOB_FAILURES, "state" => job_state.as_str(), "reason" => reason).increment(1);
    }
}

/// Attempts found running after a crash (ended as `killed`, worker lost).
pub fn worker_lost(n: usize) {
    if n > 0 {
        counter!(ATTEMPT_FAILURES, "state" => "killed", "reason" => "worker_lost")
            .increment(n as u64);
    }
}
