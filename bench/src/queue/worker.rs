//! One serve round: a real `skiff serve` child process on the bench store,
//! driven through its HTTP API on `ROOT/skiff.sock` with
//! [`scheduler::client::Client`].

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scheduler::client::Client;
use scheduler::{Job, JobState};
use serde::Deserialize;
use serde_json::json;

use super::results::{Enqueue, Percentiles, ServeRound};
use super::{steady_rate, QueueBenchError, Result, Round, KEPT_ERRORS};
use crate::error::IoContext;

/// How long `skiff serve` may take to answer `/healthz`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the jobs may go without one being claimed before the round
/// fails.
const STALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a job may stay unfinished once nothing is queued (a `true`
/// job takes milliseconds): after it, a job still `running` is counted as
/// failed (its outcome was lost).
const GRACE: Duration = Duration::from_secs(30);
/// How long SIGTERM may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the last job is looked at while the jobs run.
const POLL: Duration = Duration::from_millis(100);
/// `GET /v1/jobs/{id}` calls in flight when the jobs are read back.
const READ_CONCURRENCY: usize = 16;
/// Jobs per page of `GET /v1/jobs`.
const PAGE: usize = 1000;

/// A running `skiff serve`; dropping it stops it (SIGTERM, then SIGKILL).
#[derive(Debug)]
struct Worker {
    child: Option<Child>,
    socket: PathBuf,
}

impl Worker {
    /// Start `skiff --root ROOT serve --launchers N --db DB`, its stderr to
    /// `log`, and wait until `/healthz` answers.
    fn start(round: &Round<'_>, db: &Path, log: &Path, rt: &Runtime) -> Result<Worker> {
        Worker::start_as(round, db.as_os_str(), log, rt)
    }

    /// [`Worker::start`] with `db` a SQLite path or a `postgres://` URL.
    fn start_as(
        round: &Round<'_>,
        db: &std::ffi::OsStr,
        log: &Path,
        rt: &Runtime,
    ) -> Result<Worker> {
        let err = fs::File::create(log).ctx("create", log)?;
        let child = Command::new(round.exe)
            .arg("--root")
            .arg(round.root)
            .arg("serve")
            .arg("--launchers")
            .arg(round.launchers.to_string())
            .arg("--db")
            .arg(db)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|source| QueueBenchError::SpawnWorker {
                exe: round.exe.to_path_buf(),
                source,
            })?;
        let mut w = Worker {
            child: Some(child),
            socket: round.root.join("skiff.sock"),
        };
        let client = Client::unix(&w.socket);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(r) = rt.block_on(client.call("GET", "/healthz", None)) {
                if r.status == 200 {
                    return Ok(w);
                }
            }
            w.check_alive(log)?;
            if Instant::now() > deadline {
                return Err(QueueBenchError::NotReady {
                    waited: READY_TIMEOUT,
                    log: log.to_path_buf(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fail if the worker has exited.
    fn check_alive(&mut self, log: &Path) -> Result<()> {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                self.child = None;
                return Err(QueueBenchError::WorkerExited {
                    status: status.to_string(),
                    log: log.to_path_buf(),
                });
            }
        }
        Ok(())
    }

    /// SIGTERM, wait (SIGKILL after [`STOP_TIMEOUT`]); how it exited.
    fn stop(&mut self) -> String {
        let Some(mut c) = self.child.take() else {
            return "already exited".into();
        };
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match c.try_wait() {
                Ok(Some(s)) => return s.to_string(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = c.kill();
                    return match c.wait() {
                        Ok(s) => format!("{s} (SIGKILLed after {} s)", STOP_TIMEOUT.as_secs()),
                        Err(e) => format!("SIGKILLed; cannot wait: {e}"),
                    };
                }
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }
}

/// The async runtime the client runs on.
type Runtime = tokio::runtime::Runtime;

/// `{"jobs":[…]}`, as `POST /v1/jobs` answers a batch.
#[derive(Debug, Deserialize)]
struct Batch {
    jobs: Vec<Job>,
}

/// `GET /v1/jobs`'s page.
#[derive(Debug, Deserialize)]
struct Page {
    jobs: Vec<Job>,
    next: Option<String>,
}

/// One call; the body of a 2xx response, else an error naming `what`.
async fn call(client: &Client, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<Vec<u8>> {
    let r = client
        .call(method, path, body)
        .await
        .map_err(|source| QueueBenchError::Client {
            call: format!("{method} {path}"),
            source,
        })?;
    if !(200..300).contains(&r.status) {
        return Err(QueueBenchError::Api {
            call: format!("{method} {path}"),
            status: r.status,
            message: r.error_message(),
        });
    }
    Ok(r.body)
}

/// Parse a response body as `T`.
fn parse<'a, T: Deserialize<'a>>(what: &str, body: &'a [u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|source| QueueBenchError::Response {
        call: what.to_string(),
        source,
    })
}

/// `GET /v1/jobs/{id}`.
async fn get_job(client: &Client, id: &str) -> Result<Job> {
    let path = format!("/v1/jobs/{id}");
    let body = call(client, "GET", &path, None).await?;
    parse(&path, &body)
}

/// Every job of `ids`, read back concurrently, in the same order.
async fn get_all(client: &Client, ids: &[String]) -> Result<Vec<Job>> {
    let mut out: Vec<Option<Job>> = vec![None; ids.len()];
    let mut set = tokio::task::JoinSet::new();
    let mut next = 0;
    loop {
        while set.len() < READ_CONCURRENCY && next < ids.len() {
            let (c, id, i) = (client.clone(), ids[next].clone(), next);
            set.spawn(async move { (i, get_job(&c, &id).await) });
            next += 1;
        }
        let Some(done) = set.join_next().await else {
            break;
        };
        let (i, job) = done.map_err(|e| QueueBenchError::Task(e.to_string()))?;
        out[i] = Some(job?);
    }
    Ok(out.into_iter().flatten().collect())
}

/// Page through `GET /v1/jobs?state=complete`; jobs listed.
async fn count_complete(client: &Client) -> Result<usize> {
    let mut after: Option<String> = None;
    let mut n = 0;
    loop {
        let mut path = format!("/v1/jobs?state=complete&limit={PAGE}");
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let body = call(client, "GET", &path, None).await?;
        let page: Page = parse(&path, &body)?;
        n += page.jobs.len();
        match page.next {
            Some(next) if !page.jobs.is_empty() => after = Some(next),
            _ => return Ok(n),
        }
    }
}

/// The request bodies of every batch, built before any is sent.
fn bodies(round: &Round<'_>) -> Vec<(usize, Vec<u8>)> {
    let one = json!({ "image": round.image_id, "command": round.command });
    let mut out = Vec::new();
    let mut left = round.jobs;
    while left > 0 {
        let n = left.min(round.batch);
        let body = json!({ "jobs": vec![one.clone(); n] });
        out.push((n, serde_json::to_vec(&body).unwrap_or_default()));
        left -= n;
    }
    out
}

/// Submit every batch back to back; the jobs' ids in submission order.
fn submit(client: &Client, rt: &Runtime, round: &Round<'_>) -> Result<(Vec<String>, Enqueue)> {
    let bodies = bodies(round);
    let batches = bodies.len();
    let mut ids = Vec::with_capacity(round.jobs);
    let mut batch_ms = Vec::with_capacity(batches);
    let first = Instant::now();
    for (n, body) in bodies {
        let t = Instant::now();
        let resp = rt.block_on(call(client, "POST", "/v1/jobs", Some(body)))?;
        batch_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let batch: Batch = parse("POST /v1/jobs", &resp)?;
        if batch.jobs.len() != n {
            return Err(QueueBenchError::Protocol(format!(
                "POST /v1/jobs of {n} jobs answered {} jobs",
                batch.jobs.len()
            )));
        }
        ids.extend(batch.jobs.into_iter().map(|j| j.id));
    }
    let window_s = first.elapsed().as_secs_f64();
    let submit_s = batch_ms.iter().sum::<f64>() / 1e3;
    let enqueue = Enqueue {
        jobs: ids.len(),
        batches,
        submit_s,
        jobs_per_s: ids.len() as f64 / submit_s.max(1e-9),
        window_s,
        batch_ms: Percentiles::of(&batch_ms),
    };
    Ok((ids, enqueue))
}

/// Wait until the last job submitted is over, or nothing has been queued
/// for [`GRACE`], watching that jobs keep being claimed and that the
/// worker lives.
fn wait_last(w: &mut Worker, client: &Client, rt: &Runtime, last: &str, log: &Path) -> Result<()> {
    let mut head: Option<String> = None;
    let mut moved = Instant::now();
    let mut looked = Instant::now();
    let mut drained: Option<Instant> = None;
    loop {
        w.check_alive(log)?;
        let job = rt.block_on(get_job(client, last))?;
        if job.state.is_terminal() {
            return Ok(());
        }
        // The oldest queued job changes as the dispatcher claims jobs.
        if looked.elapsed() >= Duration::from_secs(1) {
            looked = Instant::now();
            let path = "/v1/jobs?state=queued&limit=1";
            let body = rt.block_on(call(client, "GET", path, None))?;
            let page: Page = parse(path, &body)?;
            let now = page.jobs.first().map(|j| j.id.clone());
            if now.is_none() {
                let since = *drained.get_or_insert_with(Instant::now);
                if since.elapsed() > GRACE {
                    return Ok(());
                }
            } else {
                drained = None;
            }
            if now != head {
                head = now;
                moved = Instant::now();
            } else if moved.elapsed() > STALL_TIMEOUT {
                return Err(QueueBenchError::Stalled {
                    waited: STALL_TIMEOUT,
                    log: log.to_path_buf(),
                });
            }
        }
        std::thread::sleep(POLL);
    }
}

/// Read every job back; wait (up to [`GRACE`]) for any not over yet, and
/// leave those still unfinished then as they are (counted as failed).
fn read_back(client: &Client, rt: &Runtime, ids: &[String]) -> Result<Vec<Job>> {
    let mut jobs = rt.block_on(get_all(client, ids))?;
    let deadline = Instant::now() + GRACE;
    for j in jobs.iter_mut() {
        while !j.state.is_terminal() && Instant::now() < deadline {
            std::thread::sleep(POLL);
            *j = rt.block_on(get_job(client, &j.id))?;
        }
    }
    Ok(jobs)
}

/// Figures of a round from its jobs as the API shows them.
fn figures(round_no: usize, jobs: &[Job], enqueue: Enqueue, listed: usize) -> ServeRound {
    let mut completed = 0;
    let mut errors = Vec::new();
    let (mut to_start, mut to_end, mut run, mut ends) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let first_created = jobs.iter().map(|j| j.created_at).min().unwrap_or(0);
    let mut last_end = first_created;
    for j in jobs {
        if j.state == JobState::Complete {
            completed += 1;
        } else if errors.len() < KEPT_ERRORS {
            errors.push(format!(
                "{}: {}{}",
                j.id,
                j.state,
                j.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ));
        }
        if let Some(a) = j.attempt_list.first() {
            to_start.push((a.started_at - j.created_at) as f64);
        }
        if let Some(a) = j.attempt_list.last() {
            if let Some(end) = a.ended_at {
                to_end.push((end - j.created_at) as f64);
                run.push((end - a.started_at) as f64);
                ends.push(end as f64 / 1e3);
                last_end = last_end.max(end);
            }
        }
    }
    let wall_s = (last_end - first_created) as f64 / 1e3;
    ServeRound {
        round: round_no,
        enqueue,
        completed,
        failed: jobs.len() - completed,
        listed_complete: listed,
        errors,
        steady_jobs_per_s: steady_rate(&mut ends),
        wall_s,
        wall_jobs_per_s: jobs.len() as f64 / wall_s.max(1e-3),
        submit_to_start_ms: Percentiles::of(&to_start),
        submit_to_complete_ms: Percentiles::of(&to_end),
        run_ms: Percentiles::of(&run),
        worker_exit: String::new(),
        worker_log_errors: 0,
        worker_log_kinds: Vec::new(),
    }
}

/// The worker's `ERROR` lines: how many, and each distinct message with
/// its count (the first [`KEPT_ERRORS`] kinds).
fn log_errors(log: &str) -> (usize, Vec<String>) {
    let mut kinds: Vec<(String, usize)> = Vec::new();
    let mut n = 0;
    for line in log.lines() {
        let Some((_, msg)) = line.split_once(" ERROR ") else {
            continue;
        };
        n += 1;
        // The job's id (a tracing field) would make every line a kind.
        let msg = match msg.trim().split_once(" job=") {
            Some((m, _)) => m,
            None => msg.trim(),
        };
        if let Some((_, c)) = kinds.iter_mut().find(|(m, _)| m == msg) {
            *c += 1;
        } else if kinds.len() < KEPT_ERRORS {
            kinds.push((msg.to_string(), 1));
        }
    }
    (
        n,
        kinds
            .into_iter()
            .map(|(m, c)| format!("{c}× {m}"))
            .collect(),
    )
}

/// One serve round: start the worker on its own job database, submit,
/// wait, read back, stop it; its output directory is then set aside so the
/// next round starts with an empty one.
pub(super) fn serve_round(round: &Round<'_>, round_no: usize) -> Result<ServeRound> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| QueueBenchError::Task(format!("start an async runtime: {e}")))?;
    let db = round.root.join(format!("bench-jobs-{round_no}.db"));
    let log = round.logs.join(format!("serve-{round_no}.log"));
    let mut w = Worker::start(round, &db, &log, &rt)?;
    let client = Client::unix(&w.socket);
    let (ids, enqueue) = submit(&client, &rt, round)?;
    let last = ids.last().cloned().unwrap_or_default();
    wait_last(&mut w, &client, &rt, &last, &log)?;
    let jobs = read_back(&client, &rt, &ids)?;
    let listed = rt.block_on(count_complete(&client))?;
    let exit = w.stop();
    let mut r = figures(round_no, &jobs, enqueue, listed);
    r.worker_exit = exit;
    (r.worker_log_errors, r.worker_log_kinds) =
        log_errors(&fs::read_to_string(&log).unwrap_or_default());
    let output = round.root.join("serve").join("output");
    let spent = round.root.join(format!("spent-serve-output-{round_no}"));
    fs::rename(&output, &spent).ctx("set aside", &output)?;
    Ok(r)
}

/// One fleet round: a worker on each of `roots` (stores holding the
/// image), all on the PostgreSQL database `url`; the jobs are submitted
/// to the first and read back through it. The steady rate counts every
/// worker's jobs.
pub(super) fn fleet_round(
    round: &Round<'_>,
    roots: &[&Path],
    url: &str,
    round_no: usize,
) -> Result<ServeRound> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| QueueBenchError::Task(format!("start an async runtime: {e}")))?;
    let mut workers = Vec::with_capacity(roots.len());
    let mut logs = Vec::with_capacity(roots.len());
    for (i, root) in roots.iter().enumerate() {
        let log = round
            .logs
            .join(format!("fleet-{round_no}-of-{}-w{i}.log", roots.len()));
        let r = Round { root, ..*round };
        workers.push(Worker::start_as(&r, url.as_ref(), &log, &rt)?);
        logs.push(log);
    }
    let client = Client::unix(&workers[0].socket);
    let (ids, enqueue) = submit(&client, &rt, round)?;
    let last = ids.last().cloned().unwrap_or_default();
    wait_last(&mut workers[0], &client, &rt, &last, &logs[0])?;
    let jobs = read_back(&client, &rt, &ids)?;
    let listed = rt.block_on(count_complete(&client))?;
    let exits: Vec<String> = workers.iter_mut().map(Worker::stop).collect();
    let mut r = figures(round_no, &jobs, enqueue, listed);
    r.worker_exit = exits.join("; ");
    for log in &logs {
        let (n, kinds) = log_errors(&fs::read_to_string(log).unwrap_or_default());
        r.worker_log_errors += n;
        r.worker_log_kinds.extend(kinds);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_log_errors_counted_by_kind() {
        let log = "2026-12-01T03:38:01.95Z  INFO serving\n\
                   2026-12-01T03:38:01.95Z ERROR claim a job: locked\n\
                   2026-12-01T03:38:02.02Z ERROR claim a job: locked\n\
                   2026-12-01T03:38:02.03Z ERROR record attempt: x job=j-1\n\
                   2026-12-01T03:38:02.04Z ERROR record attempt: x job=j-2\n";
        let (n, kinds) = log_errors(log);
        assert_eq!(n, 4);
        assert_eq!(kinds, ["2× claim a job: locked", "2× record attempt: x"]);
    }

    #[test]
    fn test_bodies_split_into_batches() {
        let round = Round {
            exe: Path::new("skiff"),
            root: Path::new("/r"),
            logs: Path::new("/l"),
            image_id: "sha256:ab",
            command: &["true".to_string()],
            jobs: 1201,
            batch: 500,
            launchers: 2,
        };
        let b = bodies(&round);
        assert_eq!(
            b.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            [500, 500, 201]
        );
        let v: serde_json::Value = serde_json::from_slice(&b[2].1).expect("json");
        assert_eq!(v["jobs"].as_array().map(Vec::len), Some(201));
        assert_eq!(v["jobs"][0]["image"], "sha256:ab");
        assert_eq!(v["jobs"][0]["command"], json!(["true"]));
    }
}
