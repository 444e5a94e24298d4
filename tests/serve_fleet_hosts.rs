//! Three worker hosts and one database: each `skiff serve` runs in a
//! network namespace of its own, on a bridge, and reaches PostgreSQL over
//! TCP. 2,000 short jobs (some retried, some failing, some timing out)
//! run while one worker is SIGKILLed and another is cut off from the
//! database for longer than its lease, then brought back. At the end every
//! job has ended, the counts add up, each successful job's side effect (an
//! idempotent marker on a shared volume) is there exactly once and only for
//! successful jobs, no job is `running`, and every host is clean. Halfway
//! through, the dashboard is loaded in headless Chromium against this
//! fleet; a screenshot is kept under the test output.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use scheduler::db::postgres::local::LocalCluster;
use scheduler::db::postgres::PgStore;
use scheduler::db::Storage;
use scheduler::state::{Job, JobState};
use serde_json::{json, Value};
use support::netns::Net;
use support::serve::{Worker, IMAGE};

const JOBS: usize = 2000;
const LEASE_S: u64 = 3;
const TOKEN: &str = "fleet-test-token";
const API_PORT: u16 = 7070;

/// What a job was made to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Leaves its marker and exits 0.
    Ok,
    /// Fails its first attempt, then as `Ok`.
    Retried,
    /// Exits 3, no retries.
    Fails,
    /// Sleeps past its 1 s timeout, no retries.
    TimesOut,
}

fn kind(i: usize) -> Kind {
    match i % 40 {
        0 | 20 => Kind::Fails,
        1 | 21 => Kind::Retried,
        2 => Kind::TimesOut,
        _ => Kind::Ok,
    }
}

/// Job `i`: its marker is `/m/done/i` (mkdir: made once however often the
/// job runs); each run also appends to `/m/runs/i`.
fn job(i: usize, markers: &Path) -> Value {
    let mark = format!("echo run >> /m/runs/{i}; mkdir -p /m/done/{i}");
    let (script, retries, timeout) = match kind(i) {
        Kind::Ok => (mark, 4, 60),
        Kind::Retried => (
            format!("if mkdir /m/try/{i} 2>/dev/null; then exit 1; fi; {mark}"),
            4,
            60,
        ),
        Kind::Fails => ("exit 3".to_string(), 0, 60),
        // As PID 1, sh ignores SIGTERM unless it traps it: the timeout's
        // SIGTERM ends it at once instead of after the kill grace.
        Kind::TimesOut => ("trap 'exit 143' TERM; sleep 30 & wait".to_string(), 0, 1),
    };
    json!({
        "image": IMAGE,
        "command": ["sh", "-c", script],
        "volumes": [format!("{}:/m", markers.display())],
        "max_retries": retries,
        "retry_delay": 0,
        "timeout": timeout,
        "label": format!("j{i}"),
    })
}

/// One runtime for the test: the database pool lives in it.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
    .block_on(f)
}

fn worker_id(w: &Worker) -> String {
    std::fs::read_to_string(w.root().join("serve/worker-id"))
        .expect("worker id")
        .trim()
        .to_string()
}

/// Every job, with its attempts.
async fn all_jobs(store: &PgStore) -> Vec<Job> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list(&scheduler::queue::ListFilter {
                limit: Some(1000),
                after: after.clone(),
                ..Default::default()
            })
            .await
            .expect("list");
        let done = page.len() < 1000;
        after = page.last().map(|j| j.id.clone());
        for j in page {
            out.push(store.get(&j.id).await.expect("get"));
        }
        if done {
            return out;
        }
    }
}

/// Jobs per state, through the store.
async fn counts(store: &PgStore) -> HashMap<JobState, i64> {
    let mut m = HashMap::new();
    for (s, _, n) in store.counts().await.expect("counts") {
        *m.entry(s).or_default() += n;
    }
    m
}

/// Wait until `worker` runs a job (so that losing it loses work).
async fn wait_running_on(store: &PgStore, worker: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running = store
            .list(&scheduler::queue::ListFilter {
                state: Some(JobState::Running),
                limit: Some(1000),
                ..Default::default()
            })
            .await
            .expect("list");
        for j in running {
            let j = store.get(&j.id).await.expect("get");
            if j.attempt_list.last().and_then(|a| a.worker.as_deref()) == Some(worker) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{worker} never ran a job");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Where this test keeps what it leaves for people: the screenshot.
fn output_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve_fleet_hosts");
    std::fs::create_dir_all(&d).expect("test output directory");
    d
}

/// Load the dashboard at `url` in headless Chromium: the DOM once its
/// script has drawn, and a screenshot at `png`.
fn chromium(url: &str, png: &Path) -> String {
    let profile = tempfile::tempdir().expect("profile");
    let run = |extra: &[&str]| {
        let out = std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--no-first-run",
                "--window-size=1400,1300",
                "--virtual-time-budget=4000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(url)
            .output()
            .expect("run chromium");
        assert!(
            out.status.success(),
            "chromium {extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dom = run(&["--dump-dom"]);
    run(&[&format!("--screenshot={}", png.display())]);
    dom
}

/// The dashboard's row for worker `id`, as Chromium rendered it.
fn worker_row<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("data-id=\"{id}\""))
        .unwrap_or_else(|| panic!("worker {id} is not on the dashboard:\n{dom}"));
    let start = dom[..at].rfind("<tr").expect("a row");
    let end = at + dom[at..].find("</tr>").expect("row end");
    &dom[start..end]
}

#[test]
fn test_three_hosts_lose_one_worker_and_cut_off_another() {
    if !support::privilege::gate(support::run::missing_prerequisite()) {
        return;
    }
    for tool in ["ip", "chromium"] {
        if !support::env::have(tool) {
            support::privilege::skip_or_fail(&format!("{tool} not found"));
            return;
        }
    }
    // Declared first, dropped last: the workers stop before their hosts go.
    let net = Net::create(3).expect("three hosts on a bridge");
    let Some(cluster) =
        LocalCluster::start_for_network(net.gateway, 24).expect("start a PostgreSQL cluster")
    else {
        support::privilege::skip_or_fail("PostgreSQL's initdb not found (install postgresql)");
        return;
    };
    let url = cluster.url("fleet").expect("a database");
    let shared = tempfile::Builder::new()
        .prefix("skiff-fleet-markers-")
        .tempdir()
        .expect("shared volume");
    for d in ["done", "runs", "try"] {
        std::fs::create_dir(shared.path().join(d)).expect("marker directory");
    }
    let token = shared.path().join("token");
    std::fs::write(&token, TOKEN).expect("token file");
    let markers = shared.path().to_path_buf();
    let mut workers: Vec<Worker> = Vec::new();
    for (i, h) in net.hosts.iter().enumerate() {
        let listen = format!("{}:{API_PORT}", h.address);
        let args = [
            "--db",
            &url,
            "--lease",
            "3",
            "--launchers",
            "2",
            "--allow-volume",
            markers.to_str().expect("utf-8"),
            "--listen",
            &listen,
            "--token-file",
            token.to_str().expect("utf-8"),
        ];
        let name = format!("host-{}", ["a", "b", "c"][i]);
        let Some(w) = Worker::start_on(Some((h.netns_path(), name)), &args, &[]) else {
            return;
        };
        workers.push(w);
    }
    let ids: Vec<String> = workers.iter().map(worker_id).collect();
    let store = block_on(PgStore::open(&url, "test-reader")).expect("open the database");

    // Submit through every worker in turn, 100 at a time.
    let started = Instant::now();
    for (b, chunk) in (0..JOBS).collect::<Vec<_>>().chunks(100).enumerate() {
        let batch: Vec<Value> = chunk.iter().map(|&i| job(i, &markers)).collect();
        let (st, v) = workers[b % 3].call("POST", "/v1/jobs", Some(&json!({ "jobs": batch })));
        assert_eq!(st, 201, "{v}");
    }

    // SIGKILL host C's worker while it runs a job.
    block_on(wait_running_on(&store, &ids[2]));
    workers[2].kill9();
    // Cut host B off from the database while it runs a job, for three
    // leases: its jobs are reaped and retried elsewhere.
    block_on(wait_running_on(&store, &ids[1]));
    net.cut(1);
    let cut_at = Instant::now();
    std::thread::sleep(Duration::from_secs(2 * LEASE_S + 1));

    // The dashboard, served by host A, shows both as lost.
    let png = output_dir().join("dashboard.png");
    let page = format!("http://{}:{API_PORT}/#token={TOKEN}", net.hosts[0].address);
    let dom = chromium(&page, &png);
    assert!(
        dom.contains("data-ready=\"1\""),
        "the dashboard did not draw:\n{dom}"
    );
    assert!(worker_row(&dom, &ids[0]).contains("live"), "{dom}");
    for lost in [&ids[1], &ids[2]] {
        let row = worker_row(&dom, lost);
        assert!(row.contains("class=\"worker lost\""), "{lost}: {row}");
    }
    assert!(
        dom.contains("class=\"bar-complete\""),
        "no throughput drawn:\n{dom}"
    );
    let png_len = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(
        png_len > 10_000,
        "screenshot {}: {png_len} bytes",
        png.display()
    );

    let remaining = Duration::from_secs(3 * LEASE_S).saturating_sub(cut_at.elapsed());
    std::thread::sleep(remaining);
    net.restore(1);
    workers[2].restart();

    // Every job ends.
    let deadline = Instant::now() + Duration::from_secs(600);
    let c = loop {
        let c = block_on(counts(&store));
        let waiting: i64 = [JobState::Delayed, JobState::Queued, JobState::Running]
            .iter()
            .map(|s| c.get(s).copied().unwrap_or(0))
            .sum();
        if waiting == 0 {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "jobs still waiting or running: {c:?}\nA:\n{}\nB:\n{}\nC:\n{}",
            workers[0].log(),
            workers[1].log(),
            workers[2].log()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let elapsed = started.elapsed();
    assert_eq!(c.values().sum::<i64>(), JOBS as i64, "{c:?}");

    let jobs = block_on(all_jobs(&store));
    assert_eq!(jobs.len(), JOBS);
    let mut lost_attempts = 0;
    let mut ran_twice = 0;
    for j in &jobs {
        let i: usize = j.label.as_deref().expect("label")[1..]
            .parse()
            .expect("index");
        let lost = |a: &&scheduler::state::Attempt| a.reason.as_deref() == Some("worker lost");
        let n_lost = j.attempt_list.iter().filter(lost).count();
        lost_attempts += n_lost;
        let complete = j
            .attempt_list
            .iter()
            .filter(|a| a.state == JobState::Complete)
            .count();
        let done = markers.join("done").join(i.to_string()).exists();
        let runs = std::fs::read_to_string(markers.join("runs").join(i.to_string()))
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if runs > 1 {
            ran_twice += 1;
        }
        match kind(i) {
            Kind::Ok | Kind::Retried => {
                assert_eq!(j.state, JobState::Complete, "job {i}: {j:?}");
            }
            Kind::Fails => assert!(
                j.state == JobState::Error || (j.state == JobState::Killed && n_lost == 1),
                "job {i}: {j:?}"
            ),
            Kind::TimesOut => assert!(
                j.state == JobState::Timeout || (j.state == JobState::Killed && n_lost == 1),
                "job {i}: {j:?}"
            ),
        }
        // Exactly one successful attempt per successful job (fencing: a
        // cut-off worker's late result changes nothing), and its marker;
        // no marker for a job that did not succeed.
        let ok = j.state == JobState::Complete;
        assert_eq!(complete, usize::from(ok), "job {i}: {j:?}");
        assert_eq!(done, ok, "job {i}'s marker, {:?}: {j:?}", j.state);
        if ok {
            let last = j.attempt_list.last().expect("an attempt");
            assert_eq!(last.state, JobState::Complete, "job {i}: {j:?}");
        }
    }
    let done_markers = std::fs::read_dir(markers.join("done"))
        .expect("markers")
        .count();
    let complete = c.get(&JobState::Complete).copied().unwrap_or(0);
    assert_eq!(done_markers as i64, complete, "{c:?}");
    // Both losses cost attempts (each host was running a job when lost).
    assert!(lost_attempts >= 2, "{lost_attempts} attempts lost");
    eprintln!(
        "{JOBS} jobs on three hosts in {:.1} s: {c:?}; {lost_attempts} attempts lost with \
         their workers, {ran_twice} jobs ran more than once (their late results fenced); \
         screenshot: {}",
        elapsed.as_secs_f64(),
        png.display()
    );

    // Every host stops cleanly and leaves nothing behind.
    for (w, id) in workers.iter_mut().zip(&ids) {
        let st = w.stop().expect("was running");
        assert!(st.success(), "{id}: {st}\n{}", w.log());
        w.env.assert_clean(
            &format!("{id} left run state: "),
            &format!("{id} left cgroups: "),
        );
        let root = w.root().display().to_string();
        assert_eq!(
            support::run::mounts_containing(&root),
            0,
            "{id} left mounts under {root}"
        );
        assert!(
            support::run::processes_under(&root).is_empty(),
            "{id} left processes: {:?}",
            support::run::processes_under(&root)
        );
    }
}
