//! `skiff run`, `skiff gc` and the hidden launcher subcommand.
//! (Placeholder: owned by the runtime work.)

use std::path::Path;

/// Exit status when skiff itself fails.
pub const EXIT_SKIFF_FAILED: u8 = 125;

/// Arguments of `skiff run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Image reference or archive path.
    pub image: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Arguments of `skiff gc`.
#[derive(Debug, clap::Args)]
pub struct GcArgs {}

/// Arguments of the hidden launcher subcommand.
#[derive(Debug, clap::Args)]
pub struct LauncherArgs {}

/// Run a job.
pub fn run(_root: &Path, _args: RunArgs) -> anyhow::Result<u8> {
    anyhow::bail!("skiff run is not implemented yet")
}

/// Clean up after killed jobs.
pub fn gc(_root: &Path, _args: GcArgs) -> anyhow::Result<()> {
    anyhow::bail!("skiff gc is not implemented yet")
}

/// Serve launches for a pool.
pub fn launcher(_root: &Path, _args: LauncherArgs) -> anyhow::Result<()> {
    anyhow::bail!("the launcher is not implemented yet")
}
