//! The worker's launchers: `skiff launcher` processes (`runtime::pool`),
//! each owned by one long-lived thread, so that the async control plane
//! never calls libcontainer and a launcher's parent-death signal is tied
//! to a thread that lives as long as the worker.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use runtime::fd_volume::FdVolume;
use runtime::job::{JobSpec, Limits, Volume};
use runtime::pool::{Launcher, Reply, Request, Sink};

use crate::queue::{Claim, Outcome};
use crate::state::JobState;
use crate::volumes::AllowedVolumes;

/// Where a job's files live inside the job.
pub const PAYLOAD_TARGET: &str = "/skiff-payload";

/// How launchers are started.
#[derive(Debug, Clone)]
pub struct LauncherConfig {
    /// The skiff binary.
    pub exe: PathBuf,
    /// Store root.
    pub root: PathBuf,
    /// Directory for captured output (`--output-dir`).
    pub output_dir: PathBuf,
    /// Directory for payload files.
    pub payload_dir: PathBuf,
    /// Bytes kept per output stream.
    pub output_cap: u64,
    /// Warm sandboxes per launcher (0: cold launches).
    pub warm: usize,
    /// Where jobs may mount host paths; checked again at each launch.
    pub volumes: std::sync::Arc<AllowedVolumes>,
    /// On a fleet: makes code packages' images in this worker's store.
    pub code: Option<Arc<dyn CodeImages>>,
    /// With a registry: pulls the images jobs name that the store lacks.
    pub images: Option<Arc<dyn JobImages>>,
}

/// Where a slot gets a job's image when the store lacks it (with a
/// registry configured, `image_pull::RegistryPulls`).
pub trait JobImages: Send + Sync + std::fmt::Debug {
    /// Make sure the store holds `image`: why it cannot, otherwise.
    /// Called from a slot's thread.
    fn ensure(&self, image: &str) -> Result<(), String>;
}

/// Where a slot gets a code package's image before its job runs (on a
/// fleet, `code_fetch::CodeFetch`).
pub trait CodeImages: Send + Sync + std::fmt::Debug {
    /// Make sure the store holds package `name`'s image as last pushed:
    /// why it cannot, otherwise. Called from a slot's thread.
    fn ensure(&self, name: &str) -> Result<(), String>;
}

/// Where a slot hands the outcome of an attempt: the dispatcher records
/// it and, when `claim_next`, claims the slot's next job in the same turn.
/// Called from the slot's own thread, which blocks until the turn is done.
pub trait SlotEnd: Send + Sync {
    /// Record `outcome` of `slot`'s attempt; the slot's next job, if any.
    fn ended(&self, slot: usize, outcome: Outcome, claim_next: bool) -> Option<Claim>;
}

/// One attempt to run on a slot, and where its outcome goes. Dropped
/// without an outcome (its slot thread gone), it reports the slot lost.
struct Work {
    claim: Claim,
    slot: usize,
    end: Option<Arc<dyn SlotEnd>>,
}

impl Work {
    /// Hand over `outcome`, stamped with its end time; the slot's next work.
    fn finish(mut self, mut outcome: Outcome) -> Option<Work> {
        let end = self.end.take()?;
        outcome.ended_at = Some(crate::queue::now_ms());
        let claim = end.ended(self.slot, outcome, true)?;
        Some(Work {
            claim,
            slot: self.slot,
            end: Some(end),
        })
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        if let Some(end) = self.end.take() {
            let mut outcome = killed("launcher slot lost");
            outcome.ended_at = Some(crate::queue::now_ms());
            end.ended(self.slot, outcome, false);
        }
    }
}

/// A launcher slot's handle: send it work.
#[derive(Debug)]
pub struct Slots {
    tx: Vec<mpsc::Sender<Work>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// The output file names of attempt `n` of job `id`, beneath the output dir.
pub fn output_names(id: &str, n: i64) -> (String, String) {
    (format!("{id}.{n}.stdout"), format!("{id}.{n}.stderr"))
}

/// The container name of attempt `n` of job `id`.
pub fn job_name(id: &str, n: i64) -> String {
    format!("{id}-{n}")
}

fn spawn_launcher(cfg: &LauncherConfig) -> runtime::Result<Launcher> {
    let mut cmd = Command::new(&cfg.exe);
    cmd.arg("--root")
        .arg(&cfg.root)
        .arg("launcher")
        .arg("--output-dir")
        .arg(&cfg.output_dir)
        .stderr(Stdio::inherit());
    if cfg.warm > 0 {
        cmd.arg("--warm").arg(cfg.warm.to_string());
    }
    // SAFETY: prctl is async-signal-safe; it only sets a flag of the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Launcher::spawn(cmd)
}

/// The launcher request for `c`, with the descriptors of its host volumes
/// (opened beneath the allowed directories, and sent instead of paths).
fn request_for(cfg: &LauncherConfig, c: &Claim) -> Result<(Request, Vec<OwnedFd>), String> {
    let r = &c.request;
    let mut fds = Vec::with_capacity(r.volumes.len());
    let mut fd_volumes = Vec::with_capacity(r.volumes.len());
    for (i, v) in r.volumes.iter().enumerate() {
        let v: Volume = v.parse().map_err(|e| format!("volumes[{i}]: {e}"))?;
        let fd = cfg
            .volumes
            .open(&v)
            .map_err(|e| format!("volumes[{i}]: {e}"))?;
        let fd = runtime::fd_volume::detach(&fd)
            .map_err(|e| format!("volumes[{i}]: clone {}: {e}", v.host.display()))?;
        fd_volumes.push(FdVolume {
            fd: fds.len(),
            target: v.target,
            read_only: v.read_only,
        });
        fds.push(fd);
    }
    let mut env = r.env.clone();
    let mut volumes = Vec::new();
    if let Some(p) = &c.payload {
        let path = cfg.payload_dir.join(&c.id);
        if let Err(e) = std::fs::write(&path, p) {
            return Err(format!("write payload {}: {e}", path.display()));
        }
        volumes.push(Volume {
            host: path,
            target: PAYLOAD_TARGET.into(),
            read_only: true,
        });
        env.push(format!("PAYLOAD_FILE={PAYLOAD_TARGET}"));
    }
    let (out, err) = output_names(&c.id, c.attempt);
    let req = Request {
        image: r.image_ref(),
        job: JobSpec {
            name: job_name(&c.id, c.attempt),
            command: r.command.clone(),
            env,
            volumes,
            limits: Limits {
                memory_bytes: c.memory_bytes,
                cpus: r.cpus,
                pids: r.pids,
                ..Default::default()
            },
            timeout: Some(Duration::from_millis(c.timeout_ms as u64)),
            ..Default::default()
        },
        stdout: Some(Sink::Path(out.into())),
        stderr: Some(Sink::Path(err.into())),
        output_cap: Some(cfg.output_cap),
        fd_volumes,
        // The slot's next job is claimed while this one is torn down.
        reply_before_cleanup: true,
        ..Default::default()
    };
    Ok((req, fds))
}

fn killed(reason: &str) -> Outcome {
    Outcome {
        state: Some(JobState::Killed),
        reason: Some(reason.into()),
        ..Default::default()
    }
}

/// An attempt that failed before or without running: `reason`.
pub(crate) fn failed(reason: String) -> Outcome {
    Outcome {
        state: Some(JobState::Error),
        reason: Some(reason),
        ..Default::default()
    }
}

/// The outcome of a launcher's reply.
pub fn outcome_of(reply: Reply) -> Outcome {
    match reply {
        Reply::Error(e) => failed(e),
        Reply::Ok(r) => {
            let (state, reason) = if r.timed_out {
                (JobState::Timeout, Some("timeout".to_string()))
            } else if r.oom_killed {
                (JobState::Killed, Some("out of memory".to_string()))
            } else if r.exit_code == 0 {
                (JobState::Complete, None)
            } else if let Some(s) = r.signal {
                (JobState::Error, Some(format!("signal {s}")))
            } else {
                (JobState::Error, Some(format!("exit {}", r.exit_code)))
            };
            Outcome {
                state: Some(state),
                reason,
                exit_code: Some(r.exit_code.into()),
                signal: r.signal.map(i64::from),
                oom_killed: Some(r.oom_killed),
                wall_ms: Some(r.wall_ms),
                cpu_usec: r.cpu_usec.map(|v| v as i64),
                peak_memory_bytes: r.peak_memory_bytes.map(|v| v as i64),
                dropped: Some([
                    r.output_dropped_bytes[0] as i64,
                    r.output_dropped_bytes[1] as i64,
                ]),
                launch_ms: Some(r.launch_ms),
                ended_at: None,
            }
        }
    }
}

/// On a fleet, make sure the store holds `c`'s code package, if it names
/// one, as last pushed; with a registry, that it holds `c`'s image.
fn fetch_code(cfg: &LauncherConfig, c: &Claim) -> Result<(), String> {
    match (&cfg.code, &c.request.code, &cfg.images) {
        (Some(fetch), Some(name), _) => fetch.ensure(name),
        (_, None, Some(images)) => images.ensure(&c.request.image_ref()),
        _ => Ok(()),
    }
}

/// Run `req` on the slot's launcher, starting one if there is none.
fn run_on(
    cfg: &LauncherConfig,
    launcher: &mut Option<Launcher>,
    req: &Request,
    fds: &[OwnedFd],
) -> Outcome {
    if launcher.is_none() {
        match spawn_launcher(cfg) {
            Ok(l) => *launcher = Some(l),
            Err(e) => return failed(format!("start launcher: {e}")),
        }
    }
    let Some(l) = launcher.as_mut() else {
        return failed("no launcher".into());
    };
    let fds: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
    match l.request_with_fds(req, &fds) {
        Ok(reply) => outcome_of(reply),
        Err(e) => {
            // The launcher died (or was killed to stop a job): the next
            // attempt gets a new one.
            *launcher = None;
            Outcome {
                state: Some(JobState::Killed),
                reason: Some(format!("launcher lost: {e}")),
                ..Default::default()
            }
        }
    }
}

fn slot_main(cfg: LauncherConfig, rx: mpsc::Receiver<Work>) {
    let mut launcher: Option<Launcher> = None;
    while let Ok(mut work) = rx.recv() {
        loop {
            let outcome =
                match fetch_code(&cfg, &work.claim).and_then(|()| request_for(&cfg, &work.claim)) {
                    Err(reason) => failed(reason),
                    Ok((req, fds)) => run_on(&cfg, &mut launcher, &req, &fds),
                };
            if work.claim.payload.is_some() {
                let _ = std::fs::remove_file(cfg.payload_dir.join(&work.claim.id));
            }
            match work.finish(outcome) {
                Some(next) => work = next,
                None => break,
            }
        }
    }
    if let Some(l) = launcher {
        let _ = l.finish();
    }
}

impl Slots {
    /// Start `n` slot threads; launchers start on first use.
    pub fn start(n: usize, cfg: &LauncherConfig) -> Slots {
        let mut tx = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n {
            let (t, rx) = mpsc::channel();
            let cfg = cfg.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("launcher-{i}"))
                    .spawn(move || slot_main(cfg, rx))
                    .expect("spawn a launcher thread"),
            );
            tx.push(t);
        }
        Slots { tx, threads }
    }

    /// Slots in all.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }

    /// Run `claim` on slot `i`, its outcome handed to `end`; false, and
    /// nothing handed, if the slot's thread is gone.
    pub fn run(&self, i: usize, claim: Claim, end: &Arc<dyn SlotEnd>) -> bool {
        let work = Work {
            claim,
            slot: i,
            end: Some(end.clone()),
        };
        match self.tx[i].send(work) {
            Ok(()) => true,
            Err(mpsc::SendError(mut w)) => {
                w.end = None;
                false
            }
        }
    }

    /// Stop every slot after its current job; wait for them.
    pub fn shutdown(self) {
        drop(self.tx);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Send `sig` to the init of the running job `name` (its record under
/// `run_root`), checked by start time against pid reuse. Returns whether a
/// process was signalled.
pub fn signal_job(run_root: &Path, name: &str, sig: nix::sys::signal::Signal) -> bool {
    let Ok(Some(rec)) = runtime::state::read_record(&run_root.join(name)) else {
        return false;
    };
    let (Some(pid), Some(start)) = (rec.init_pid, rec.init_start_time) else {
        return false;
    };
    if runtime::state::process_start_time(pid) != Some(start) {
        return false;
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).is_ok()
}
