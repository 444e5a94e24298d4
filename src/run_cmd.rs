//! `skiff run`, `skiff gc` and the hidden `skiff launcher` subcommand.
//! Argument parsing only: the work is in the `runtime` crate.

use std::path::{Path, PathBuf};

use anyhow::Context;
use imagestore::{ImportOptions, Store};
use runtime::job::{parse_cpus, parse_duration_for, parse_size, Via};
use runtime::{Backend, JobIo, JobSpec, Limits, Runner, ScratchMode, SeccompMode};

/// Exit status when skiff itself fails.
pub const EXIT_SKIFF_FAILED: u8 = runtime::exit_code::SKIFF_FAILED as u8;

/// Arguments of `skiff run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from skiff's).
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the job (created if missing).
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// User: user, uid, user:group or uid:gid (from the image's /etc/passwd and /etc/group).
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Override the image's ENTRYPOINT ("" clears it; the image's CMD is dropped too).
    #[arg(long, allow_hyphen_values = true)]
    pub entrypoint: Option<String>,
    /// Hostname (default: the first 12 characters of the job name).
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Print help (`-h` is `--hostname`, as in `docker run`).
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Add a supplementary group: a gid, or a name in the image's /etc/group.
    #[arg(long = "group-add", value_name = "GROUP")]
    pub group_add: Vec<String>,
    /// Memory limit, e.g. 64m or 1g.
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Memory plus swap, e.g. 128m, or -1 for unlimited swap (needs -m;
    /// without it a job gets no swap).
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// CPU quota in CPUs, e.g. 0.5 (0.01 to the host's CPUs; 0: no limit).
    #[arg(long, allow_hyphen_values = true)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight, 2 to 262144).
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    /// Maximum number of processes (at least 2; 0 or -1: no limit, as docker).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Network: none (a new namespace with lo up) or host.
    #[arg(long, default_value = "none")]
    pub network: String,
    /// Mount the root filesystem read-only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Bind-mount a host path: HOST:CONTAINER[:ro].
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Mount a tmpfs: PATH[:OPTIONS], docker's syntax (size=, mode=, uid=,
    /// gid=, nr_inodes=, ro, rw, exec, noexec, suid, nosuid, dev, nodev).
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Keep stdin open and copy it to the job.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Stop the job after DURATION (e.g. 30s): SIGTERM, then SIGKILL after --stop-timeout.
    #[arg(long)]
    pub timeout: Option<String>,
    /// Grace period between SIGTERM and SIGKILL.
    #[arg(long = "stop-timeout", default_value = "10s")]
    pub stop_timeout: String,
    /// Job name (default: random).
    #[arg(long)]
    pub name: Option<String>,
    /// Runtime: libcontainer (in-process, default), runc, crun, youki or a path.
    #[arg(long, env = "SKIFF_RUNTIME", default_value = "libcontainer")]
    pub runtime: String,
    /// Accepted for docker compatibility: jobs are always removed.
    #[arg(long)]
    pub rm: bool,
    /// Run the job through a warm sandbox, as a pool launcher with
    /// `--warm` does: a sandbox is created, waits in skiff's executor, and
    /// the job is handed to it. Made for this one job, so no faster; it
    /// shows that path gives the same results (libcontainer, no `-i`).
    #[arg(long)]
    pub warm: bool,
    /// Add a capability (or ALL).
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop a capability (or ALL).
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Security options: seccomp=unconfined; no-new-privileges=false lets
    /// setuid binaries gain privileges (no_new_privs is on by default,
    /// unlike Docker).
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Set an rlimit: NAME=SOFT[:HARD] (Docker's names: nofile, nproc,
    /// core, stack, ...; -1 for unlimited). Others are inherited from
    /// skiff, and no hard limit may exceed skiff's own.
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// Where the writable layer lives: tmpfs (default) or disk.
    #[arg(long, default_value = "tmpfs")]
    pub scratch: String,
    /// Size of the tmpfs writable layer (default: the memory limit, else 1g).
    #[arg(long = "scratch-size")]
    pub scratch_size: Option<String>,
    /// Print a JSON result object on stdout after the job's output.
    #[arg(long)]
    pub json: bool,
    /// Pull the image: always, missing (when the store lacks it; the
    /// default once a registry is configured) or never (the default otherwise).
    #[arg(long, value_parser = ["always", "missing", "never"])]
    pub pull: Option<String>,
    #[command(flatten)]
    pub registry: crate::pull_cmd::RegistryArgs,
    /// IMAGE (a store reference, or an archive path to import first), then COMMAND [ARG...].
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "IMAGE [COMMAND [ARG...]]"
    )]
    pub image_and_command: Vec<String>,
}

/// Arguments of `skiff gc`.
#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Print a JSON report.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of the hidden launcher subcommand.
#[derive(Debug, clap::Args)]
pub struct LauncherArgs {
    /// The only directory `{"path": …}` output sinks may name files beneath
    /// (without it, output goes only to descriptors sent with the request).
    #[arg(long = "output-dir", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Warm sandboxes kept ready in total (0: off). Each waiting sandbox
    /// costs about 1 MB; see docs/warm-sandboxes.md.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub warm: usize,
    /// Warm sandboxes kept per image and shape.
    #[arg(long = "warm-per-key", value_name = "N", default_value_t = 2)]
    pub warm_per_key: usize,
    /// Seconds a warm sandbox may wait before it is discarded.
    #[arg(long = "warm-ttl", value_name = "SECS", default_value_t = 300)]
    pub warm_ttl: u64,
}

fn job_spec(args: &RunArgs) -> anyhow::Result<JobSpec> {
    let host_env = |k: &str| std::env::var(k).ok();
    let mut env = Vec::new();
    for f in &args.env_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading env file {}", f.display()))?;
        env.extend(runtime::image_process::parse_env_file(&text, host_env));
    }
    env.extend(
        args.env
            .iter()
            .filter_map(|e| runtime::image_process::expand_env_arg(e, host_env)),
    );
    let mut seccomp = SeccompMode::Default;
    let mut no_new_privileges = true;
    for opt in &args.security_opt {
        match opt.as_str() {
            "seccomp=unconfined" | "seccomp:unconfined" => seccomp = SeccompMode::Unconfined,
            "no-new-privileges" | "no-new-privileges=true" | "no-new-privileges:true" => {
                no_new_privileges = true
            }
            "no-new-privileges=false" | "no-new-privileges:false" => no_new_privileges = false,
            _ => anyhow::bail!(
                "unsupported --security-opt {opt:?} (supported: seccomp=unconfined, \
                 no-new-privileges[=true|false])"
            ),
        }
    }
    let scratch = match args.scratch.as_str() {
        "tmpfs" => ScratchMode::Tmpfs,
        "disk" => ScratchMode::Disk,
        s => anyhow::bail!("invalid --scratch {s:?}: expected tmpfs or disk"),
    };
    let mut it = args.image_and_command.iter().skip(1);
    let command: Vec<String> = it.by_ref().cloned().collect();
    Ok(JobSpec {
        name: args.name.clone().unwrap_or_default(),
        command,
        entrypoint: args.entrypoint.as_ref().map(|e| {
            if e.is_empty() {
                Vec::new()
            } else {
                vec![e.clone()]
            }
        }),
        env,
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        group_add: args.group_add.clone(),
        hostname: args.hostname.clone(),
        limits: Limits {
            memory_bytes: args
                .memory
                .as_deref()
                .map(|m| parse_size("--memory", m))
                .transpose()?,
            memory_swap_bytes: match args.memory_swap.as_deref() {
                None => None,
                Some("-1") => Some(-1),
                Some(s) => Some(
                    parse_size("--memory-swap", s)?
                        .try_into()
                        .unwrap_or(i64::MAX),
                ),
            },
            cpus: args.cpus.as_deref().map(parse_cpus).transpose()?,
            cpu_shares: args.cpu_shares,
            pids: args.pids_limit,
        },
        network: args.network.parse()?,
        read_only: args.read_only,
        volumes: args
            .volume
            .iter()
            .map(|v| v.parse())
            .collect::<Result<_, _>>()?,
        tmpfs: args.tmpfs.clone(),
        ulimits: args.ulimit.clone(),
        cap_add: args.cap_add.clone(),
        cap_drop: args.cap_drop.clone(),
        seccomp,
        no_new_privileges,
        stdin: args.interactive,
        timeout: args
            .timeout
            .as_deref()
            .map(|t| parse_duration_for("--timeout", t))
            .transpose()?,
        stop_timeout: parse_duration_for("--stop-timeout", &args.stop_timeout)?,
        scratch,
        scratch_size: args
            .scratch_size
            .as_deref()
            .map(runtime::job::parse_bytes)
            .transpose()?,
    })
}

/// IMAGE, resolved once (an archive path is imported first, a reference
/// pulled as `--pull` says); the job runs from the image's id.
fn resolve_image(store: &Store, args: &RunArgs) -> anyhow::Result<imagestore::ImageId> {
    let arg = &args.image_and_command[0];
    let policy = match args.pull.as_deref() {
        Some(p) => p,
        None if args.registry.configured()? => "missing",
        None => "never",
    };
    let pull = |store: &Store| -> anyhow::Result<imagestore::ImageId> {
        let opts = args.registry.options(None, true)?;
        let report = crate::pull_cmd::pull(store, arg, &opts)?;
        for w in &report.warnings {
            eprintln!("skiff: warning: {w}");
        }
        Ok(imagestore::ImageId::from_config(report.image.id))
    };
    // A reference, not an archive: `always` pulls before looking.
    if policy == "always" && imagestore::ImageRef::parse(arg).is_ok() && !Path::new(arg).exists() {
        return pull(store);
    }
    match store.resolve_or_import(arg, &ImportOptions::default()) {
        Ok(resolved) => {
            // An archive imported on the way: its warnings (skipped
            // artifacts, another platform) as `skiff image import` prints them.
            for w in resolved.import.iter().flat_map(|r| &r.warnings) {
                eprintln!("skiff: warning: {w}");
            }
            Ok(resolved.id)
        }
        Err(imagestore::ResolveError::Lookup(imagestore::Error::ImageNotFound(_)))
            if policy == "missing" =>
        {
            pull(store)
        }
        Err(e) => Err(e.into()),
    }
}

/// Run a job; returns its docker-style exit status. When the job's output
/// could not be written (e.g. a full disk), the error names the stream and
/// the status is 125 ([`EXIT_SKIFF_FAILED`]): skiff failed to deliver it.
pub fn run(root: &Path, args: RunArgs) -> anyhow::Result<u8> {
    let job = job_spec(&args)?;
    job.validate(Via::Cli)?;
    let backend = Backend::parse(&args.runtime)?;
    let store = Store::open(root).with_context(|| format!("opening store {}", root.display()))?;
    // IMAGE is resolved here, once (an archive path is imported first); the
    // job runs from the image's id.
    let image = resolve_image(&store, &args)?;
    let mut runner = Runner::new(store)?;
    let result = if args.warm {
        runner.run_pooled(
            &image,
            job,
            &backend,
            JobIo::Inherit,
            runtime::warm::WarmPolicy::Require,
        )?
    } else {
        runner.run(&image, job, &backend, JobIo::Inherit)?
    };
    runner.warm_shutdown();
    if args.json {
        use std::io::Write;
        let text = serde_json::to_string(&result)?;
        writeln!(std::io::stdout(), "{text}").context("writing the JSON result to stdout")?;
    }
    if !result.output_errors.is_empty() {
        for e in &result.output_errors {
            eprintln!("skiff: error: {e}");
        }
        return Ok(EXIT_SKIFF_FAILED);
    }
    Ok(runtime::exit_code::as_process_status(result.exit_code))
}

/// Clean up after killed jobs.
pub fn gc(root: &Path, args: GcArgs) -> anyhow::Result<()> {
    let store = Store::open(root).with_context(|| format!("opening store {}", root.display()))?;
    let cgroups = runtime::cgroups::detect(&runtime::cgroups::group_key(store.root()))?;
    let mut report = runtime::gc::collect(&store.root().join("run"), cgroups.as_ref())?;
    report.stale_leases = store.remove_stale_leases()?;
    match runtime::run::prune_group_cgroups(store.root(), cgroups.as_ref())? {
        Some(n) => report.group_cgroups = n,
        None => report.launchers_alive = true,
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "removed {} orphaned job(s), killed {} process(es), removed {} stray cgroup(s), \
             {} stale lease(s), {} empty group cgroup(s)",
            report.jobs.len(),
            report.killed,
            report.stray_cgroups.len(),
            report.stale_leases,
            report.group_cgroups,
        );
        if report.launchers_alive {
            println!(
                "kept the store's group cgroups: a launcher of this store is running \
                 (run `skiff gc` again when it has exited)"
            );
        }
    }
    Ok(())
}

/// Serve launches for a pool: stdin must be the launcher's end of a unix
/// socketpair; it carries one JSON request per line (with output
/// descriptors attached) and one JSON reply per line, one job at a time,
/// from this single-threaded process (protocol: `runtime::pool`).
pub fn launcher(root: &Path, args: LauncherArgs) -> anyhow::Result<()> {
    let sock = runtime::fd_passing::take_stdin_socket()
        .context("taking over the launcher socket on stdin")?;
    let dir = args
        .output_dir
        .as_deref()
        .map(runtime::output_dir::OutputDir::open)
        .transpose()?;
    let store = Store::open(root).with_context(|| format!("opening store {}", root.display()))?;
    let mut runner = Runner::new(store)?;
    runner.set_warm(runtime::warm::WarmConfig {
        total: args.warm,
        per_key: args.warm_per_key.max(1),
        ttl: std::time::Duration::from_secs(args.warm_ttl),
    });
    runtime::pool::serve(&mut runner, &sock, dir.as_ref())?;
    Ok(())
}
