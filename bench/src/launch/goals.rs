//! The speed goals of the runtime issue (issue 3), judged against a run's
//! results; [`goals`] fills [`LaunchResults::goals`].

use crate::results::launch::{Goal, LaunchResults};
use crate::units::fmt_ms as ms;

/// The concurrency at which throughputs are compared for the goal: 8 when
/// measured, else the highest level measured for both.
fn compare_level(r: &LaunchResults, a: &str, b: &str) -> Option<usize> {
    let levels = |n: &str| -> Vec<usize> {
        r.throughput
            .iter()
            .find(|t| t.name == n)
            .map(|t| t.levels.iter().map(|l| l.concurrency).collect())
            .unwrap_or_default()
    };
    let (la, lb) = (levels(a), levels(b));
    let common: Vec<usize> = la.into_iter().filter(|c| lb.contains(c)).collect();
    if common.contains(&8) {
        Some(8)
    } else {
        common.into_iter().max()
    }
}

/// Jobs per second of `name` at concurrency `c`.
pub fn jobs_per_s(r: &LaunchResults, name: &str, c: usize) -> Option<f64> {
    r.throughput
        .iter()
        .find(|t| t.name == name)?
        .levels
        .iter()
        .find(|l| l.concurrency == c)
        .map(|l| l.jobs_per_s)
}

/// How far a median is from its limit: the time to spare, or how much too slow.
fn latency_gap(median_ms: f64, limit_ms: f64) -> String {
    if median_ms <= limit_ms {
        format!("met, {} ms to spare", ms(limit_ms - median_ms))
    } else {
        format!(
            "{} ms too slow (needs ≤ {} ms)",
            ms(median_ms - limit_ms),
            ms(limit_ms)
        )
    }
}

/// The speed goals of the runtime issue (issue 3), against this run.
pub fn goals(r: &LaunchResults) -> Vec<Goal> {
    let skiff = r.get("skiff");
    let floor = r.get("floor");
    let crun = r.get("crun");
    let pool = r.get("skiff-pool");
    let mut out = Vec::new();

    let target = "`skiff run` median ≤ 1.5× the floor (unshare) median".to_string();
    out.push(match (skiff, floor) {
        (Some(s), Some(f)) if f.median_ms > 0.0 => {
            let x = s.median_ms / f.median_ms;
            let limit = 1.5 * f.median_ms;
            let pool_txt = pool
                .map(|p| {
                    format!(
                        "; the pool: {} ms = {:.2}× the floor",
                        ms(p.median_ms),
                        p.median_ms / f.median_ms
                    )
                })
                .unwrap_or_default();
            Goal {
                name: "median vs floor".into(),
                target,
                measured: format!(
                    "{} ms = {x:.2}× the floor's {} ms{pool_txt}",
                    ms(s.median_ms),
                    ms(f.median_ms)
                ),
                met: Some(x <= 1.5),
                gap: latency_gap(s.median_ms, limit),
            }
        }
        _ => Goal {
            name: "median vs floor".into(),
            target,
            measured: "skiff or the floor was not measured".into(),
            met: None,
            gap: "-".into(),
        },
    });

    let target = "`skiff run` ≥ 3× faster than `crun run` (medians)".to_string();
    out.push(match (skiff, crun) {
        (Some(s), Some(c)) if s.median_ms > 0.0 => {
            let x = c.median_ms / s.median_ms;
            let limit = c.median_ms / 3.0;
            Goal {
                name: "vs crun".into(),
                target,
                measured: format!(
                    "crun {} ms / skiff {} ms = {x:.2}×",
                    ms(c.median_ms),
                    ms(s.median_ms)
                ),
                met: Some(x >= 3.0),
                gap: latency_gap(s.median_ms, limit),
            }
        }
        _ => Goal {
            name: "vs crun".into(),
            target,
            measured: "skiff or crun was not measured".into(),
            met: None,
            gap: "-".into(),
        },
    });

    let target = "`skiff run` p99 ≤ 3× its median".to_string();
    out.push(match skiff {
        Some(s) if s.median_ms > 0.0 => {
            let x = s.p99_ms / s.median_ms;
            Goal {
                name: "p99 vs median".into(),
                target,
                measured: format!(
                    "p99 {} ms / median {} ms = {x:.2}× ({} samples)",
                    ms(s.p99_ms),
                    ms(s.median_ms),
                    s.samples_ms.len()
                ),
                met: Some(x <= 3.0),
                gap: if x <= 3.0 {
                    "met".into()
                } else {
                    format!(
                        "p99 {} ms above 3× the median",
                        ms(s.p99_ms - 3.0 * s.median_ms)
                    )
                },
            }
        }
        _ => Goal {
            name: "p99 vs median".into(),
            target,
            measured: "skiff was not measured".into(),
            met: None,
            gap: "-".into(),
        },
    });

    let target = "issue 3 names no throughput figure; the bar used here is the latency \
                  goal's: the launcher pool ≥ 3× crun's jobs/s at the same concurrency (8)"
        .to_string();
    out.push(match compare_level(r, "skiff-pool", "crun") {
        Some(c) => {
            let p = jobs_per_s(r, "skiff-pool", c).unwrap_or(0.0);
            let k = jobs_per_s(r, "crun", c).unwrap_or(0.0);
            let x = if k > 0.0 { p / k } else { f64::INFINITY };
            Goal {
                name: "throughput".into(),
                target,
                measured: format!(
                    "at concurrency {c}: pool {p:.0} jobs/s, crun {k:.0} jobs/s = {x:.2}×"
                ),
                met: Some(x >= 3.0),
                gap: if x >= 3.0 {
                    "met".into()
                } else {
                    format!("needs {:.0} jobs/s more", 3.0 * k - p)
                },
            }
        }
        None => Goal {
            name: "throughput".into(),
            target,
            measured: "throughput of the pool and crun was not measured".into(),
            met: None,
            gap: "-".into(),
        },
    });
    out
}
