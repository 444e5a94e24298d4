//! `skiff image …`
use std::path::Path;

/// Image subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {}

/// Run an image subcommand.
pub fn run(_root: &Path, cmd: ImageCommand) -> anyhow::Result<()> {
    match cmd {}
}
