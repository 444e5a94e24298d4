//! `skiff store …`: export the store's images to one file, and seed a
//! store from one (a new host with no registry).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use imagestore::Store;

/// Store subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Write images, their snapshots and blobs to one file (`-`: stdout)
    /// that `skiff store seed` loads on another host.
    Export {
        /// An image to export (repeatable; default: every image).
        #[arg(long = "image", value_name = "REF")]
        images: Vec<String>,
        /// The file to write, or `-` for stdout.
        file: String,
        /// Print a JSON report (to stderr when writing to stdout).
        #[arg(long)]
        json: bool,
    },
    /// Load an export (`-`: stdin) into this store, verifying every digest;
    /// what the store holds already is not written again.
    Seed {
        /// The export file, or `-` for stdin.
        file: String,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
    },
}

/// Run a store subcommand.
pub fn run(root: &Path, command: StoreCommand) -> anyhow::Result<()> {
    let store = Store::open(root).with_context(|| format!("open store {}", root.display()))?;
    match command {
        StoreCommand::Export { images, file, json } => {
            let report = if file == "-" {
                let out = std::io::stdout().lock();
                store.export(&images, BufWriter::with_capacity(1 << 20, out))?
            } else {
                let tmp = format!("{file}.partial");
                let f = File::create(&tmp).with_context(|| format!("create {tmp}"))?;
                let r = store.export(&images, BufWriter::with_capacity(1 << 20, &f));
                let r = r.and_then(|r| {
                    f.sync_all().map_err(|source| imagestore::Error::Io {
                        op: "write",
                        path: tmp.clone().into(),
                        source,
                    })?;
                    Ok(r)
                });
                match r {
                    Ok(r) => {
                        std::fs::rename(&tmp, &file)
                            .with_context(|| format!("rename {tmp} to {file}"))?;
                        r
                    }
                    Err(e) => {
                        let _ = std::fs::remove_file(&tmp);
                        return Err(e.into());
                    }
                }
            };
            let line = if json {
                serde_json::to_string_pretty(&report)?
            } else {
                format!(
                    "exported {} images, {} snapshots: {} bytes, {}",
                    report.images, report.snapshots, report.bytes, report.digest
                )
            };
            if file == "-" || !json {
                eprintln!("{line}");
            } else {
                writeln!(std::io::stdout(), "{line}")?;
            }
        }
        StoreCommand::Seed { file, json } => {
            let report = if file == "-" {
                store.seed(BufReader::with_capacity(1 << 20, std::io::stdin().lock()))?
            } else {
                let f = File::open(&file).with_context(|| format!("open {file}"))?;
                store.seed(BufReader::with_capacity(1 << 20, f))?
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "seeded {} images: {} snapshots unpacked, {} already here; {} blobs written, {} already here",
                    report.images.len(),
                    report.snapshots_unpacked,
                    report.snapshots_reused,
                    report.blobs_written,
                    report.blobs_reused
                );
            }
        }
    }
    Ok(())
}
