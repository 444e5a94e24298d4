//! `skiff bench soak`: many jobs through the launcher pool, watching for
//! leaks (issue 8, section 5).
//!
//! The vendored busybox image is imported into a fresh store under
//! `WORKDIR/soak/store`; `K` `skiff launcher` processes are started on it;
//! `N` jobs go round-robin through them (job `i` to launcher `i mod K`, the
//! launchers working in parallel, one thread each). Most jobs are
//! `/bin/true`; every [`OUTPUT_EVERY`]-th one is `sh -c 'echo …; echo … >&2'`
//! with a memory and a pids limit. Every job's output is captured and
//! checked (exit code 0, the expected stdout and stderr).
//!
//! The jobs run in batches of `M`; after each batch, with every launcher
//! idle, one [`Sample`] is taken: each launcher's RSS (`VmRSS`), open
//! descriptors and mount count (its private namespace), the store's job
//! cgroups in every hierarchy, `ROOT/run` entries, `ROOT/leases` entries,
//! host-wide mounts and those beneath the store. The [`Summary`] compares
//! the first sample with the last, and [`SoakResults::ok`] is false when a
//! job failed or something leaked.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use compat::conformance::{Launch as _, LaunchError};
use runtime::error::error_chain;
use runtime::pool::Launcher;
use runtime::timing::ms_since;
use runtime::{JobSpec, Limits, NetworkMode};

use crate::error::{Error, IoContext, Result as BenchResult};
use crate::host::HostInfo;
use crate::Ui;

pub use crate::results::soak::{
    LauncherSample, Leftovers, Sample, SoakHost, SoakResults, Summary, SCHEMA,
};

/// Jobs of a default soak.
pub const DEFAULT_JOBS: usize = 10_000;
/// Launcher processes of a default soak.
pub const DEFAULT_LAUNCHERS: usize = 2;
/// Jobs between two samples by default.
pub const DEFAULT_EVERY: usize = 500;
/// Every this many jobs, one writes output and has limits.
pub const OUTPUT_EVERY: usize = 10;
/// The output job's memory limit (swap forbidden).
pub const OUTPUT_JOB_MEMORY: u64 = 64 << 20;
/// The output job's pids limit.
pub const OUTPUT_JOB_PIDS: i64 = 64;
/// A job that takes longer than this is killed (and counts as failed).
const JOB_TIMEOUT: Duration = Duration::from_secs(60);
/// Failed jobs whose error is kept, in full.
const KEPT_ERRORS: usize = 10;

/// Why a soak could not run (failed jobs and leaks are results, not errors).
#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    /// A benchmark-wide error: files, the image, bad options.
    #[error(transparent)]
    Bench(#[from] Error),
    /// A launcher process could not be started.
    #[error("cannot start launcher {index}")]
    Spawn {
        /// Which launcher (0-based).
        index: usize,
        /// Why.
        #[source]
        source: runtime::Error,
    },
    /// The store's cgroups cannot be found.
    #[error("cannot detect the store's cgroups")]
    Cgroups(#[source] runtime::Error),
    /// A launcher's untimed warm-up jobs failed: nothing would work.
    #[error("warm-up job on launcher {index} failed")]
    WarmUp {
        /// Which launcher (0-based).
        index: usize,
        /// Why.
        #[source]
        source: JobFailed,
    },
    /// A launcher thread panicked.
    #[error("the thread driving launcher {0} panicked")]
    Thread(usize),
}

/// Why one soak job failed (a result, counted and kept in the summary).
#[derive(Debug, thiserror::Error)]
pub enum JobFailed {
    /// The launcher could not run it.
    #[error("job {job}")]
    Launch {
        /// The job's number.
        job: usize,
        /// Why.
        #[source]
        source: LaunchError,
    },
    /// It exited non-zero.
    #[error(
        "job {job}: exit code {exit_code}{}{}: stderr {stderr:?}",
        if *oom_killed { " (OOM-killed)" } else { "" },
        if *timed_out { " (timed out)" } else { "" }
    )]
    Exit {
        /// The job's number.
        job: usize,
        /// Its exit code.
        exit_code: i32,
        /// Whether it was OOM-killed.
        oom_killed: bool,
        /// Whether its timeout fired.
        timed_out: bool,
        /// Its stderr.
        stderr: String,
    },
    /// It wrote something other than expected.
    #[error("job {job}: output {stdout:?} / {stderr:?}, expected {want_out:?} / {want_err:?}")]
    Output {
        /// The job's number.
        job: usize,
        /// Its stdout.
        stdout: String,
        /// Its stderr.
        stderr: String,
        /// The stdout expected.
        want_out: String,
        /// The stderr expected.
        want_err: String,
    },
}

/// The result type of a soak.
pub type Result<T, E = SoakError> = std::result::Result<T, E>;

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// The `skiff` binary whose `launcher` is soaked.
    pub skiff_exe: PathBuf,
    /// The image archive (default: the vendored busybox).
    pub image: Option<PathBuf>,
    /// Jobs in all.
    pub jobs: usize,
    /// Launcher processes.
    pub launchers: usize,
    /// Jobs between two samples.
    pub every: usize,
    /// Work directory; the soak uses `WORKDIR/soak/`.
    pub workdir: PathBuf,
}

impl Default for SoakConfig {
    fn default() -> Self {
        SoakConfig {
            skiff_exe: PathBuf::from("skiff"),
            image: None,
            jobs: DEFAULT_JOBS,
            launchers: DEFAULT_LAUNCHERS,
            every: DEFAULT_EVERY,
            workdir: PathBuf::from(crate::workdir::DEFAULT_WORKDIR),
        }
    }
}

/// The job numbered `i` (0-based), and its expected stdout and stderr.
pub fn job(i: usize) -> (JobSpec, String, String) {
    let mut job = JobSpec {
        network: NetworkMode::None,
        timeout: Some(JOB_TIMEOUT),
        ..JobSpec::default()
    };
    if i % OUTPUT_EVERY == OUTPUT_EVERY - 1 {
        job.command = vec![
            "sh".into(),
            "-c".into(),
            "echo soak-out-$1; echo soak-err-$1 >&2".into(),
            "sh".into(),
            i.to_string(),
        ];
        job.limits = Limits {
            memory_bytes: Some(OUTPUT_JOB_MEMORY),
            memory_swap_bytes: None,
            pids: Some(OUTPUT_JOB_PIDS),
            ..Limits::default()
        };
        (job, format!("soak-out-{i}\n"), format!("soak-err-{i}\n"))
    } else {
        job.command = vec!["/bin/true".into()];
        (job, String::new(), String::new())
    }
}

/// What one launcher's thread did in one batch.
#[derive(Debug, Default)]
struct BatchPart {
    /// Latencies of the jobs that succeeded, ms.
    latencies: Vec<f64>,
    /// The first errors.
    errors: Vec<String>,
    /// Failed jobs.
    failed: usize,
}

/// Run one job on `l`; its latency in ms, or why it failed.
fn one_job(l: &mut Launcher, image: &str, i: usize) -> std::result::Result<f64, JobFailed> {
    let (spec, want_out, want_err) = job(i);
    let t = Instant::now();
    let outcome = l
        .launch(image, &spec)
        .map_err(|source| JobFailed::Launch { job: i, source })?;
    let ms = ms_since(t);
    let r = &outcome.result;
    if r.exit_code != 0 {
        return Err(JobFailed::Exit {
            job: i,
            exit_code: r.exit_code,
            oom_killed: r.oom_killed,
            timed_out: r.timed_out,
            stderr: outcome.stderr,
        });
    }
    if outcome.stdout != want_out || outcome.stderr != want_err {
        return Err(JobFailed::Output {
            job: i,
            stdout: outcome.stdout,
            stderr: outcome.stderr,
            want_out,
            want_err,
        });
    }
    Ok(ms)
}

/// Number of entries of a directory (0 when it is missing).
fn entries(dir: &Path) -> usize {
    fs::read_dir(dir).map_or(0, |rd| rd.flatten().count())
}

/// Number of lines of a file (`None`: unreadable).
fn lines(path: &Path) -> Option<usize> {
    fs::read_to_string(path).ok().map(|t| t.lines().count())
}

/// `VmRSS` of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// One launcher's figures.
fn launcher_sample(pid: u32) -> LauncherSample {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    LauncherSample {
        pid,
        rss_kib: rss_kib(pid),
        fds: fs::read_dir(proc.join("fd"))
            .ok()
            .map(|rd| rd.flatten().count()),
        mounts: lines(&proc.join("mountinfo")),
    }
}

/// The mount points of `mountinfo` text at or beneath `root`.
pub fn mounts_beneath(mountinfo: &str, root: &Path) -> usize {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(root))
        .count()
}

/// What the store holds of its jobs now.
fn leftovers(root: &Path, cgroups: &dyn runtime::cgroups::CgroupDriver) -> Leftovers {
    let host = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    Leftovers {
        job_cgroups: cgroups
            .group_dirs()
            .iter()
            .map(|d| {
                fs::read_dir(d).map_or(0, |rd| {
                    rd.flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .count()
                })
            })
            .sum(),
        run_entries: entries(&root.join("run")),
        leases: entries(&root.join("leases")),
        store_mounts: mounts_beneath(&host, root),
    }
}

/// Everything at one point.
fn sample(
    launchers: &[Launcher],
    root: &Path,
    cgroups: &dyn runtime::cgroups::CgroupDriver,
    jobs_done: usize,
    elapsed_s: f64,
    jobs_per_s: f64,
    failures: usize,
) -> Sample {
    let left = leftovers(root, cgroups);
    Sample {
        jobs_done,
        elapsed_s,
        jobs_per_s,
        launchers: launchers.iter().map(|l| launcher_sample(l.pid())).collect(),
        job_cgroups: left.job_cgroups,
        run_entries: left.run_entries,
        leases: left.leases,
        host_mounts: lines(Path::new("/proc/self/mountinfo")).unwrap_or(0),
        store_mounts: left.store_mounts,
        failures,
    }
}

/// A fresh store: an old one (and its cgroups) is removed first.
fn fresh_store(dir: &Path) -> BenchResult<()> {
    let store = dir.join("store");
    if store.exists() {
        crate::trash::unmount_under(&store);
        if let Ok(root) = fs::canonicalize(&store) {
            compat::matrix::remove_group_cgroups(&root);
        }
        fs::remove_dir_all(&store).ctx("remove the old soak store", &store)?;
    }
    Ok(())
}

/// The leaks between the first and last samples and in `after_exit`.
fn find_leaks(first: &Sample, last: &Sample, after_exit: &Leftovers) -> Vec<String> {
    let mut leaks = Vec::new();
    for (n, (a, b)) in first.launchers.iter().zip(&last.launchers).enumerate() {
        if let (Some(x), Some(y)) = (a.fds, b.fds) {
            if y > x {
                leaks.push(format!("launcher {n}: open fds grew from {x} to {y}"));
            }
        }
        if let (Some(x), Some(y)) = (a.mounts, b.mounts) {
            if y > x {
                leaks.push(format!("launcher {n}: mounts grew from {x} to {y}"));
            }
        }
        if b.fds.is_none() || b.mounts.is_none() {
            leaks.push(format!("launcher {n}: gone before the last sample"));
        }
    }
    if last.store_mounts > first.store_mounts {
        leaks.push(format!(
            "host mounts beneath the store grew from {} to {}",
            first.store_mounts, last.store_mounts
        ));
    }
    for (what, after_last, after_exit) in [
        ("job cgroups", last.job_cgroups, after_exit.job_cgroups),
        ("ROOT/run entries", last.run_entries, after_exit.run_entries),
        ("leases", last.leases, after_exit.leases),
        ("store mounts", last.store_mounts, after_exit.store_mounts),
    ] {
        if after_last > 0 {
            leaks.push(format!("{after_last} {what} left after the last job"));
        }
        if after_exit > 0 {
            leaks.push(format!(
                "{after_exit} {what} left after the launchers exited"
            ));
        }
    }
    leaks
}

/// Run the soak; `on_sample` sees the baseline and each sample as it is
/// taken (to print it).
pub fn run(cfg: &SoakConfig, ui: &Ui, on_sample: &mut dyn FnMut(&Sample)) -> Result<SoakResults> {
    if cfg.jobs == 0 || cfg.launchers == 0 || cfg.every == 0 {
        return Err(
            Error::Usage("--jobs, --launchers and --every must be at least 1".into()).into(),
        );
    }
    let (_lock, dir, archive) =
        crate::workdir::private_dir(&cfg.workdir, "soak", cfg.image.as_ref())?;
    let date = crate::host::now_rfc3339();

    ui.spin("importing the image into a fresh soak store");
    fresh_store(&dir)?;
    let image = crate::launch::prepare::bench_image(&dir, &archive)?;
    ui.clear();
    let root = fs::canonicalize(&image.store_root).ctx("resolve", &image.store_root)?;
    let cgroups = runtime::cgroups::detect(&runtime::cgroups::group_key(&root))
        .map_err(SoakError::Cgroups)?;

    let hybrid = Path::new("/sys/fs/cgroup/unified").is_dir()
        || (cgroups.version() == runtime::cgroups::CgroupVersion::V1
            && fs::read_to_string("/proc/self/mountinfo")
                .is_ok_and(|t| t.lines().any(|l| l.contains(" - cgroup2 "))));
    let mut host = SoakHost {
        info: HostInfo::detect(&dir),
        cgroup_driver: match cgroups.version() {
            runtime::cgroups::CgroupVersion::V1 => "v1".into(),
            runtime::cgroups::CgroupVersion::V2 => "v2".into(),
        },
        hybrid,
        favordynmods_in_mounts: runtime::cgroups::favordynmods_active(),
        load_before: String::new(),
        load_after: String::new(),
    };

    let mut launchers = Vec::with_capacity(cfg.launchers);
    for index in 0..cfg.launchers {
        let log = dir.join(format!("launcher-{index}.log"));
        let err = fs::File::create(&log).ctx("create", &log)?;
        let mut cmd = Command::new(&cfg.skiff_exe);
        cmd.arg("--root")
            .arg(&root)
            .arg("launcher")
            .stderr(Stdio::from(err));
        launchers.push(Launcher::spawn(cmd).map_err(|source| SoakError::Spawn { index, source })?);
    }

    // Untimed, uncounted: one job of each kind per launcher, so that the
    // baseline shows launchers that have started up and run both paths.
    for (index, l) in launchers.iter_mut().enumerate() {
        for i in [0, OUTPUT_EVERY - 1] {
            one_job(l, &image.id, i).map_err(|source| SoakError::WarmUp { index, source })?;
        }
    }
    let baseline = sample(&launchers, &root, cgroups.as_ref(), 0, 0.0, 0.0, 0);
    on_sample(&baseline);
    host.load_before = crate::host::load_average();

    let mut latencies: Vec<f64> = Vec::with_capacity(cfg.jobs);
    let mut failures = 0usize;
    let mut errors: Vec<String> = Vec::new();
    let mut samples = Vec::new();
    let start = Instant::now();
    let mut done = 0usize;
    let mut last_t = 0.0f64;
    let k = launchers.len();
    while done < cfg.jobs {
        let batch_end = (done + cfg.every).min(cfg.jobs);
        let image_id = image.id.as_str();
        let outcomes: Vec<std::thread::Result<BatchPart>> = std::thread::scope(|s| {
            let handles: Vec<_> = launchers
                .iter_mut()
                .enumerate()
                .map(|(n, l)| {
                    s.spawn(move || {
                        let mut part = BatchPart::default();
                        for i in (done..batch_end).filter(|i| i % k == n) {
                            match one_job(l, image_id, i) {
                                Ok(ms) => part.latencies.push(ms),
                                Err(e) => {
                                    part.failed += 1;
                                    if part.errors.len() < KEPT_ERRORS {
                                        part.errors.push(error_chain(&e));
                                    }
                                }
                            }
                        }
                        part
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join()).collect()
        });
        for (n, o) in outcomes.into_iter().enumerate() {
            let part = o.map_err(|_| SoakError::Thread(n))?;
            latencies.extend(part.latencies);
            failures += part.failed;
            for e in part.errors {
                if errors.len() < KEPT_ERRORS {
                    ui.note(format!("failed: {e}"));
                    errors.push(e);
                }
            }
        }
        let jobs_in_batch = batch_end - done;
        done = batch_end;
        let now = start.elapsed().as_secs_f64();
        let rate = jobs_in_batch as f64 / (now - last_t).max(1e-9);
        last_t = now;
        let s = sample(
            &launchers,
            &root,
            cgroups.as_ref(),
            done,
            now,
            rate,
            failures,
        );
        on_sample(&s);
        samples.push(s);
    }
    let wall_s = start.elapsed().as_secs_f64();
    host.load_after = crate::host::load_average();

    let mut launcher_exits = Vec::new();
    for l in launchers {
        launcher_exits.push(match l.finish() {
            Ok(s) => s.to_string(),
            Err(e) => format!("error: {}", error_chain(&e)),
        });
    }
    let after_exit = leftovers(&root, cgroups.as_ref());

    let (first, last) = match (samples.first(), samples.last()) {
        (Some(f), Some(l)) => (f.clone(), l.clone()),
        _ => (baseline.clone(), baseline.clone()),
    };
    let mut leaks = find_leaks(&first, &last, &after_exit);
    for (n, e) in launcher_exits.iter().enumerate() {
        if e != "exit status: 0" {
            leaks.push(format!("launcher {n} exited badly: {e}"));
        }
    }
    let summary = Summary {
        jobs: done,
        failures,
        errors,
        wall_s,
        jobs_per_s: done as f64 / wall_s.max(1e-9),
        latency_median_ms: crate::stats::percentile(&latencies, 50.0),
        latency_p99_ms: crate::stats::percentile(&latencies, 99.0),
        rss_first_kib: first.launchers.iter().map(|l| l.rss_kib).collect(),
        rss_last_kib: last.launchers.iter().map(|l| l.rss_kib).collect(),
        fds_first: first.launchers.iter().map(|l| l.fds).collect(),
        fds_last: last.launchers.iter().map(|l| l.fds).collect(),
        mounts_first: first.launchers.iter().map(|l| l.mounts).collect(),
        mounts_last: last.launchers.iter().map(|l| l.mounts).collect(),
        host_mounts_first: first.host_mounts,
        host_mounts_last: last.host_mounts,
        job_cgroups_left: last.job_cgroups,
        run_entries_left: last.run_entries,
        leases_left: last.leases,
        store_mounts_left: last.store_mounts,
        after_exit,
        launcher_exits,
        leaks,
    };
    // The launchers are gone: their group cgroups would otherwise stay.
    compat::matrix::remove_group_cgroups(&root);
    let (true_job, _, _) = job(0);
    let (out_job, _, _) = job(OUTPUT_EVERY - 1);
    Ok(SoakResults {
        benchmark: "soak".into(),
        schema: SCHEMA,
        date,
        host,
        image: archive,
        jobs: cfg.jobs,
        launchers: cfg.launchers,
        every: cfg.every,
        job_mix: vec![
            format!("{} (no limits, network none)", true_job.command.join(" ")),
            format!(
                "every {OUTPUT_EVERY}th: {:?}, memory {} MiB without swap, pids {OUTPUT_JOB_PIDS}, network none",
                out_job.command,
                OUTPUT_JOB_MEMORY >> 20
            ),
        ],
        baseline,
        samples,
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_job_mix() {
        let (j, out, err) = job(0);
        assert_eq!(j.command, ["/bin/true"]);
        assert!(out.is_empty() && err.is_empty());
        assert!(!j.limits.any());
        let (j, out, err) = job(OUTPUT_EVERY - 1);
        assert_eq!(j.command[0], "sh");
        assert_eq!(out, format!("soak-out-{}\n", OUTPUT_EVERY - 1));
        assert_eq!(err, format!("soak-err-{}\n", OUTPUT_EVERY - 1));
        assert_eq!(j.limits.memory_bytes, Some(OUTPUT_JOB_MEMORY));
        assert_eq!(j.limits.pids, Some(OUTPUT_JOB_PIDS));
    }

    #[test]
    fn test_mounts_beneath() {
        let info = "22 1 8:1 / / rw - ext4 /dev/vda rw\n\
                    30 22 0:40 / /var/s/store/x rw - overlay overlay rw\n\
                    31 22 0:41 / /var/s/storex rw - tmpfs tmpfs rw\n";
        assert_eq!(mounts_beneath(info, Path::new("/var/s/store")), 1);
    }

    fn s(fds: usize, mounts: usize, cg: usize) -> Sample {
        Sample {
            jobs_done: 0,
            elapsed_s: 0.0,
            jobs_per_s: 0.0,
            launchers: vec![LauncherSample {
                pid: 1,
                rss_kib: Some(1),
                fds: Some(fds),
                mounts: Some(mounts),
            }],
            job_cgroups: cg,
            run_entries: 0,
            leases: 0,
            host_mounts: 0,
            store_mounts: 0,
            failures: 0,
        }
    }

    #[test]
    fn test_find_leaks() {
        let none = Leftovers::default();
        assert!(find_leaks(&s(5, 9, 0), &s(5, 9, 0), &none).is_empty());
        assert!(find_leaks(&s(6, 9, 0), &s(5, 8, 0), &none).is_empty());
        let l = find_leaks(&s(5, 9, 0), &s(6, 10, 2), &none);
        assert_eq!(l.len(), 3, "{l:?}");
        let l = find_leaks(
            &s(5, 9, 0),
            &s(5, 9, 0),
            &Leftovers {
                leases: 1,
                ..Leftovers::default()
            },
        );
        assert_eq!(l.len(), 1, "{l:?}");
    }
}
