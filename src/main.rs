//! The `skiff` command line: argument parsing, logging setup and exit codes.
//! All real work lives in the `imagestore`, `runtime` and `bench` crates.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench_cmd;
mod check_cmd;
mod code_cmd;
mod image_cmd;
mod jobs_cmd;
mod matrix_cmd;
mod progress;
mod pull_cmd;
mod run_cmd;
mod schedule_cmd;
mod serve_cmd;
mod store_cmd;

/// skiff: run short-lived container jobs from a local image store, with no daemon.
#[derive(Debug, Parser)]
#[command(name = "skiff", version, about, propagate_version = true)]
struct Cli {
    /// Store root directory.
    #[arg(long, global = true, env = "SKIFF_ROOT", default_value = imagestore::DEFAULT_ROOT)]
    root: PathBuf,

    /// Log more (repeat for more detail). `SKIFF_LOG` takes a tracing filter.
    #[arg(long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage images in the local store.
    Image {
        #[command(subcommand)]
        command: image_cmd::ImageCommand,
    },
    /// Export images to one file, and seed a store from one (no registry).
    Store {
        #[command(subcommand)]
        command: store_cmd::StoreCommand,
    },
    /// Run a job from an image, like `docker run`.
    #[command(disable_help_flag = true)]
    Run(Box<run_cmd::RunArgs>),
    /// Measure skiff against other tools on this host.
    Bench(Box<bench_cmd::BenchArgs>),
    /// Probe this host: what skiff can use here (exit 0 ok, 1 unusable, 2 degraded).
    Check(check_cmd::CheckArgs),
    /// Run the conformance suite across kernels × cgroup modes × runtimes.
    Matrix(matrix_cmd::MatrixArgs),
    /// Internal: pid 1 of a `skiff matrix` virtual machine.
    #[command(hide = true, name = "matrix-guest")]
    MatrixGuest(matrix_cmd::GuestArgs),
    /// Find and clean up after jobs whose `skiff` was killed.
    Gc(run_cmd::GcArgs),
    /// Run the job worker: a durable queue and a REST API on ROOT/skiff.sock.
    Serve(serve_cmd::ServeArgs),
    /// Submit a job to the worker.
    Submit(Box<jobs_cmd::SubmitArgs>),
    /// List, show, read, cancel and retry the worker's jobs.
    Jobs {
        #[command(subcommand)]
        command: jobs_cmd::JobsCommand,
    },
    /// Fire a job on a cron expression or every N seconds: add, ls, rm.
    Schedule {
        #[command(subcommand)]
        command: schedule_cmd::ScheduleCommand,
    },
    /// Code packages on the worker: a base image plus your code as one layer.
    Code {
        #[command(subcommand)]
        command: code_cmd::CodeCommand,
    },
    /// Internal: a single-threaded launcher process serving a pool.
    #[command(hide = true)]
    Launcher(run_cmd::LauncherArgs),
}

fn init_logging(verbose: u8) {
    // libcontainer and libcgroups warn about controllers this host lacks
    // (e.g. hugetlb on hybrid v1) on every launch: keep them quiet.
    let default = match verbose {
        0 => "warn,libcgroups=error,libcontainer=error",
        1 => "info,libcgroups=error,libcontainer=error",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// Print an error with its whole cause chain.
fn report(err: &anyhow::Error) {
    let mut msg = format!("skiff: error: {err}");
    for cause in err.chain().skip(1) {
        msg.push_str(&format!(": {cause}"));
    }
    eprintln!("{msg}");
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Run(_) | Command::Launcher(_) | Command::Check(_)
    ) {
        // (`matrix-guest` does it itself, once it has mounted /proc.)
        // Jobs must never be able to write the binary they were cloned
        // from: re-execute from a read-only bind mount of it first.
        if let Err(e) = runtime::readonly_exe::reexec_read_only() {
            // `check` still diagnoses a host where this fails (e.g. not
            // root); its job probes then report why they cannot launch.
            if !matches!(cli.command, Command::Check(_)) {
                report(&anyhow::Error::new(e));
                return ExitCode::from(run_cmd::EXIT_SKIFF_FAILED);
            }
        }
    }
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Image { command } => image_cmd::run(&cli.root, command).map(|()| 0u8),
        Command::Store { command } => store_cmd::run(&cli.root, command).map(|()| 0u8),
        Command::Run(args) => run_cmd::run(&cli.root, *args),
        Command::Bench(args) => bench_cmd::run(&cli.root, *args).map(|()| 0u8),
        Command::Check(args) => check_cmd::run(&cli.root, args),
        Command::Matrix(args) => matrix_cmd::run(args),
        Command::MatrixGuest(args) => matrix_cmd::guest(args),
        Command::Gc(args) => run_cmd::gc(&cli.root, args).map(|()| 0u8),
        Command::Launcher(args) => run_cmd::launcher(&cli.root, args).map(|()| 0u8),
        Command::Serve(args) => serve_cmd::run(&cli.root, args),
        Command::Code { command } => code_cmd::run(&cli.root, command),
        Command::Submit(args) => jobs_cmd::submit(&cli.root, *args),
        Command::Jobs { command } => jobs_cmd::jobs(&cli.root, command),
        Command::Schedule { command } => schedule_cmd::run(&cli.root, command),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            report(&err);
            // 125: skiff itself failed (docker's convention); image commands use it too.
            ExitCode::from(run_cmd::EXIT_SKIFF_FAILED)
        }
    }
}
