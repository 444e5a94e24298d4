//! A worker in a fleet (`skiff serve --db postgres://…`): its id, and the
//! tasks that keep its place in the fleet. Heartbeats extend the leases
//! of the attempts it runs and advertise its capacity and the images its
//! store holds (placement); attempts it lost (cut off past its lease) or
//! that any worker's API asked to cancel are stopped here; a reaper ends
//! other workers' expired attempts; and a submit anywhere wakes it
//! (`LISTEN`, with polling as the fallback).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::{watch, Notify};

use crate::db::postgres::{PgStore, Woken, WorkerInfo};
use crate::dispatch::{Changed, RunningJobs};
use crate::launchers::{job_name, signal_job};

/// How often an idle worker looks for jobs without a notification.
pub const POLL: Duration = Duration::from_secs(5);

/// This worker's id: made once per store (`ROOT/serve/worker-id`), so a
/// worker that restarts finds the attempts it held before.
pub fn worker_id(dir: &Path) -> std::io::Result<String> {
    let path = dir.join("worker-id");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = format!("{}-{:08x}", host_name(), rand::random::<u32>());
    let tmp = dir.join(".worker-id.new");
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

/// This host's name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

/// The image references this worker's store resolves: each image's id
/// and its tags, canonical (`docker.io/library/busybox:latest`).
pub fn store_images(root: &Path) -> Vec<String> {
    let Ok(store) = imagestore::Store::open(root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Ok(images) = store.images().list() {
        out.extend(images.iter().map(|r| r.id.to_string()));
    }
    if let Ok(tags) = store.images().tags() {
        out.extend(tags.into_iter().map(|(t, _)| t));
    }
    out.sort();
    out.dedup();
    out
}

/// What the fleet tasks need.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// The shared queue, as this worker.
    pub store: PgStore,
    /// What this worker runs.
    pub running: RunningJobs,
    /// Wakes the dispatcher.
    pub wake: Arc<Notify>,
    /// Job state changes (the reaper's ends are published).
    pub changed: Changed,
    /// Store root (the images advertised).
    pub store_root: PathBuf,
    /// The launchers' container records (to stop lost attempts).
    pub run_root: PathBuf,
    /// This worker, as heartbeats record it (`running`, `images` filled in).
    pub info: WorkerInfo,
    /// Lease length: heartbeats go out three times per lease.
    pub lease: Duration,
}

impl Fleet {
    /// Run the heartbeat, the reaper and the wake-ups until `stop`.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        tokio::join!(
            self.clone().heartbeats(stop.clone()),
            self.clone().reaper(stop.clone()),
            self.wakeups(stop),
        );
    }

    async fn heartbeats(mut self, mut stop: watch::Receiver<bool>) {
        let every = self.lease / 3;
        while !*stop.borrow() {
            self.beat().await;
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// One heartbeat: advertise, extend, and stop what this worker no
    /// longer holds or was asked to cancel.
    async fn beat(&mut self) {
        let root = self.store_root.clone();
        let images = tokio::task::spawn_blocking(move || store_images(&root))
            .await
            .unwrap_or_default();
        if images != self.info.images {
            self.store.set_images(images.clone());
            self.info.images = images;
        }
        let running = self.running.attempts().await;
        self.info.running = running.len() as i64;
        let held = match self.store.heartbeat(&self.info, &running).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!("heartbeat: {e}");
                return;
            }
        };
        for (id, n) in running.iter().filter(|r| !held.contains(r)) {
            // Ended by another worker while this one was cut off: its
            // result would be fenced off anyway; stop the container.
            tracing::warn!(job = %id, attempt = n, "lease lost: stopping the attempt");
            signal_job(&self.run_root, &job_name(id, *n), Signal::SIGKILL);
        }
        match self.store.cancels_requested().await {
            Ok(cancels) => {
                for (id, n) in cancels {
                    let name = job_name(&id, n);
                    if signal_job(&self.run_root, &name, Signal::SIGTERM) {
                        let run_root = self.run_root.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(runtime::job::DEFAULT_STOP_TIMEOUT).await;
                            signal_job(&run_root, &name, Signal::SIGKILL);
                        });
                    }
                }
            }
            Err(e) => tracing::warn!("read cancels: {e}"),
        }
    }

    async fn reaper(self, mut stop: watch::Receiver<bool>) {
        let every = self.lease / 2;
        while !*stop.borrow() {
            match self.store.reap_expired().await {
                Ok(ended) if !ended.is_empty() => {
                    tracing::warn!(jobs = ended.len(), "attempts of lost workers ended");
                    for (id, state) in ended {
                        let _ = self.changed.send((id, state));
                    }
                    self.wake.notify_one();
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("reap expired leases: {e}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// A submit anywhere in the fleet wakes the dispatcher; a lost
    /// `LISTEN` connection is opened again at the next poll.
    async fn wakeups(self, mut stop: watch::Receiver<bool>) {
        let mut wakeups = None;
        while !*stop.borrow() {
            if wakeups.is_none() {
                match self.store.wakeups(true, POLL).await {
                    Ok(w) => wakeups = Some(w),
                    Err(e) => tracing::warn!("LISTEN: {e} (polling)"),
                }
            }
            let woken = match wakeups.as_mut() {
                Some(w) => tokio::select! {
                    w = w.wait() => w,
                    _ = stop.changed() => break,
                },
                None => tokio::select! {
                    _ = tokio::time::sleep(POLL) => Woken::Polled,
                    _ = stop.changed() => break,
                },
            };
            if woken == Woken::Notified {
                self.wake.notify_one();
            }
            if wakeups.as_ref().is_some_and(|w| !w.is_listening()) {
                wakeups = None;
            }
        }
    }
}
