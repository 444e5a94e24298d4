//! One pool round: the same jobs on `N` bare `skiff launcher` processes
//! driven directly ([`runtime::pool::Launcher`], one thread each, taking the
//! next job from a shared counter as the worker's free slots do), with the
//! very request the worker's slots send.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use runtime::error::error_chain;
use runtime::job::JobSpec;
use runtime::pool::{Launcher, Reply, Request, Sink, DEFAULT_OUTPUT_CAP};

use super::results::{Percentiles, PoolRound};
use super::{steady_rate, QueueBenchError, Result, Round, KEPT_ERRORS};
use crate::error::IoContext;

/// The worker's job timeout when a job names none (`skiff serve`'s 3600 s).
const JOB_TIMEOUT: Duration = Duration::from_secs(3600);

/// The request for job `i`: what `skiff serve` sends its launcher for a
/// job of the same image and command (name, default network, the
/// default timeout, stdout and stderr to files beneath `--output-dir`,
/// the default output cap, the reply before the teardown).
pub(super) fn request(image: &str, command: &[String], tag: &str, i: usize) -> Request {
    Request {
        image: image.to_string(),
        job: JobSpec {
            name: format!("{tag}-{i}"),
            command: command.to_vec(),
            timeout: Some(JOB_TIMEOUT),
            ..JobSpec::default()
        },
        stdout: Some(Sink::Path(format!("{tag}-{i}.stdout").into())),
        stderr: Some(Sink::Path(format!("{tag}-{i}.stderr").into())),
        output_cap: Some(DEFAULT_OUTPUT_CAP),
        reply_before_cleanup: true,
        ..Request::default()
    }
}

/// What one launcher's thread did.
#[derive(Debug, Default)]
struct Part {
    /// Seconds from the round's start at which each job ended.
    ends: Vec<f64>,
    /// Each successful job's request → reply, ms.
    latencies: Vec<f64>,
    errors: Vec<String>,
}

/// Why job `i` failed, if it did.
fn check(i: usize, reply: runtime::Result<Reply>) -> std::result::Result<(), (String, bool)> {
    match reply {
        Ok(Reply::Ok(r)) if r.exit_code == 0 && !r.timed_out && !r.oom_killed => Ok(()),
        Ok(Reply::Ok(r)) => Err((
            format!(
                "job {i}: exit code {}{}{}",
                r.exit_code,
                if r.oom_killed { " (OOM-killed)" } else { "" },
                if r.timed_out { " (timed out)" } else { "" }
            ),
            false,
        )),
        Ok(Reply::Error(e)) => Err((format!("job {i}: {e}"), false)),
        // The launcher is gone: this thread can run nothing more.
        Err(e) => Err((format!("job {i}: {}", error_chain(&e)), true)),
    }
}

/// Drive `l` until the shared counter passes `jobs`.
fn drive(
    l: &mut Launcher,
    round: &Round<'_>,
    tag: &str,
    next: &AtomicUsize,
    start: Instant,
) -> Part {
    let mut part = Part::default();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= round.jobs {
            return part;
        }
        let req = request(round.image_id, round.command, tag, i);
        let t = Instant::now();
        let reply = l.request(&req);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        match check(i, reply) {
            Ok(()) => {
                part.ends.push(start.elapsed().as_secs_f64());
                part.latencies.push(ms);
            }
            Err((e, fatal)) => {
                if part.errors.len() < KEPT_ERRORS {
                    part.errors.push(e);
                }
                if fatal {
                    return part;
                }
            }
        }
    }
}

/// Start `n` launchers on the store, writing output beneath `output`.
fn start_launchers(round: &Round<'_>, output: &Path, logs: &[PathBuf]) -> Result<Vec<Launcher>> {
    let mut out = Vec::with_capacity(logs.len());
    for (index, log) in logs.iter().enumerate() {
        let err = fs::File::create(log).ctx("create", log)?;
        let mut cmd = Command::new(round.exe);
        cmd.arg("--root")
            .arg(round.root)
            .arg("launcher")
            .arg("--output-dir")
            .arg(output)
            .stderr(Stdio::from(err));
        out.push(
            Launcher::spawn(cmd)
                .map_err(|source| QueueBenchError::SpawnLauncher { index, source })?,
        );
    }
    Ok(out)
}

/// One pool round (`round_no` 0: the untimed warm-up).
pub(super) fn pool_round(round: &Round<'_>, round_no: usize) -> Result<PoolRound> {
    let tag = if round_no == 0 {
        "warmup".to_string()
    } else {
        format!("pool{round_no}")
    };
    let output = round.root.join(format!("bench-{tag}-output"));
    fs::create_dir_all(&output).ctx("create", &output)?;
    let logs: Vec<PathBuf> = (0..round.launchers)
        .map(|i| round.logs.join(format!("{tag}-launcher-{i}.log")))
        .collect();
    let mut launchers = start_launchers(round, &output, &logs)?;
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    let parts: Vec<std::thread::Result<Part>> = std::thread::scope(|s| {
        let handles: Vec<_> = launchers
            .iter_mut()
            .map(|l| {
                let (next, tag) = (&next, tag.as_str());
                s.spawn(move || drive(l, round, tag, next, start))
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    let wall_s = start.elapsed().as_secs_f64();
    let mut all = Part::default();
    for (n, p) in parts.into_iter().enumerate() {
        let p = p.map_err(|_| QueueBenchError::Thread(n))?;
        all.ends.extend(p.ends);
        all.latencies.extend(p.latencies);
        all.errors
            .extend(p.errors.into_iter().take(KEPT_ERRORS - all.errors.len()));
    }
    let launcher_exits = launchers
        .into_iter()
        .map(|l| match l.finish() {
            Ok(s) => s.to_string(),
            Err(e) => format!("error: {}", error_chain(&e)),
        })
        .collect();
    let completed = all.ends.len();
    // Jobs a dead launcher never took are failures too.
    let failed = round.jobs - completed;
    Ok(PoolRound {
        round: round_no,
        completed,
        failed,
        errors: all.errors,
        steady_jobs_per_s: steady_rate(&mut all.ends),
        wall_s,
        wall_jobs_per_s: round.jobs as f64 / wall_s.max(1e-9),
        latency_ms: Percentiles::of(&all.latencies),
        launcher_exits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_request_matches_the_workers() {
        let r = request("sha256:ab", &["true".to_string()], "pool1", 7);
        assert_eq!(r.image, "sha256:ab");
        assert_eq!(r.job.name, "pool1-7");
        assert_eq!(r.job.command, ["true"]);
        assert_eq!(r.job.timeout, Some(Duration::from_secs(3600)));
        assert_eq!(r.job.network, JobSpec::default().network);
        assert!(!r.job.limits.any());
        assert_eq!(r.stdout, Some(Sink::Path("pool1-7.stdout".into())));
        assert_eq!(r.output_cap, Some(DEFAULT_OUTPUT_CAP));
        assert!(r.reply_before_cleanup);
    }
}
