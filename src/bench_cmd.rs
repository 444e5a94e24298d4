//! `skiff bench …`: measure skiff against other tools on this host. The
//! work is done by the `bench` crate; this module parses arguments and
//! prints.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use bench::import::{self, Contender, ImportConfig};
use bench::launch::{self, LaunchConfig};

/// Benchmark arguments. `skiff bench [OPTIONS]` with no subcommand is
/// `skiff bench launch [OPTIONS]`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,

    /// Without a subcommand: the options of `skiff bench launch`.
    #[command(flatten)]
    pub launch: LaunchArgs,
}

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Import throughput: skiff's image store against `tar -x` of the same
    /// layers, `podman load`, and `skopeo copy` + `umoci unpack`.
    ///
    /// Uses private, fresh stores under --workdir every round; the store
    /// named by --root is never touched.
    Import(ImportArgs),

    /// Launch latency and throughput: `skiff run`, skiff's launcher pool
    /// and the pool with warm sandboxes against runc, crun, podman, docker
    /// and the kernel's floor (`unshare`), on the same busybox job,
    /// interleaved round by round. Writes
    /// `launch.json` and SVG/PNG plots into --out. The default of `skiff bench`.
    ///
    /// Uses a private bench store under --workdir; the store named by --root
    /// is never touched.
    Launch(LaunchArgs),

    /// A soak: many jobs (default 10,000) through `skiff launcher`
    /// processes, printing each launcher's RSS, fds and mounts and the
    /// store's leftover cgroups, run directories and leases every --every
    /// jobs. Exits non-zero if a job failed or anything leaked.
    ///
    /// Uses a fresh store under --workdir; the store named by --root is
    /// never touched.
    Soak(SoakArgs),

    /// The worker through its real API: `true` jobs (default 10,000)
    /// submitted in batches to a real `skiff serve` child process over its
    /// unix socket, against the bare launcher pool on the same jobs,
    /// alternating round by round. Prints the enqueue rate, the steady
    /// throughput of both, submit→start and submit→complete latency and
    /// the goals (overhead ≤ 10%, ≥ 2,000 jobs/s accepted); writes
    /// `queue.json` into --out. Exits non-zero if a job did not complete.
    ///
    /// Uses a fresh store under --workdir, removed at the end; the store
    /// named by --root is never touched.
    Queue(QueueArgs),
}

/// `skiff bench queue` options.
#[derive(Debug, clap::Args)]
pub struct QueueArgs {
    /// A quick run: 1,000 jobs, one round of each.
    #[arg(long)]
    pub quick: bool,

    /// Jobs per round [default: 10,000, or 1,000 with --quick].
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,

    /// Jobs per `POST /v1/jobs`.
    #[arg(long, value_name = "N", default_value_t = bench::queue::DEFAULT_BATCH)]
    pub batch: usize,

    /// Launcher processes (`skiff serve --launchers N`, and the pool's).
    #[arg(long, value_name = "N", default_value_t = bench::queue::DEFAULT_LAUNCHERS)]
    pub launchers: usize,

    /// Rounds of each, alternating serve and pool [default: 2, or 1 with --quick].
    #[arg(long, value_name = "N")]
    pub rounds: Option<usize>,

    /// The image archive [default: vendor-images/busybox.tar].
    #[arg(long, value_name = "PATH")]
    pub image: Option<PathBuf>,

    /// Work directory; the store is WORKDIR/queue/store.
    #[arg(long, value_name = "DIR", default_value = import::DEFAULT_WORKDIR)]
    pub workdir: PathBuf,

    /// Write the results (`queue.json`) into this directory.
    #[arg(long, value_name = "DIR", default_value = "bench-results")]
    pub out: PathBuf,

    /// Print the results as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,

    /// No progress bar or notes on stderr.
    #[arg(long)]
    pub quiet: bool,

    /// NO-OP JOBS: measure the queue alone (SQLite and PostgreSQL, no
    /// container work; labelled so in every output). Never the default.
    #[arg(long)]
    pub noop: bool,

    /// With --noop: the PostgreSQL server (`postgres://…`; a new database
    /// on it per round) [default: a private cluster on this host].
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,

    /// With --noop: workers (each its own PostgreSQL store and id).
    #[arg(long, value_name = "N", default_value_t = 2, requires = "noop")]
    pub workers: usize,

    /// With --noop: slots per worker.
    #[arg(long, value_name = "N", default_value_t = 4, requires = "noop")]
    pub slots: usize,

    /// Container jobs through fleets of 1 to --hosts workers on one
    /// PostgreSQL (--db, or a private cluster), alternating; reported as
    /// ratios to one worker (they share this host's cores).
    #[arg(long, conflicts_with = "noop")]
    pub fleet: bool,

    /// With --fleet: the largest fleet.
    #[arg(long, value_name = "N", default_value_t = 3, requires = "fleet")]
    pub hosts: usize,
}

/// `skiff bench soak` options.
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// Jobs in all.
    #[arg(long, value_name = "N", default_value_t = bench::soak::DEFAULT_JOBS)]
    pub jobs: usize,

    /// Launcher processes (jobs go round-robin through them, in parallel).
    #[arg(long, value_name = "K", default_value_t = bench::soak::DEFAULT_LAUNCHERS)]
    pub launchers: usize,

    /// Take a sample every M jobs.
    #[arg(long, value_name = "M", default_value_t = bench::soak::DEFAULT_EVERY)]
    pub every: usize,

    /// Also write the samples and the summary as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// The image archive [default: vendor-images/busybox.tar].
    #[arg(long, value_name = "PATH")]
    pub image: Option<PathBuf>,

    /// Work directory; the soak's store is WORKDIR/soak/store.
    #[arg(long, value_name = "DIR", default_value = import::DEFAULT_WORKDIR)]
    pub workdir: PathBuf,

    /// No notes on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// `skiff bench launch` options.
#[derive(Debug, clap::Args)]
pub struct LaunchArgs {
    /// A quick run (under a minute): 15 rounds after 2 warm-up, fewer jobs
    /// per throughput level.
    #[arg(long)]
    pub quick: bool,

    /// Timed rounds [default: 100, or 15 with --quick].
    #[arg(long, value_name = "N")]
    pub rounds: Option<usize>,

    /// Untimed warm-up rounds [default: 5, or 2 with --quick].
    #[arg(long, value_name = "N")]
    pub warmup: Option<usize>,

    /// Contenders, comma-separated [default: all that are installed]:
    /// skiff, skiff-pool, skiff-warm, runc, crun, podman, docker, floor, true.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub contenders: Option<Vec<String>>,

    /// Skip the throughput runs.
    #[arg(long)]
    pub no_throughput: bool,

    /// Concurrency levels for throughput.
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_values_t = launch::DEFAULT_CONCURRENCY)]
    pub concurrency: Vec<usize>,

    /// Jobs per concurrency level [default: 8 per worker, at least 64; with
    /// --quick 3 per worker, at least 12].
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,

    /// The image archive [default: vendor-images/busybox.tar].
    #[arg(long, value_name = "PATH")]
    pub image: Option<PathBuf>,

    /// The job's command, split on spaces; it must exit 0.
    #[arg(long, value_name = "COMMAND", default_value = "/bin/true")]
    pub cmd: String,

    /// The job's memory limit (swap forbidden), for every contender.
    #[arg(long, value_name = "SIZE", default_value = "64m")]
    pub memory: String,

    /// The job's pids limit, for every contender.
    #[arg(long, value_name = "N", default_value_t = launch::DEFAULT_PIDS)]
    pub pids_limit: i64,

    /// Milliseconds of quiet before each timed launch (outside its time).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub pause: u64,

    /// Work directory: the bench store, bundles, podman's storage.
    #[arg(long, value_name = "DIR", default_value = import::DEFAULT_WORKDIR)]
    pub workdir: PathBuf,

    /// Write `launch.json` and the plots into this directory.
    #[arg(long, value_name = "DIR", default_value = "bench-results")]
    pub out: PathBuf,

    /// A fact about the host to record with the results (repeatable).
    #[arg(long, value_name = "TEXT")]
    pub host_note: Vec<String>,

    /// Print the results as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,

    /// No progress bar or notes on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// `skiff bench import` options.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Import this archive instead of the generated benchmark image.
    #[arg(long, value_name = "PATH")]
    pub image: Option<PathBuf>,

    /// Generate the image with gzip-compressed layers (measures decompression too).
    #[arg(long, conflicts_with = "image")]
    pub gzip: bool,

    /// Size of the generated image, in MB of uncompressed layers
    /// [default: 450, or 50 with --quick].
    #[arg(long, value_name = "MB", conflicts_with = "image")]
    pub size_mb: Option<u64>,

    /// Timed rounds [default: 5, or 3 with --quick].
    #[arg(long, value_name = "N")]
    pub rounds: Option<usize>,

    /// Untimed warm-up rounds before the timed ones.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub warmup: usize,

    /// A quick run: a ~50 MB image and 3 rounds.
    #[arg(long)]
    pub quick: bool,

    /// Contenders to run, comma-separated [default: all that are installed]:
    /// skiff, tar, tar-raw, tar-parallel, podman, skopeo-umoci.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub contenders: Option<Vec<String>>,

    /// Work directory: the cached image, run output and its trash.
    #[arg(long, value_name = "DIR", default_value = import::DEFAULT_WORKDIR)]
    pub workdir: PathBuf,

    /// Write the results (`import.json`) into this directory.
    #[arg(long, value_name = "DIR", default_value = "bench-results")]
    pub out: PathBuf,

    /// Seconds to wait after the last cleanup in --workdir before timing
    /// (ext4 without a journal creates files slowly for up to 6 minutes
    /// after a bulk delete).
    #[arg(long, value_name = "SECS", default_value_t = import::DEFAULT_SETTLE.as_secs())]
    pub settle: u64,

    /// Leave the run output in WORKDIR/trash instead of deleting it at the
    /// end (the next run then needs no settling; it deletes the trash after
    /// its own timed rounds).
    #[arg(long)]
    pub keep_trash: bool,

    /// Print the results as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,

    /// No progress bar or notes on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Run a benchmark.
pub fn run(_root: &Path, args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        Some(BenchCommand::Import(a)) => run_import(a),
        Some(BenchCommand::Launch(a)) => run_launch(a),
        Some(BenchCommand::Soak(a)) => run_soak(a),
        Some(BenchCommand::Queue(a)) => run_queue(a),
        None => run_launch(args.launch),
    }
}

fn run_launch(a: LaunchArgs) -> anyhow::Result<()> {
    let contenders = match &a.contenders {
        Some(list) => Some(
            list.iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| launch::Contender::parse(s))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let cfg = LaunchConfig {
        skiff_exe: std::env::current_exe().context("finding the skiff binary")?,
        image: a.image,
        command: a.cmd.split_whitespace().map(str::to_string).collect(),
        memory_bytes: runtime::job::parse_bytes(&a.memory)?,
        pids_limit: a.pids_limit,
        rounds: a.rounds.unwrap_or(if a.quick {
            launch::QUICK_ROUNDS
        } else {
            launch::DEFAULT_ROUNDS
        }),
        warmup: a.warmup.unwrap_or(if a.quick {
            launch::QUICK_WARMUP
        } else {
            launch::DEFAULT_WARMUP
        }),
        contenders,
        throughput: !a.no_throughput,
        concurrency: a.concurrency,
        jobs_per_level: a.jobs,
        quick: a.quick,
        pause: Duration::from_millis(a.pause),
        workdir: a.workdir,
        host_notes: a.host_note,
    };
    let ui = bench::Ui::new(a.quiet);
    let mut results = launch::run(&cfg, &ui).context("launch benchmark")?;
    let written = results.write(&a.out).context("writing the results")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print!("{}", results.table());
    }
    ui.note(format!("results: {}", written.json.display()));
    for p in &written.plots {
        ui.note(format!("plot: {}", p.display()));
    }
    Ok(())
}

fn run_soak(a: SoakArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let cfg = bench::soak::SoakConfig {
        skiff_exe: std::env::current_exe().context("finding the skiff binary")?,
        image: a.image,
        jobs: a.jobs,
        launchers: a.launchers,
        every: a.every,
        workdir: a.workdir,
    };
    let ui = bench::Ui::new(a.quiet);
    let results = bench::soak::run(&cfg, &ui, &mut |s| {
        println!("{}", s.line());
        let _ = std::io::stdout().flush();
    })
    .context("soak")?;
    if let Some(path) = &a.json {
        results.write_json(path).context("writing the results")?;
        ui.note(format!("results: {}", path.display()));
    }
    print!("{}", results.summary_text());
    if !results.ok() {
        anyhow::bail!(
            "soak failed: {} failed jobs, {} leaks",
            results.summary.failures,
            results.summary.leaks.len()
        );
    }
    Ok(())
}

fn run_queue(a: QueueArgs) -> anyhow::Result<()> {
    use bench::queue;
    if a.noop {
        return run_queue_noop(a);
    }
    if a.fleet {
        return run_queue_fleet(a);
    }
    if a.db.is_some() {
        anyhow::bail!("--db goes with --noop or --fleet");
    }
    let cfg = queue::QueueConfig {
        skiff_exe: std::env::current_exe().context("finding the skiff binary")?,
        image: a.image,
        jobs: a.jobs.unwrap_or(if a.quick {
            queue::QUICK_JOBS
        } else {
            queue::DEFAULT_JOBS
        }),
        batch: a.batch,
        launchers: a.launchers,
        rounds: a.rounds.unwrap_or(if a.quick {
            queue::QUICK_ROUNDS
        } else {
            queue::DEFAULT_ROUNDS
        }),
        workdir: a.workdir,
    };
    let ui = bench::Ui::new(a.quiet);
    let results = queue::run(&cfg, &ui).context("queue benchmark")?;
    let path = results.write_json(&a.out).context("writing the results")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print!("{}", results.table());
    }
    ui.note(format!("results: {}", path.display()));
    if !results.ok() {
        anyhow::bail!(
            "{} jobs did not complete (see the failures above)",
            results.summary.failed
        );
    }
    Ok(())
}

fn run_queue_fleet(a: QueueArgs) -> anyhow::Result<()> {
    use bench::queue::fleet;
    let cfg = fleet::FleetConfig {
        skiff_exe: std::env::current_exe().context("finding the skiff binary")?,
        image: a.image,
        db: a.db,
        jobs: a.jobs.unwrap_or(if a.quick { 500 } else { 5_000 }),
        batch: a.batch,
        launchers: a.launchers,
        rounds: a.rounds.unwrap_or(if a.quick { 1 } else { 3 }),
        max_workers: a.hosts,
        workdir: a.workdir,
    };
    let ui = bench::Ui::new(a.quiet);
    let results = fleet::run(&cfg, &ui).context("fleet benchmark")?;
    let path = results.write_json(&a.out).context("writing the results")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print!("{}", results.table());
    }
    ui.note(format!("results: {}", path.display()));
    if !results.ok() {
        anyhow::bail!("some jobs did not complete (see the rounds above)");
    }
    Ok(())
}

fn run_queue_noop(a: QueueArgs) -> anyhow::Result<()> {
    use bench::queue::noop;
    let cfg = noop::NoopConfig {
        db: a.db,
        jobs: a.jobs.unwrap_or(if a.quick { 2_000 } else { 20_000 }),
        batch: a.batch,
        rounds: a.rounds.unwrap_or(if a.quick { 1 } else { 3 }),
        workers: a.workers,
        slots: a.slots,
        workdir: a.workdir,
    };
    let ui = bench::Ui::new(a.quiet);
    let results = noop::run(&cfg, &ui).context("no-op queue benchmark")?;
    let path = results.write_json(&a.out).context("writing the results")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print!("{}", results.table());
    }
    ui.note(format!("results: {}", path.display()));
    Ok(())
}

fn run_import(a: ImportArgs) -> anyhow::Result<()> {
    let contenders = match &a.contenders {
        Some(list) => Some(
            list.iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| Contender::parse(s))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let cfg = ImportConfig {
        image: a.image,
        gzip: a.gzip,
        size_mb: a.size_mb.unwrap_or(if a.quick {
            import::QUICK_SIZE_MB
        } else {
            import::DEFAULT_SIZE_MB
        }),
        rounds: a.rounds.unwrap_or(if a.quick {
            import::QUICK_ROUNDS
        } else {
            import::DEFAULT_ROUNDS
        }),
        warmup: a.warmup,
        workdir: a.workdir,
        contenders,
        keep_trash: a.keep_trash,
        settle: Duration::from_secs(a.settle),
        ..ImportConfig::default()
    };
    let ui = bench::Ui::new(a.quiet);
    let results = import::run(&cfg, &ui).context("import benchmark")?;
    let path = results.write_json(&a.out).context("writing the results")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print!("{}", results.table());
    }
    ui.note(format!("results: {}", path.display()));
    Ok(())
}
