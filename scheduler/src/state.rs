//! A job's states and the views the API returns.

use serde::{Deserialize, Serialize};

/// Where a job is: `delayed → queued → running → complete | error | timeout
/// | killed | cancelled`. A failed attempt with retries left goes back to
/// `delayed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for its `run_at` (a delay or a retry's backoff).
    Delayed,
    /// Ready to run.
    Queued,
    /// An attempt is running.
    Running,
    /// The last attempt exited 0.
    Complete,
    /// The last attempt failed (non-zero exit, or skiff could not run it).
    Error,
    /// The last attempt ran out of time.
    Timeout,
    /// The last attempt was killed (out of memory, or its worker was lost).
    Killed,
    /// Cancelled by a user.
    Cancelled,
}

/// A job's retry policy, fixed at submit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries allowed after the first attempt.
    pub max_retries: i64,
    /// Base delay before a retry, ms.
    pub delay_ms: i64,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 8] = [
        JobState::Delayed,
        JobState::Queued,
        JobState::Running,
        JobState::Complete,
        JobState::Error,
        JobState::Timeout,
        JobState::Killed,
        JobState::Cancelled,
    ];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Delayed => "delayed",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Complete => "complete",
            JobState::Error => "error",
            JobState::Timeout => "timeout",
            JobState::Killed => "killed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the job is over (until retried by hand).
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            JobState::Delayed | JobState::Queued | JobState::Running
        )
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attempt at running a job, and its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub n: i64,
    /// `running`, or how it ended.
    pub state: JobState,
    /// Why it ended so (e.g. `exit 3`, `oom`, `worker lost`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Docker-style exit status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Signal that killed the job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i64>,
    /// Whether the kernel OOM-killed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_killed: Option<bool>,
    /// Wall time, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wall_ms: Option<f64>,
    /// CPU time, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_usec: Option<i64>,
    /// Peak memory, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<i64>,
    /// Output bytes dropped by the cap: stdout, stderr.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_dropped_bytes: Option<[i64; 2]>,
    /// Start, ms since the epoch.
    pub started_at: i64,
    /// End, ms since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<i64>,
    /// The fleet worker that ran it (`--db postgres://` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

/// A state the job entered, and when (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// The state.
    pub state: JobState,
    /// When.
    pub at: i64,
}

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Id, `j-` and 16 hex digits.
    pub id: String,
    /// Current state.
    pub state: JobState,
    /// Why it is in that state, when it is a failure or a cancellation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Queue.
    pub queue: String,
    /// Label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Priority 0–2.
    pub priority: i64,
    /// What was submitted (the payload left out).
    pub request: crate::request::JobRequest,
    /// Payload size, bytes.
    pub payload_bytes: i64,
    /// Attempts so far.
    pub attempts: i64,
    /// Retries allowed.
    pub max_retries: i64,
    /// Not before, ms since the epoch.
    pub run_at: i64,
    /// Created, ms since the epoch.
    pub created_at: i64,
    /// Last change, ms since the epoch.
    pub updated_at: i64,
    /// Each attempt (filled by `get`, empty in lists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempt_list: Vec<Attempt>,
    /// Each transition (filled by `get`, empty in lists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<Transition>,
}
