//! `skiff matrix`: the conformance suite across kernels × cgroup modes ×
//! runtimes (`compat::matrix`), and the hidden `skiff matrix-guest`, pid 1
//! of each matrix VM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use compat::matrix::{self, kernel, report, Options};

/// Arguments of `skiff matrix`.
#[derive(Debug, clap::Args)]
pub struct MatrixArgs {
    /// Kernel columns: `host`, or a Debian series with a cgroup mode booted
    /// in a QEMU VM (`6.1-v2`, `6.1-v1`, `6.12-v2`).
    #[arg(long, default_value = matrix::DEFAULT_KERNELS)]
    pub kernels: String,
    /// Runtimes: libcontainer (skiff's own path) and any of runc, crun,
    /// youki that are installed (absent ones show as such).
    #[arg(long, default_value = matrix::DEFAULT_RUNTIMES)]
    pub runtimes: String,
    /// Where matrix.{txt,md,json,html} and the VMs' console logs go.
    #[arg(long, default_value = "matrix-out")]
    pub out: PathBuf,
    /// Deadline per cell in seconds (a VM gets one per runtime, plus 60 s to boot).
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Kernel package cache.
    #[arg(long, env = "SKIFF_KERNEL_CACHE", default_value = kernel::DEFAULT_CACHE)]
    pub cache: PathBuf,
    /// Where the vendored images are (busybox.tar, compat.tar).
    #[arg(long, env = "SKIFF_VENDOR_IMAGES", value_name = "DIR")]
    pub vendor_images: Option<PathBuf>,
    /// A static busybox for the VMs' initramfs.
    #[arg(long, default_value = "/bin/busybox")]
    pub busybox: PathBuf,
    /// VM memory in MiB.
    #[arg(long, default_value_t = 1024)]
    pub memory: u32,
    /// VM CPUs.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// Also print the JSON report on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of the hidden `skiff matrix-guest`.
#[derive(Debug, clap::Args)]
pub struct GuestArgs {}

/// Run the matrix; exit 0 when every cell that ran passed, 1 otherwise.
pub fn run(args: MatrixArgs) -> anyhow::Result<u8> {
    let opts = Options {
        kernels: matrix::parse_kernels(&args.kernels)?,
        runtimes: matrix::parse_runtimes(&args.runtimes)?,
        out: args.out.clone(),
        timeout: Duration::from_secs(args.timeout.max(1)),
        cache: args.cache,
        skiff: std::env::current_exe().context("finding the skiff binary")?,
        vendor_images: crate::check_cmd::vendor_dir(args.vendor_images.as_deref()),
        busybox: args.busybox,
        memory_mb: args.memory,
        cpus: args.cpus,
    };
    let rep = matrix::run(&opts, &mut std::io::stderr())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        print!("{}", report::text(&rep));
        println!(
            "\nwritten: {}/matrix.{{txt,md,json,html}}",
            args.out.display()
        );
    }
    Ok(if rep.passed() { 0 } else { 1 })
}

/// Pid 1 of a matrix VM; never returns.
pub fn guest(_args: GuestArgs) -> anyhow::Result<u8> {
    matrix::guest::main()
}
