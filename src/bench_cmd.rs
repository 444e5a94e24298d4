//! `skiff bench …`: measure skiff against other tools on this host. The
//! work is done by the `bench` crate; this module parses arguments and
//! prints.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use bench::import::{self, Contender, ImportConfig};

/// Benchmark arguments.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
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

    /// Seconds to wait after the last bulk delete in --workdir before timing
    /// (ext4 creates files slowly for a while after one).
    #[arg(long, value_name = "SECS", default_value_t = import::DEFAULT_SETTLE.as_secs())]
    pub settle: u64,

    /// Leave the run output in WORKDIR/trash instead of deleting it at the end.
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
        BenchCommand::Import(a) => run_import(a),
    }
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
