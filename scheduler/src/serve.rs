//! `skiff serve`: one worker per store. Recovers what a crash left, starts
//! the launcher slots and the dispatcher, serves the API on the unix
//! socket, and drains on SIGTERM.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::{watch, Notify};

use crate::api::{router, AppState};
use crate::db::hook_store::HookStorage;
use crate::db::postgres::{PgStore, WorkerInfo};
use crate::db::webhook_store::WebhookStorage;
use crate::db::Storage;
use crate::dispatch::{self, Capacity};
use crate::error::QueueError;
use crate::launchers::{LauncherConfig, Slots};
use crate::queue::Queue;
use crate::schedules::Schedules;
use crate::volumes::AllowedVolumes;

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Store root.
    pub root: PathBuf,
    /// Job database: a SQLite file (default `ROOT/jobs.db`), or a
    /// `postgres://` URL shared by a fleet.
    pub db: Option<String>,
    /// A fleet worker's lease on the jobs it runs (PostgreSQL only).
    pub lease: Duration,
    /// API socket (default `ROOT/skiff.sock`).
    pub socket: Option<PathBuf>,
    /// Launcher processes, i.e. jobs at once.
    pub launchers: usize,
    /// Memory capacity, bytes (default: host memory less 1 GiB).
    pub capacity_memory: Option<u64>,
    /// CPU capacity (default: the host's CPUs).
    pub capacity_cpus: Option<f64>,
    /// How long SIGTERM waits for running jobs.
    pub drain: Duration,
    /// Bytes of output kept per stream and attempt.
    pub output_cap: u64,
    /// Warm sandboxes per launcher.
    pub warm: usize,
    /// The skiff binary the launchers run.
    pub exe: PathBuf,
    /// Also serve the API on this TCP address (every request but
    /// `/healthz` must carry the bearer token).
    pub listen: Option<std::net::SocketAddr>,
    /// The file holding the TCP clients' bearer token (needed with `listen`).
    pub token_file: Option<PathBuf>,
    /// Directories beneath which API jobs may mount host paths (none:
    /// host volumes are off).
    pub allow_volumes: Vec<PathBuf>,
    /// Pull images jobs name that the store lacks, with these options
    /// (none: such jobs are refused at submit).
    pub pull: Option<imagestore::PullOptions>,
}

/// Why the worker could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The queue.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A file or socket of the worker's.
    #[error("{what} {path}: {source}")]
    Io {
        /// What.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Another worker serves this store.
    #[error("another skiff serve holds {0}")]
    Busy(PathBuf),
    /// Recovery after a crash failed.
    #[error("recover after a crash: {0}")]
    Recover(#[from] runtime::Error),
    /// The TCP listener's token.
    #[error(transparent)]
    Token(#[from] crate::api::auth::TokenError),
    /// The TCP listener.
    #[error("listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The metrics recorder.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    /// A `--allow-volume` directory.
    #[error("{0}")]
    AllowVolume(String),
}

/// The queue's engine.
enum Engine {
    /// One host: an embedded SQLite file.
    Sqlite(Box<Queue>),
    /// A fleet: a shared PostgreSQL database.
    Postgres(PgStore),
}

fn io(what: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ServeError {
    let path = path.to_path_buf();
    move |source| ServeError::Io { what, path, source }
}

fn host_memory() -> u64 {
    nix::sys::sysinfo::sysinfo()
        .map(|s| s.ram_total())
        .unwrap_or(1 << 30)
}

/// `skiff gc`'s collection: dead launchers' job directories, containers,
/// mounts, cgroups and stale leases.
async fn collect_garbage(
    root: &std::path::Path,
    run_root: &std::path::Path,
) -> Result<(), ServeError> {
    let (root, run) = (root.to_path_buf(), run_root.to_path_buf());
    tokio::task::spawn_blocking(move || -> Result<(), ServeError> {
        let store = imagestore::Store::open(&root)
            .map_err(|e| ServeError::Recover(runtime::Error::from(e)))?;
        let cg = runtime::cgroups::detect(&runtime::cgroups::group_key(store.root()))?;
        let report = runtime::gc::collect(&run, cg.as_ref())?;
        if !report.jobs.is_empty() {
            tracing::warn!(jobs = report.jobs.len(), "cleaned up after a lost worker");
        }
        let _ = store.remove_stale_leases();
        Ok(())
    })
    .await
    .map_err(|e| ServeError::Io {
        what: "garbage collection task",
        path: run_root.to_path_buf(),
        source: std::io::Error::other(e),
    })?
}

/// Run the worker until SIGTERM or SIGINT; `ready` is called once the API
/// accepts requests, `stopping` when the drain begins.
pub async fn serve(
    cfg: ServeConfig,
    ready: impl FnOnce(),
    stopping: impl FnOnce(),
) -> Result<(), ServeError> {
    // TCP needs a token: refused before anything else starts.
    let token = match (&cfg.listen, &cfg.token_file) {
        (Some(_), None) => return Err(crate::api::auth::TokenError::Missing.into()),
        (Some(_), Some(f)) => Some(crate::api::auth::Token::from_file(f)?),
        (None, _) => None,
    };
    let volumes =
        Arc::new(AllowedVolumes::new(&cfg.allow_volumes).map_err(ServeError::AllowVolume)?);
    let metrics = crate::metrics::install()?;
    let dir = cfg.root.join("serve");
    let output_dir = dir.join("output");
    let payload_dir = dir.join("payloads");
    for d in [&output_dir, &payload_dir] {
        std::fs::create_dir_all(d).map_err(io("create", d))?;
    }
    // One worker per store: an exclusive lock held for the process's life.
    let lock_path = dir.join("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io("open", &lock_path))?;
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| ServeError::Busy(lock_path.clone()))?;

    let engine = match cfg.db.as_deref() {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let id = crate::fleet::worker_id(&dir).map_err(io("read or make worker id", &dir))?;
            Engine::Postgres(
                PgStore::open(url, &id)
                    .await?
                    .with_lease(cfg.lease)
                    .with_output_dir(output_dir.clone()),
            )
        }
        db => {
            let path = db.map_or_else(|| cfg.root.join("jobs.db"), PathBuf::from);
            Engine::Sqlite(Box::new(Queue::open(&path).await?))
        }
    };

    // Recovery: what a killed worker left running is dead (its launchers
    // had a parent-death signal); clean up as `skiff gc` does, then end
    // those attempts as killed and retry their jobs.
    let run_root = cfg.root.join("run");
    collect_garbage(&cfg.root, &run_root).await?;
    let lost = match &engine {
        Engine::Sqlite(q) => q.recover_running().await?.len(),
        Engine::Postgres(pg) => pg.recover_mine().await?.len(),
    };
    crate::metrics::worker_lost(lost);
    if lost > 0 {
        tracing::warn!(jobs = lost, "attempts lost with the previous worker");
    }

    let capacity = Capacity {
        memory_bytes: cfg
            .capacity_memory
            .unwrap_or_else(|| host_memory().saturating_sub(1 << 30).max(1 << 28)),
        cpus: cfg
            .capacity_cpus
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()) as f64),
    };
    let slots = Slots::start(
        cfg.launchers.max(1),
        &LauncherConfig {
            exe: cfg.exe.clone(),
            root: cfg.root.clone(),
            output_dir: output_dir.clone(),
            payload_dir,
            output_cap: cfg.output_cap,
            warm: cfg.warm,
            volumes: volumes.clone(),
            code: match &engine {
                Engine::Sqlite(_) => None,
                Engine::Postgres(pg) => Some(Arc::new(crate::code_fetch::CodeFetch::new(
                    tokio::runtime::Handle::current(),
                    Arc::new(pg.clone()),
                    cfg.root.clone(),
                ))),
            },
            images: cfg.pull.clone().map(|opts| {
                Arc::new(crate::image_pull::RegistryPulls::new(
                    cfg.root.clone(),
                    opts,
                )) as Arc<dyn crate::launchers::JobImages>
            }),
        },
    );
    let wake = Arc::new(Notify::new());
    let (changed, _) = tokio::sync::broadcast::channel(1024);
    let (stop_tx, stop_rx) = watch::channel(false);
    // A fleet worker keeps heartbeating (its leases) through the drain,
    // and stops only once its dispatcher has.
    let (fleet_stop_tx, fleet_stop_rx) = watch::channel(false);
    let store: Arc<dyn Storage> = match &engine {
        Engine::Sqlite(q) => Arc::new(Queue::clone(q)),
        Engine::Postgres(pg) => Arc::new(pg.clone()),
    };
    let (dispatcher, running) = dispatch::Dispatch {
        queue: store.clone(),
        capacity,
        wake: wake.clone(),
        changed: changed.clone(),
        drain: cfg.drain,
        run_root: run_root.clone(),
    }
    .start(slots, stop_rx);

    // Schedules and webhook deliveries, on either engine (on a fleet, each
    // slot fires once and each delivery is leased by one worker). A fleet
    // also runs heartbeats, the reaper and wake-ups.
    let (schedules, hooks, webhooks): (Schedules, Arc<dyn HookStorage>, Arc<dyn WebhookStorage>) =
        match &engine {
            Engine::Sqlite(q) => {
                let q = Queue::clone(q);
                (Schedules::new(q.clone()), Arc::new(q.clone()), Arc::new(q))
            }
            Engine::Postgres(pg) => (
                Schedules::on(Arc::new(pg.clone()), store.clone()),
                Arc::new(pg.clone()),
                Arc::new(pg.clone()),
            ),
        };
    let mut tasks = vec![
        tokio::spawn(crate::schedules::run(
            schedules.clone(),
            wake.clone(),
            stop_tx.subscribe(),
        )),
        tokio::spawn(crate::webhooks::run(
            webhooks.clone(),
            store.clone(),
            stop_tx.subscribe(),
        )),
    ];
    match &engine {
        Engine::Sqlite(_) => {}
        Engine::Postgres(pg) => {
            let fleet = crate::fleet::Fleet {
                store: pg.clone(),
                running,
                wake: wake.clone(),
                changed: changed.clone(),
                store_root: cfg.root.clone(),
                run_root: run_root.clone(),
                info: WorkerInfo {
                    host: crate::fleet::host_name(),
                    address: cfg.listen.map(|a| a.to_string()),
                    slots: cfg.launchers.max(1) as i64,
                    memory_bytes: capacity.memory_bytes as i64,
                    cpus: capacity.cpus,
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    ..Default::default()
                },
                lease: cfg.lease,
            };
            tasks.push(tokio::spawn(fleet.run(fleet_stop_rx)));
        }
    }
    let socket = cfg
        .socket
        .clone()
        .unwrap_or_else(|| cfg.root.join("skiff.sock"));
    match std::fs::remove_file(&socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(ServeError::Io {
                what: "remove stale socket",
                path: socket,
                source: e,
            })
        }
        _ => {}
    }
    let listener = UnixListener::bind(&socket).map_err(io("bind", &socket))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o660))
        .map_err(io("chmod", &socket))?;
    let app = router(AppState {
        fleet: match &engine {
            Engine::Sqlite(_) => None,
            Engine::Postgres(pg) => Some(pg.clone()),
        },
        store,
        wake,
        changed,
        store_root: cfg.root.clone(),
        output_dir,
        run_root: run_root.clone(),
        capacity,
        metrics,
        volumes,
        slots: cfg.launchers.max(1) as i64,
        schedules,
        hooks,
        webhooks,
        queue_settings: match &engine {
            Engine::Sqlite(q) => Arc::new(Queue::clone(q)),
            Engine::Postgres(pg) => Arc::new(pg.clone()),
        },
        codes: match &engine {
            Engine::Sqlite(q) => Arc::new(Queue::clone(q)),
            Engine::Postgres(pg) => Arc::new(pg.clone()),
        },
        pulls: cfg.pull.is_some(),
    });
    let tcp = match (cfg.listen, token) {
        (Some(addr), Some(token)) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Listen { addr, source })?;
            tracing::info!(%addr, "serving on TCP (bearer token)");
            Some((l, crate::api::auth::require(app.clone(), token)))
        }
        _ => None,
    };
    ready();
    tracing::info!(socket = %socket.display(), "serving");
    let shutdown = async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    let server = axum::serve(listener, app);
    let tcp_server = async {
        match tcp {
            Some((l, app)) => axum::serve(l, app).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = server => {
            if let Err(e) = r {
                tracing::error!("API server: {e}");
            }
        }
        r = tcp_server => {
            if let Err(e) = r {
                tracing::error!("API server (TCP): {e}");
            }
        }
        _ = shutdown => {}
    }
    stopping();
    tracing::info!("stopping: no new jobs; draining");
    let _ = std::fs::remove_file(&socket);
    let _ = stop_tx.send(true);
    let _ = dispatcher.await;
    let _ = fleet_stop_tx.send(true);
    // What a crash before this worker left and its start-up collection could
    // not yet take (a launcher still exiting) is collected on the way out.
    if let Err(e) = collect_garbage(&cfg.root, &run_root).await {
        tracing::warn!("collect garbage at exit: {e}");
    }
    for t in tasks {
        let _ = t.await;
    }
    match engine {
        Engine::Sqlite(q) => q.close().await,
        Engine::Postgres(pg) => pg.pool().close().await,
    }
    Ok(())
}
