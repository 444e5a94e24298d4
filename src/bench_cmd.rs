//! `skiff bench …` (placeholder until the benchmark lands).
use std::path::Path;

/// Benchmark arguments.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

/// Run a benchmark.
pub fn run(_root: &Path, _args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("skiff bench is not implemented yet")
}
