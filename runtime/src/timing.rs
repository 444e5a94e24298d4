//! Millisecond timings and their median: one home for the launch phases
//! and every crate that measures launches.

use std::time::{Duration, Instant};

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Milliseconds since `t`.
pub fn ms_since(t: Instant) -> f64 {
    ms(t.elapsed())
}

/// The median of `samples`: the middle one, or the mean of the two middle
/// ones for an even count; `None` when there are none.
pub fn median(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn ms_converts() {
        assert_eq!(ms(Duration::from_micros(1500)), 1.5);
    }
}
