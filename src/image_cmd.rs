//! `skiff image …`: import, ls, inspect, rm, gc, verify.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use imagestore::{ImportOptions, Input, Platform, Store};

/// Image subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Import a `docker save` archive, OCI archive or OCI layout directory (`-` reads stdin).
    Import {
        /// Archive file, layout directory, or `-` for stdin.
        path: String,
        /// Tag the imported image NAME[:TAG].
        #[arg(long)]
        tag: Option<String>,
        /// Platform to take from multi-platform indexes (default: this host's).
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
    },
    /// List images.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show an image's record and configuration.
    Inspect {
        /// Tag, id or id prefix.
        reference: String,
        /// Print JSON (the default output is JSON too; kept for symmetry).
        #[arg(long)]
        json: bool,
    },
    /// Remove a tag, or an image with its tags; data goes at the next gc.
    Rm {
        /// Tag, id or id prefix.
        reference: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove blobs and snapshots no image or running job uses.
    Gc {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check the store: re-hash blobs, check snapshots against their layers,
    /// records and tags against what they name (exit 0 consistent, 1 damaged).
    Verify {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Remove what is broken (and what depends on it) so the next import
        /// redoes it, and the leftovers of interrupted operations.
        #[arg(long)]
        repair: bool,
    },
}

/// `skiff image verify`'s exit status when the store was found damaged
/// (also with `--repair`, which says what it removed).
pub const EXIT_STORE_DAMAGED: i32 = 1;

/// Run an image subcommand.
pub fn run(root: &Path, cmd: ImageCommand) -> anyhow::Result<()> {
    // Behave like other Unix tools when stdout is closed early (`| head`).
    // SAFETY: setting a signal disposition to SIG_DFL has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let store =
        Store::open(root).with_context(|| format!("opening the store at {}", root.display()))?;
    match cmd {
        ImageCommand::Import {
            path,
            tag,
            platform,
            json,
        } => import(&store, &path, tag, platform, json),
        ImageCommand::Ls { json } => ls(&store, json),
        ImageCommand::Inspect { reference, .. } => inspect(&store, &reference),
        ImageCommand::Rm { reference, json } => {
            let r = store.remove_image(&reference)?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                for t in &r.untagged {
                    println!("Untagged: {t}");
                }
                if let Some(d) = &r.deleted {
                    println!("Deleted: {d}");
                }
            }
            Ok(())
        }
        ImageCommand::Gc { json } => {
            let r = store.gc()?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "removed {} blobs ({} bytes), {} snapshots, {} orphaned dirs, {} temp files, {} dead import sessions; {} snapshots kept for running jobs",
                    r.blobs_removed, r.bytes_freed, r.snapshots_removed, r.orphan_dirs_removed,
                    r.temp_files_removed, r.sessions_removed, r.snapshots_leased
                );
            }
            Ok(())
        }
        ImageCommand::Verify { json, repair } => verify(&store, json, repair),
    }
}

/// `skiff image verify`: print the report; exit 1 when the store is damaged.
fn verify(store: &Store, json: bool, repair: bool) -> anyhow::Result<()> {
    let r = store.verify(repair).context("verifying the store")?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        for p in r.problems.iter().chain(&r.leftovers) {
            let done = if p.repaired { " [removed]" } else { "" };
            println!(
                "{:?} {}: {} ({}){done}",
                p.subject,
                p.name,
                p.detail,
                p.path.display()
            );
        }
        let state = match (r.damaged(), repair) {
            (false, _) => "consistent",
            (true, false) => "DAMAGED (run `skiff image verify --repair`, then re-import)",
            (true, true) => "was damaged; broken data removed, re-import the affected images",
        };
        println!(
            "checked {} blobs, {} snapshots, {} images, {} tags: {} problems, {} leftovers; store {state}",
            r.blobs_checked,
            r.snapshots_checked,
            r.images_checked,
            r.tags_checked,
            r.problems.len(),
            r.leftovers.len()
        );
    }
    if r.damaged() {
        use std::io::Write;
        std::io::stdout().flush()?;
        // main() maps errors to 125 ("skiff failed"); damage is a result, not a failure.
        std::process::exit(EXIT_STORE_DAMAGED);
    }
    Ok(())
}

/// A progress bar on a terminal, hidden otherwise or with `--json`.
fn progress(json: bool) -> indicatif::ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} unpacking [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Import an archive, a layout directory, or `-` (stdin). What kind of
/// input it is, imagestore decides (as for `skiff run ARCHIVE`).
pub fn import_path(
    store: &Store,
    path: &str,
    opts: &ImportOptions,
) -> anyhow::Result<imagestore::ImportReport> {
    let input = Input::from_arg(path);
    store
        .import(&input, opts)
        .with_context(|| format!("importing {}", input.display()))
}

fn import(
    store: &Store,
    path: &str,
    tag: Option<String>,
    platform: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let platform = platform.map(|p| Platform::parse(&p)).transpose()?;
    let opts = ImportOptions {
        tag,
        platform,
        progress: progress(json),
    };
    let report = import_path(store, path, &opts)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    for w in &report.warnings {
        eprintln!("skiff: warning: {w}");
    }
    for img in &report.images {
        let name = if img.refs.is_empty() {
            "<none>".to_string()
        } else {
            img.refs.join(", ")
        };
        println!(
            "Loaded image: {name} ({}, {}, {} layers)",
            img.id, img.platform, img.layers
        );
    }
    println!(
        "{} layers unpacked, {} already present ({})",
        report.layers_unpacked, report.layers_reused, report.format
    );
    Ok(())
}

#[derive(serde::Serialize)]
struct LsRow {
    reference: Option<String>,
    id: String,
    platform: String,
    layers: usize,
    size: u64,
    imported_at: u64,
}

fn ls(store: &Store, json: bool) -> anyhow::Result<()> {
    let tags = store.images().tags()?;
    let mut rows = Vec::new();
    for rec in store.images().list()? {
        let mut refs: Vec<&String> = tags
            .iter()
            .filter(|(_, id)| id == &rec.id)
            .map(|(r, _)| r)
            .collect();
        refs.sort();
        let mk = |reference: Option<String>| LsRow {
            reference,
            id: rec.id.to_string(),
            platform: rec.platform.clone(),
            layers: rec.layers.len(),
            size: rec.size(),
            imported_at: rec.imported_at,
        };
        if refs.is_empty() {
            rows.push(mk(None));
        }
        for r in refs {
            rows.push(mk(Some(r.clone())));
        }
    }
    rows.sort_by(|a, b| a.reference.cmp(&b.reference).then(a.id.cmp(&b.id)));
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<40} {:<14} {:<14} {:>6} {:>10}",
        "REFERENCE", "IMAGE ID", "PLATFORM", "LAYERS", "SIZE"
    );
    for r in rows {
        println!(
            "{:<40} {:<14} {:<14} {:>6} {:>10}",
            r.reference.as_deref().unwrap_or("<none>"),
            &r.id[7..19],
            r.platform,
            r.layers,
            human_size(r.size)
        );
    }
    Ok(())
}

fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

fn inspect(store: &Store, reference: &str) -> anyhow::Result<()> {
    let rec = store.resolve(reference)?;
    // Raw JSON, so configs that are not strictly OCI still show.
    let config: serde_json::Value = serde_json::from_slice(&store.content().read(&rec.config)?)?;
    let tags = store.images().tags_of(&rec.id)?;
    let rootfs = store.mount_description(&rec)?;
    let out = serde_json::json!({
        "id": rec.id,
        "refs": tags,
        "manifest": rec.manifest,
        "platform": rec.platform,
        "source_format": rec.source_format,
        "imported_at": rec.imported_at,
        "size": rec.size(),
        "layers": rec.layers,
        "rootfs": rootfs,
        "config": config,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
