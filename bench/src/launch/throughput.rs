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
//! the level divided by the jobs; for the pool, the launchers' bench
//! cgroup's usage over the level (launchers, intermediates, inits, jobs,
//! cleanup and the warm pool's refills: after the last job the benchmark
//! waits for the launchers to go idle, and counts that too), or without a
//! bench cgroup the launchers' CPU clocks plus the job cgroups' CPU time.
//! For the skiff contenders the level also records that CPU by process
//! and how its jobs used warm sandboxes.
//!
//! The warm pool (`skiff-warm`) runs at least 10 times its whole stock
//! (launchers × sandboxes each) per level, so that sustained load has to
//! refill it many times; each worker owns one launcher and its stock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use runtime::error::error_chain;

use super::cpu::{self, CpuSums};
use super::exec::{self, Sample};
use super::prepare::{How, Prepared};
use crate::error::RunError;
use crate::results::launch::{Level, ThroughputResult, WarmCounts};
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

/// Jobs per level for a contender: [`jobs_for`], and for the warm pool
/// (unless `fixed`) at least 10 times its stock at that level.
pub fn jobs_for_stock(c: usize, fixed: Option<usize>, quick: bool, stock: Option<usize>) -> usize {
    let n = jobs_for(c, fixed, quick);
    match (fixed, stock) {
        (None, Some(k)) => n.max(10 * k * c),
        _ => n,
    }
}

/// The outcome of one batch.
#[derive(Debug, Default)]
struct Batch {
    wall_s: f64,
    done: usize,
    failures: usize,
    cpu_ms: Option<f64>,
    first_error: Option<RunError>,
    warm: WarmCounts,
    sums: Option<CpuSums>,
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
    let stock = p.warm_stock();
    for &c in levels {
        ui.message(format!("{name}: concurrency {c}"));
        p.ensure_launchers(c)?;
        let warm = batch(p, c, c, ui);
        if warm.done == 0 {
            return Err(warm.first_error.unwrap_or(RunError::NoJobRan(c)));
        }
        let n = jobs_for_stock(c, fixed, quick, stock);
        let b = batch(p, c, n, ui);
        if b.done == 0 {
            return Err(b.first_error.unwrap_or(RunError::NoJobRan(c)));
        }
        let pool = p.which.is_pool();
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
            warm: p.which.is_skiff().then_some(b.warm),
            cpu_breakdown: b.sums.and_then(|s| {
                s.breakdown(
                    pool,
                    if pool {
                        "the launchers' bench cgroup over the level, refills after the last \
                         job included"
                    } else {
                        "getrusage(RUSAGE_CHILDREN) over the level"
                    },
                )
            }),
        });
    }
    let how = match &p.how {
        How::Pool { warm: Some(k), .. } => format!(
            "C `skiff launcher --warm {k}` processes, each serving one request at a time from \
             its own stock of {k}"
        ),
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

/// One worker's tally.
#[derive(Debug, Default)]
struct Worker {
    ok: usize,
    bad: usize,
    /// CPU ms the jobs reported (the pool without a bench cgroup).
    cpu: f64,
    /// The job cgroups' CPU ms.
    job_cpu: f64,
    /// `skiff run`: the skiff processes' own CPU ms.
    own_cpu: f64,
    warm: WarmCounts,
    err: Option<RunError>,
}

/// One thread per slot runs `job` while `take` grants jobs.
fn workers<S: Send>(
    slots: Vec<S>,
    take: &(dyn Fn() -> bool + Sync),
    ui: &Ui,
    job: impl Fn(&mut S) -> Result<Sample, RunError> + Sync,
) -> Vec<Worker> {
    let job = &job;
    std::thread::scope(|s| {
        let handles: Vec<_> = slots
            .into_iter()
            .map(|mut slot| {
                s.spawn(move || {
                    let mut w = Worker::default();
                    while take() {
                        match job(&mut slot) {
                            Ok(sample) => {
                                w.ok += 1;
                                w.cpu += sample.cpu_ms.unwrap_or(0.0);
                                w.job_cpu += sample.job_cpu_ms.unwrap_or(0.0);
                                w.own_cpu += sample.own_cpu_ms.unwrap_or(0.0);
                                w.warm.add(sample.warm);
                            }
                            Err(e) => {
                                w.bad += 1;
                                w.err.get_or_insert(e);
                            }
                        }
                        ui.inc();
                    }
                    w
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| Worker {
                    err: Some(RunError::WorkerPanicked),
                    ..Worker::default()
                })
            })
            .collect()
    })
}

/// The launchers' CPU clocks (summed) and the bench cgroup's usage, in ms.
fn pool_counters(p: &Prepared) -> (f64, Option<f64>) {
    let clocks = p
        .launcher_pids()
        .into_iter()
        .filter_map(exec::process_cpu)
        .map(runtime::timing::ms)
        .sum();
    (clocks, p.cgroup().and_then(|c| c.usage_ms()))
}

/// Wait until the pool's launchers are idle (refills done).
fn settle(p: &Prepared) {
    if p.which.is_pool() {
        cpu::settle(
            &|| {
                let (clocks, cg) = pool_counters(p);
                Some(cg.unwrap_or(clocks))
            },
            Duration::from_secs(10),
        );
    }
}

/// Run `n` jobs with `c` workers.
fn batch(p: &mut Prepared, c: usize, n: usize, ui: &Ui) -> Batch {
    settle(p);
    let pool0 = pool_counters(p);
    let next = AtomicUsize::new(0);
    let take = || next.fetch_add(1, Ordering::Relaxed) < n;
    let t = Instant::now();
    let cpu0 = exec::children_cpu_ms();
    let results: Vec<Worker> = match &mut p.how {
        How::Process {
            argv,
            hide_unified,
            skiff_json,
        } => {
            let (argv, hide, json) = (&*argv, *hide_unified, *skiff_json);
            let slots = (0..c).map(|slot| &argv[slot.min(argv.len() - 1)]).collect();
            workers(slots, &take, ui, |a| exec::process(a, hide, json))
        }
        How::Pool {
            launchers,
            request,
            cgroup,
            ..
        } => {
            let (req, cg) = (&*request, cgroup.as_ref());
            let slots = launchers.iter_mut().take(c).collect();
            workers(slots, &take, ui, |l| exec::pool(l, req, cg))
        }
    };
    let wall_s = t.elapsed().as_secs_f64();
    let rusage = exec::children_cpu_ms() - cpu0;
    // The work after the last replies (teardown, refills) belongs to the level.
    settle(p);
    let pool1 = pool_counters(p);
    let mut b = Batch {
        wall_s,
        ..Batch::default()
    };
    let (mut reported, mut job_cpu, mut own_cpu) = (0.0, 0.0, 0.0);
    for w in results {
        b.done += w.ok;
        b.failures += w.bad;
        reported += w.cpu;
        job_cpu += w.job_cpu;
        own_cpu += w.own_cpu;
        b.warm.merge(&w.warm);
        if b.first_error.is_none() {
            b.first_error = w.err;
        }
    }
    let pool_total = match (pool0.1, pool1.1) {
        (Some(a), Some(z)) => Some(z - a),
        _ => None,
    };
    b.cpu_ms = Some(match p.how {
        How::Pool { .. } => pool_total.unwrap_or(reported),
        How::Process { .. } => rusage,
    });
    if p.which.is_skiff() {
        b.sums = Some(match p.how {
            How::Pool { .. } => CpuSums {
                jobs: b.done,
                total_ms: pool_total,
                own_ms: pool1.0 - pool0.0,
                job_ms: job_cpu,
            },
            How::Process { .. } => CpuSums {
                jobs: b.done,
                total_ms: Some(rusage),
                own_ms: own_cpu,
                job_ms: job_cpu,
            },
        });
    }
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
        assert_eq!(jobs_for_stock(32, None, false, Some(2)), 640);
        assert_eq!(jobs_for_stock(1, None, false, Some(2)), 64);
        assert_eq!(jobs_for_stock(32, Some(100), false, Some(2)), 100);
        assert_eq!(jobs_for_stock(32, None, false, None), 256);
    }
}
