//! `skiff code push|ls|rm`: code packages on the worker.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use crate::jobs_cmd::{block_on, client, ok, urlencode, Conn};

/// `skiff code` subcommands.
#[derive(Debug, Subcommand)]
pub enum CodeCommand {
    /// Upload a directory (or a tar) as a package's code layer above a base image.
    Push {
        #[command(flatten)]
        conn: Conn,
        /// The base image.
        #[arg(long, value_name = "IMAGE")]
        image: String,
        /// The package's default command, as a JSON array (e.g. '["sh","/app/run.sh"]').
        #[arg(long, value_name = "JSON")]
        command: Option<String>,
        /// The most of the package's jobs that run at once (default: no cap).
        #[arg(long = "max-concurrency", value_name = "N")]
        max_concurrency: Option<u32>,
        /// Where the code goes in the image (a directory is stored beneath it).
        #[arg(long, value_name = "DIR", default_value = "/app")]
        dest: String,
        /// Package name.
        name: String,
        /// A directory, or a tar file (plain or gzip) used as is.
        path: PathBuf,
    },
    /// List packages.
    Ls {
        #[command(flatten)]
        conn: Conn,
    },
    /// Remove a package (and its image).
    Rm {
        #[command(flatten)]
        conn: Conn,
        /// Package name.
        name: String,
    },
}

/// A tar of `dir`'s contents beneath `dest` (relative, e.g. `app/`).
fn tar_dir(dir: &Path, dest: &str) -> anyhow::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let dest = dest.trim_matches('/');
    b.append_dir_all(if dest.is_empty() { "." } else { dest }, dir)
        .with_context(|| format!("archiving {}", dir.display()))?;
    b.into_inner().context("finishing the tar")
}

/// Run a `skiff code` command.
pub fn run(root: &Path, cmd: CodeCommand) -> anyhow::Result<u8> {
    block_on(async {
        match cmd {
            CodeCommand::Push {
                conn,
                image,
                command,
                max_concurrency,
                dest,
                name,
                path,
            } => {
                let body = if path.is_dir() {
                    tar_dir(&path, &dest)?
                } else {
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?
                };
                let mut q = format!("/v1/code/{}?image={}", urlencode(&name), urlencode(&image));
                if let Some(c) = command {
                    q.push_str(&format!("&command={}", urlencode(&c)));
                }
                if let Some(m) = max_concurrency {
                    q.push_str(&format!("&max_concurrency={m}"));
                }
                let v = ok(client(root, &conn).call("POST", &q, Some(body)).await?)?;
                if conn.json {
                    println!("{v}");
                } else {
                    println!(
                        "{} {} (base {}, {} layer(s) unpacked)",
                        v["package"]["name"].as_str().unwrap_or_default(),
                        v["package"]["image_id"].as_str().unwrap_or_default(),
                        v["package"]["base_image"].as_str().unwrap_or_default(),
                        v["layers_unpacked"]
                    );
                }
                Ok(0)
            }
            CodeCommand::Ls { conn } => {
                let v = ok(client(root, &conn).call("GET", "/v1/code", None).await?)?;
                if conn.json {
                    println!("{v}");
                } else {
                    for p in v["packages"].as_array().into_iter().flatten() {
                        println!(
                            "{}  base {}  {}",
                            p["name"].as_str().unwrap_or_default(),
                            p["base_image"].as_str().unwrap_or_default(),
                            p["image_id"].as_str().unwrap_or_default()
                        );
                    }
                }
                Ok(0)
            }
            CodeCommand::Rm { conn, name } => {
                let path = format!("/v1/code/{}", urlencode(&name));
                let v = ok(client(root, &conn).call("DELETE", &path, None).await?)?;
                if conn.json {
                    println!("{v}");
                } else {
                    println!("removed {name}");
                }
                Ok(0)
            }
        }
    })?
}
