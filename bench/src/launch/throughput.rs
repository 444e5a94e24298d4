//! Throughput: jobs per second with `c` launches in flight at once.
//!
//! `c` worker threads each launch back to back until the level's jobs are
//! done: for the process contenders (`skiff run`, `runc run`, `crun run`,
//! the floor) each worker starts one process at a time, in its own slot
//! (the runtimes' container ids and cgroups differ per slot); for the pool,
//! each worker owns one `skiff launcher` and sends it one request at a time,
//! so `c` launchers run jobs side by side. Each level starts with `c`
//! untimed jobs (new launchers start there).
//!
//! CPU per job: for processes, this process's `RUSAGE_CHILDREN` delta over
//! the level divided by the jobs; for the pool, the launchers' CPU clocks
//! plus the job cgroups' CPU time, summed over the jobs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use runtime::error::error_chain;

use super::exec;
use super::prepare::{How, Prepared};
use crate::error::RunError;
use crate::results::launch::{Level, ThroughputResult};
use crate::ui::Ui;

/// Jobs per level: `fixed`, or 8 per worker (at least 64), or with
/// `quick` 3 per worker (at least 12); never fewer than the workers.
pub fn jobs_for(c: usize, fixed: Option<usize>, quick: bool) -> usize {
    fixed
        .unwrap_or(if quick {
            (3 * c).max(12)
        } else {
            (8 * c).max(64)
        })
        .max(c)
}

/// The outcome of one batch.
#[derive(Debug, Default)]
struct Batch {
    wall_s: f64,
    done: usize,
    failures: usize,
    cpu_ms: Option<f64>,
    first_error: Option<RunError>,
}

/// Measure `p` at each level.
pub fn measure(
    p: &mut Prepared,
    levels: &[usize],
    fixed: Option<usize>,
    quick: bool,
    ui: &Ui,
) -> Result<ThroughputResult, RunError> {
    let mut out = Vec::new();
    let name = p.which.name();
    for &c in levels {
        ui.message(format!("{name}: concurrency {c}"));
        p.ensure_launchers(c)?;
        let warm = batch(p, c, c, ui);
        if warm.done == 0 {
            return Err(warm.first_error.unwrap_or(RunError::NoJobRan(c)));
        }
        let n = jobs_for(c, fixed, quick);
        let b = batch(p, c, n, ui);
        if b.done == 0 {
            return Err(b.first_error.unwrap_or(RunError::NoJobRan(c)));
        }
        out.push(Level {
            concurrency: c,
            jobs: b.done,
            failures: b.failures,
            first_error: if b.failures > 0 {
                b.first_error.as_ref().map(|e| error_chain(e))
            } else {
                None
            },
            wall_s: b.wall_s,
            jobs_per_s: b.done as f64 / b.wall_s.max(1e-9),
            cpu_ms_per_job: b.cpu_ms.map(|t| t / b.done as f64),
        });
    }
    let how = match &p.how {
        How::Pool { .. } => {
            "C `skiff launcher` processes, each serving one request at a time".to_string()
        }
        How::Process { .. } => format!("C `{name}` launches at a time, each its own process"),
    };
    Ok(ThroughputResult {
        name: name.into(),
        how,
        levels: out,
    })
}

/// One worker's tally: jobs done, jobs failed, CPU ms reported, first error.
type Worker = (usize, usize, f64, Option<RunError>);

/// One thread per slot runs `job` while `take` grants jobs; `job` returns
/// the CPU milliseconds it reports (0 when it reports none).
fn workers<S: Send>(
    slots: Vec<S>,
    take: &(dyn Fn() -> bool + Sync),
    ui: &Ui,
    job: impl Fn(&mut S) -> Result<f64, RunError> + Sync,
) -> Vec<Worker> {
    let job = &job;
    std::thread::scope(|s| {
        let handles: Vec<_> = slots
            .into_iter()
            .map(|mut slot| {
                s.spawn(move || {
                    let (mut ok, mut bad, mut cpu, mut err) = (0, 0, 0.0, None);
                    while take() {
                        match job(&mut slot) {
                            Ok(ms) => {
                                ok += 1;
                                cpu += ms;
                            }
                            Err(e) => {
                                bad += 1;
                                err.get_or_insert(e);
                            }
                        }
                        ui.inc();
                    }
                    (ok, bad, cpu, err)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or((0, 0, 0.0, Some(RunError::WorkerPanicked)))
            })
            .collect()
    })
}

/// Run `n` jobs with `c` workers.
fn batch(p: &mut Prepared, c: usize, n: usize, ui: &Ui) -> Batch {
    let next = AtomicUsize::new(0);
    let take = || next.fetch_add(1, Ordering::Relaxed) < n;
    let t = Instant::now();
    let cpu0 = exec::children_cpu_ms();
    let results: Vec<Worker> = match &mut p.how {
        How::Process {
            argv, hide_unified, ..
        } => {
            let (argv, hide) = (&*argv, *hide_unified);
            let slots = (0..c).map(|slot| &argv[slot.min(argv.len() - 1)]).collect();
            workers(slots, &take, ui, |a| {
                exec::process(a, hide, false).map(|_| 0.0)
            })
        }
        How::Pool {
            launchers, request, ..
        } => {
            let req = &*request;
            let slots = launchers.iter_mut().take(c).collect();
            workers(slots, &take, ui, |l| {
                exec::pool(l, req).map(|sample| sample.cpu_ms.unwrap_or(0.0))
            })
        }
    };
    let wall_s = t.elapsed().as_secs_f64();
    let mut b = Batch {
        wall_s,
        ..Batch::default()
    };
    let mut pool_cpu = 0.0;
    for (ok, bad, cpu, err) in results {
        b.done += ok;
        b.failures += bad;
        pool_cpu += cpu;
        if b.first_error.is_none() {
            b.first_error = err;
        }
    }
    b.cpu_ms = Some(match p.how {
        How::Pool { .. } => pool_cpu,
        How::Process { .. } => exec::children_cpu_ms() - cpu0,
    });
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_jobs_for_scales_with_workers() {
        assert_eq!(jobs_for(1, None, false), 64);
        assert_eq!(jobs_for(32, None, false), 256);
        assert_eq!(jobs_for(2, None, true), 12);
        assert_eq!(jobs_for(32, None, true), 96);
        assert_eq!(jobs_for(8, Some(4), false), 8);
    }
}
