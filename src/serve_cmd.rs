//! `skiff serve`: the worker, under systemd's notify protocol when started
//! by it (READY, STOPPING, WATCHDOG).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;

/// `skiff serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Job database: a SQLite file (default ROOT/jobs.db), or a
    /// postgres://USER@HOST/DB URL that a fleet of workers shares.
    #[arg(long, value_name = "PATH|URL")]
    pub db: Option<String>,
    /// With a PostgreSQL queue: seconds a worker holds the jobs it runs
    /// without a heartbeat (three per lease); a worker silent for longer
    /// loses them to the fleet.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub lease: u64,
    /// API socket (default ROOT/skiff.sock, mode 0660).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Launcher processes: jobs run at once.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub launchers: usize,
    /// Memory the running jobs' limits may add up to (default: host memory less 1 GiB).
    #[arg(long = "capacity-memory", value_name = "SIZE")]
    pub capacity_memory: Option<String>,
    /// CPUs the running jobs' limits may add up to (default: the host's).
    #[arg(long = "capacity-cpus", value_name = "N")]
    pub capacity_cpus: Option<f64>,
    /// Seconds SIGTERM waits for running jobs before stopping and requeueing them.
    #[arg(long = "drain-timeout", value_name = "SECS", default_value_t = 30)]
    pub drain_timeout: u64,
    /// Bytes of output kept per stream and attempt.
    #[arg(long = "output-cap", value_name = "SIZE", default_value = "16m")]
    pub output_cap: String,
    /// Warm sandboxes per launcher (0: cold launches).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub warm: usize,
    /// Also serve the API on TCP ADDR:PORT; every request but /healthz must
    /// carry `Authorization: Bearer TOKEN` (needs --token-file).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
    /// File holding the bearer token TCP clients must present (trimmed; not empty).
    #[arg(long = "token-file", value_name = "PATH", requires = "listen")]
    pub token_file: Option<PathBuf>,
    /// Let API jobs bind-mount host paths beneath DIR (repeatable; by
    /// default they may mount none). Paths are opened beneath DIR without
    /// following symlinks.
    #[arg(long = "allow-volume", value_name = "DIR")]
    pub allow_volume: Vec<PathBuf>,
    /// Pull images jobs name that the store lacks: missing (the default
    /// once a registry is configured) or never (jobs naming them are
    /// refused at submit; the default otherwise).
    #[arg(long, value_parser = ["missing", "never"])]
    pub pull: Option<String>,
    #[command(flatten)]
    pub registry: crate::pull_cmd::RegistryArgs,
}

/// Run the worker until SIGTERM.
pub fn run(root: &Path, args: ServeArgs) -> anyhow::Result<u8> {
    let capacity_memory = args
        .capacity_memory
        .as_deref()
        .map(|s| runtime::job::parse_size("--capacity-memory", s))
        .transpose()?;
    if let Some(c) = args.capacity_cpus {
        anyhow::ensure!(
            c.is_finite() && c > 0.0,
            "--capacity-cpus {c}: must be positive"
        );
    }
    let output_cap = runtime::job::parse_size("--output-cap", &args.output_cap)?;
    if let Some(addr) = args.listen {
        anyhow::ensure!(
            args.token_file.is_some(),
            "--listen {addr} needs --token-file: TCP clients must present a bearer token"
        );
    }
    let cfg = scheduler::serve::ServeConfig {
        root: root.to_path_buf(),
        db: args.db,
        lease: Duration::from_secs(args.lease.max(1)),
        socket: args.socket,
        launchers: args.launchers,
        capacity_memory,
        capacity_cpus: args.capacity_cpus,
        drain: Duration::from_secs(args.drain_timeout),
        output_cap,
        warm: args.warm,
        exe: std::env::current_exe().context("finding the skiff binary")?,
        listen: args.listen,
        token_file: args.token_file,
        allow_volumes: args.allow_volume,
        pull: match args.pull.as_deref() {
            Some("never") => None,
            Some(_) => Some(args.registry.options(None, true)?),
            None if args.registry.configured()? => Some(args.registry.options(None, true)?),
            None => None,
        },
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        // systemd's watchdog: ping at half the interval it asks for.
        let mut usec = 0;
        if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
            let every = Duration::from_micros(usec / 2);
            tokio::spawn(async move {
                loop {
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                    tokio::time::sleep(every).await;
                }
            });
        }
        scheduler::serve::serve(
            cfg,
            || {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
            },
            || {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
            },
        )
        .await
    })?;
    Ok(0)
}
