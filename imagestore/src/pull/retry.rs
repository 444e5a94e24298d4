//! How often, and how patiently, a pull repeats a request.

use std::time::Duration;

/// How often, and how patiently, requests are repeated.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Rounds over every endpoint before giving up (at least 1).
    pub rounds: u32,
    /// The first backoff; it doubles each round, to at most 4 s.
    pub backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            rounds: 6,
            backoff: Duration::from_millis(250),
        }
    }
}

impl Retry {
    /// The pause before round `n` (1-based after the first).
    pub(crate) fn pause(&self, n: u32) -> Duration {
        let factor = 1u32 << n.saturating_sub(1).min(8);
        (self.backoff * factor).min(Duration::from_secs(4))
    }
}
