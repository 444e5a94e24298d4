//! The launch-latency benchmark (`skiff bench launch`).
//!
//! The same job (by default the vendored busybox image running `/bin/true`,
//! with a 64 MiB memory limit, a pids limit of 64 and no network) is started
//! through every contender that is present on this host, round by round and
//! interleaved (A B C A B C …, after untimed warm-up rounds), so that drift on
//! a busy machine hits all of them alike:
//!
//! | name | what one launch is |
//! | --- | --- |
//! | `skiff` | `skiff run --json …` as a whole process (libcontainer path) |
//! | `skiff-pool` | one request to an already running `skiff launcher` (no process start for skiff) |
//! | `skiff-warm` | the same to a `skiff launcher --warm N`: a waiting sandbox runs the job |
//! | `runc`, `crun` | `RUNTIME run` of a bundle written by skiff's own spec builder, same rootfs |
//! | `podman` | `podman run --rm --network none` from a private storage root |
//! | `docker` | `docker run --rm --network none` on the engine of this host |
//! | `floor` | `unshare -m -p -f -n -u -i --mount-proc true`: the kernel's floor |
//! | `true` | plain `/bin/true`: what starting any process costs |
//!
//! Each launch records its wall-clock time, its CPU time (the children's
//! `getrusage` delta; for the pool, the launcher's CPU clock plus the job
//! cgroup's) and, for skiff, the phases of the launch, how it used warm
//! sandboxes and its CPU broken down by process (see [`cpu`]). Then, unless
//! disabled, throughput: jobs per second at each concurrency level, for the
//! contenders that can run side by side (see [`throughput`]).
//!
//! [`config`] says what to run; [`prepare`] readies each contender (store
//! import, bundles, `docker load`, `podman load`); [`exec`] times one
//! launch; [`throughput`] runs launches side by side; [`goals`] judges the
//! results. They produce [`crate::results::launch`]'s types, which the
//! report module prints and writes as `launch.json` plus SVG and PNG plots
//! (see `docs/bench.md`).

pub mod config;
pub mod cpu;
pub mod exec;
pub mod goals;
pub mod prepare;
pub mod throughput;

use std::collections::BTreeMap;
use std::fs;

use runtime::error::error_chain;

use crate::error::{Error, IoContext, Result};
use crate::host::HostInfo;
use crate::results::Skipped;
use crate::stats::{percentile, Summary};
use crate::ui::Ui;

use self::cpu::CpuSums;
use self::exec::{Mark, Sample};
use self::prepare::Prepared;

pub use self::config::{
    Contender, LaunchConfig, DEFAULT_CONCURRENCY, DEFAULT_MEMORY, DEFAULT_PIDS, DEFAULT_ROUNDS,
    DEFAULT_WARMUP, QUICK_ROUNDS, QUICK_WARMUP, WARM_STOCK,
};
pub use crate::results::launch::{
    CpuBreakdown, CpuPart, Goal, JobInfo, LatencyResult, LaunchHost, LaunchResults, Level,
    PhaseBreakdown, PhaseMedian, ThroughputResult, WarmCounts, SCHEMA,
};

/// Per-contender samples gathered during the rounds.
#[derive(Debug, Default)]
struct Collected {
    wall: Vec<f64>,
    cpu: Vec<f64>,
    phases: BTreeMap<usize, Vec<f64>>,
    failed: Option<String>,
    /// skiff: how each timed job ran.
    warm: WarmCounts,
    /// skiff: the job cgroups' CPU ms, summed.
    job_cpu: f64,
    /// `skiff run`: the skiff processes' own CPU ms, summed.
    own_cpu: f64,
    /// The pool: each timed request's [`Mark`].
    marks: Vec<Mark>,
}

/// Where the breakdown's total comes from, per kind of contender.
const POOL_TOTAL: &str = "the launchers' bench cgroup (cpuacct.usage, hierarchical), from \
                          one request to the next: the refill after a job counts for it";
const RUN_TOTAL: &str = "getrusage(RUSAGE_CHILDREN) of each `skiff run`: it and every \
                         process it waited for";

/// Run the launch benchmark.
pub fn run(cfg: &LaunchConfig, ui: &Ui) -> Result<LaunchResults> {
    if cfg.rounds == 0 {
        return Err(Error::Usage("--rounds must be at least 1".into()));
    }
    if cfg.command.is_empty() {
        return Err(Error::Usage("the job needs a command".into()));
    }
    if cfg.throughput && cfg.concurrency.contains(&0) {
        return Err(Error::Usage("concurrency levels must be at least 1".into()));
    }
    fs::create_dir_all(&cfg.workdir).ctx("create", &cfg.workdir)?;
    let workdir = fs::canonicalize(&cfg.workdir).ctx("resolve", &cfg.workdir)?;
    let _lock = crate::workdir::lock(&workdir)?;
    let dir = workdir.join("launch");
    fs::create_dir_all(&dir).ctx("create", &dir)?;
    let archive = match &cfg.image {
        Some(p) => p.clone(),
        None => crate::workdir::default_image().ok_or_else(|| {
            Error::Usage(
                "no image: vendor-images/busybox.tar is not here; give --image ARCHIVE".into(),
            )
        })?,
    };
    let archive = fs::canonicalize(&archive).ctx("find the image", &archive)?;
    let mut notes = Vec::new();

    ui.spin("probing the host (cgroup attach cost)");
    let mut host_facts = prepare::host_facts(&dir, if cfg.quick { 3 } else { 7 });
    host_facts.notes = cfg.host_notes.clone();
    ui.clear();

    ui.spin(format!(
        "importing {} into the bench store",
        archive.display()
    ));
    let image = prepare::bench_image(&dir, &archive)?;
    ui.clear();

    let wanted: Vec<Contender> = cfg
        .contenders
        .clone()
        .unwrap_or_else(|| Contender::ALL.to_vec());
    let max_slots = if cfg.throughput {
        cfg.concurrency.iter().copied().max().unwrap_or(1)
    } else {
        1
    };
    // Before `ready`: dropped after the launchers are (on failure too).
    let mut cgroups = None;
    if wanted.iter().any(|c| c.is_pool()) {
        match cpu::BenchCgroups::new() {
            Ok(g) => cgroups = Some(g),
            Err(e) => notes.push(format!(
                "no bench cgroup for the pool launchers ({}): their CPU breakdown has no \
                 total, only the launcher's clock and the job cgroup",
                error_chain(&e)
            )),
        }
    }
    let mut ready: Vec<Prepared> = Vec::new();
    let mut skipped = Vec::new();
    for c in Contender::ALL.into_iter().filter(|c| wanted.contains(c)) {
        ui.spin(format!("preparing {}", c.name()));
        let p = prepare::contender(c, cfg, &dir, &image, max_slots, cgroups.as_mut());
        ui.clear();
        match p {
            Ok(p) => ready.push(p),
            Err(why) => {
                let reason = error_chain(&why);
                ui.note(format!("skipping {}: {reason}", c.name()));
                skipped.push(Skipped {
                    name: c.name().into(),
                    reason,
                });
            }
        }
    }
    if ready.is_empty() {
        return Err(Error::Usage("no contender can run".into()));
    }
    if cfg.contenders.is_some() && !ready.iter().any(|p| p.which == Contender::Skiff) {
        notes.push("skiff run was not among the contenders: no ratios to skiff".into());
    }

    // Latency: interleaved rounds.
    let load_before = crate::host::load_average();
    let mut collected: Vec<Collected> = ready.iter().map(|_| Collected::default()).collect();
    let total = cfg.warmup + cfg.rounds;
    ui.steps((total * ready.len()) as u64, "launch latency");
    for round in 0..total {
        let warm = round < cfg.warmup;
        let label = if warm {
            format!("warm-up {}/{}", round + 1, cfg.warmup)
        } else {
            format!("round {}/{}", round - cfg.warmup + 1, cfg.rounds)
        };
        for (p, col) in ready.iter_mut().zip(collected.iter_mut()) {
            if col.failed.is_some() {
                ui.inc();
                continue;
            }
            ui.message(format!("{label}: {}", p.which.name()));
            if !cfg.pause.is_zero() {
                std::thread::sleep(cfg.pause);
            }
            match p.launch(0) {
                Ok(s) => {
                    if !warm {
                        record(col, &s);
                    }
                }
                Err(e) => {
                    if p.which.is_skiff() {
                        ui.clear();
                        return Err(Error::SkiffFailed {
                            round,
                            what: p.which.name(),
                            source: Box::new(e),
                        });
                    }
                    col.failed = Some(ui.dropped(p.which.name(), round, &e));
                }
            }
            ui.inc();
        }
    }
    ui.clear();
    // The pool's last timed job ends at a mark taken once its launcher is
    // idle again (teardown and refill done).
    for (p, col) in ready.iter().zip(collected.iter_mut()) {
        if let (Some(&pid), false) = (p.launcher_pids().first(), col.marks.is_empty()) {
            let cg = p.cgroup();
            cpu::settle(
                &|| {
                    cg.and_then(|c| c.usage_ms())
                        .or(Some(Mark::now(pid, None).launcher_ms))
                },
                std::time::Duration::from_secs(3),
            );
            col.marks.push(Mark::now(pid, cg));
        }
    }

    // Throughput.
    let mut tput = Vec::new();
    if cfg.throughput {
        let runnable: Vec<usize> = ready
            .iter()
            .zip(&collected)
            .enumerate()
            .filter(|(_, (p, c))| p.which.in_throughput() && c.failed.is_none())
            .map(|(i, _)| i)
            .collect();
        let jobs_total: usize = runnable
            .iter()
            .map(|&i| {
                let stock = ready[i].warm_stock();
                cfg.concurrency
                    .iter()
                    .map(|c| {
                        throughput::jobs_for_stock(*c, cfg.jobs_per_level, cfg.quick, stock) + c
                    })
                    .sum::<usize>()
            })
            .sum();
        ui.steps(jobs_total as u64, "throughput");
        for i in runnable {
            let p = &mut ready[i];
            match throughput::measure(p, &cfg.concurrency, cfg.jobs_per_level, cfg.quick, ui) {
                Ok(r) => tput.push(r),
                Err(e) => {
                    let e = error_chain(&e);
                    ui.note(format!("{} throughput failed: {e}", p.which.name()));
                    notes.push(format!("{} throughput failed: {e}", p.which.name()));
                }
            }
        }
        ui.clear();
    }
    let load_after = crate::host::load_average();
    host_facts.load_before = load_before;
    host_facts.load_after = load_after;

    // Tear down (launchers, podman's mounts), outside every timed window.
    let mut teardown_notes = Vec::new();
    for p in ready.iter_mut() {
        teardown_notes.extend(p.finish());
    }
    if let Some(mut g) = cgroups.take() {
        for d in g.remove() {
            teardown_notes.push(format!("could not remove the bench cgroup {}", d.display()));
        }
    }
    notes.extend(teardown_notes);

    // Summaries.
    let median_of = |c: Contender| -> Option<f64> {
        ready
            .iter()
            .zip(&collected)
            .find(|(p, col)| p.which == c && col.failed.is_none())
            .and_then(|(_, col)| Summary::of(&col.wall))
            .map(|s| s.median)
    };
    let skiff_median = median_of(Contender::Skiff).filter(|m| *m > 0.0);
    let floor_median = median_of(Contender::Floor).filter(|m| *m > 0.0);
    let mut contenders = Vec::new();
    let mut phases = Vec::new();
    for (p, mut col) in ready.iter().zip(collected) {
        let cpu_breakdown = breakdown_of(p, &mut col);
        if let Some(why) = col.failed {
            skipped.push(Skipped {
                name: p.which.name().into(),
                reason: why,
            });
            continue;
        }
        let Some(s) = Summary::of(&col.wall) else {
            continue;
        };
        if let Some(b) = exec::breakdown(p.which, &col.phases, s.median) {
            phases.push(b);
        }
        contenders.push(LatencyResult {
            name: p.which.name().into(),
            command: p.command.clone(),
            version: p.version.clone(),
            median_ms: s.median,
            p95_ms: percentile(&col.wall, 95.0).unwrap_or(s.max),
            p99_ms: percentile(&col.wall, 99.0).unwrap_or(s.max),
            min_ms: s.min,
            max_ms: s.max,
            mean_ms: s.mean,
            ratio_vs_skiff: skiff_median.map(|m| s.median / m),
            ratio_vs_floor: floor_median.map(|m| s.median / m),
            cpu_median_ms: Summary::of(&col.cpu).map(|c| c.median),
            cpu_samples_ms: col.cpu,
            cpu_source: p.cpu_source().into(),
            samples_ms: col.wall,
            warm: p.which.is_skiff().then_some(col.warm),
            cpu_breakdown,
        });
    }
    notes.push(
        "wall-clock from spawning the command (or sending the pool request) to its exit (or \
         the reply); every launch runs the same job with the same limits; rounds interleave \
         the contenders"
            .into(),
    );
    if contenders
        .iter()
        .any(|c| c.name == "docker" || c.name == "podman")
    {
        notes.push(
            "docker's and podman's CPU time is their client's (and podman's children it \
             waited for): the engine's and conmon's work is not counted"
                .into(),
        );
    }
    let mut results = LaunchResults {
        benchmark: "launch".into(),
        schema: SCHEMA,
        date: crate::host::now_rfc3339(),
        host: HostInfo::detect(&dir),
        host_facts,
        job: JobInfo {
            archive,
            image_id: image.id.clone(),
            command: cfg.command.clone(),
            memory_bytes: cfg.memory_bytes,
            pids_limit: cfg.pids_limit,
            network: "none".into(),
        },
        rounds: cfg.rounds,
        warmup: cfg.warmup,
        contenders,
        skipped,
        phases,
        throughput: tput,
        goals: Vec::new(),
        plots: Vec::new(),
        notes,
    };
    results.goals = goals::goals(&results);
    Ok(results)
}

fn record(col: &mut Collected, s: &Sample) {
    col.wall.push(s.wall_ms);
    if let Some(c) = s.cpu_ms {
        col.cpu.push(c);
    }
    col.warm.add(s.warm);
    col.job_cpu += s.job_cpu_ms.unwrap_or(0.0);
    col.own_cpu += s.own_cpu_ms.unwrap_or(0.0);
    if let Some(m) = s.mark {
        col.marks.push(m);
    }
    for (i, v) in s.phases.iter().enumerate() {
        col.phases.entry(i).or_default().push(*v);
    }
}

/// A skiff contender's CPU per job by process, over the timed rounds; for
/// the pool with a bench cgroup, its per-launch CPU samples become the
/// cgroup's usage from one request to the next.
fn breakdown_of(p: &Prepared, col: &mut Collected) -> Option<CpuBreakdown> {
    if !p.which.is_skiff() || col.wall.is_empty() {
        return None;
    }
    if p.which == Contender::Skiff {
        return CpuSums {
            jobs: col.wall.len(),
            total_ms: Some(col.cpu.iter().sum()),
            own_ms: col.own_cpu,
            job_ms: col.job_cpu,
        }
        .breakdown(false, RUN_TOTAL);
    }
    // The pool: n timed marks, then the closing one.
    let n = col.wall.len();
    if col.marks.len() != n + 1 {
        return None;
    }
    let (first, last) = (col.marks[0], col.marks[n]);
    let total = match (first.cgroup_ms, last.cgroup_ms) {
        (Some(a), Some(b)) => {
            let per: Option<Vec<f64>> = col
                .marks
                .windows(2)
                .map(|w| Some(w[1].cgroup_ms? - w[0].cgroup_ms?))
                .collect();
            if let Some(per) = per {
                col.cpu = per;
            }
            Some(b - a)
        }
        _ => None,
    };
    CpuSums {
        jobs: n,
        total_ms: total,
        own_ms: last.launcher_ms - first.launcher_ms,
        job_ms: col.job_cpu,
    }
    .breakdown(true, POOL_TOTAL)
}
