//! `skiff image …`: import, pull, ls, inspect, rm, gc, verify.

use std::path::Path;

use anyhow::Context;
use imagestore::{ImageRecord, ImageRef, ImportOptions, Input, Platform, Store};

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
        /// Import only the image this names, when the input holds several: a
        /// reference or tag, or a manifest digest or image id (a unique prefix).
        #[arg(long, value_name = "REF|DIGEST")]
        select: Option<String>,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
    },
    /// Pull an image from a registry, through its mirrors.
    Pull {
        /// NAME[:TAG] or NAME@DIGEST.
        reference: String,
        /// Platform to take from a multi-platform index (default: this host's).
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
        #[command(flatten)]
        registry: crate::pull_cmd::RegistryArgs,
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
            select,
            json,
        } => import(&store, &path, tag, platform, select, json),
        ImageCommand::Pull {
            reference,
            platform,
            registry,
            json,
        } => crate::pull_cmd::run(&store, &reference, &registry, platform, json),
        ImageCommand::Ls { json } => ls(&store, json),
        ImageCommand::Inspect { reference, .. } => inspect(&store, &reference),
        ImageCommand::Rm { reference, json } => {
            let r = store.remove_image(&reference)?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                for t in &r.untagged {
                    println!("Untagged: {}", familiar(t));
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
    select: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let platform = platform.map(|p| Platform::parse(&p)).transpose()?;
    let opts = ImportOptions {
        tag,
        platform,
        select,
        progress: crate::progress::bar(json, "unpacking"),
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
            img.refs
                .iter()
                .map(|r| familiar(r))
                .collect::<Vec<_>>()
                .join(", ")
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

/// How `docker` prints a stored reference: `busybox:latest` for
/// `docker.io/library/busybox:latest` (one it cannot parse, as it is).
fn familiar(reference: &str) -> String {
    ImageRef::parse(reference).map_or_else(|_| reference.to_string(), |r| r.familiar())
}

/// One row of `image ls`: an image under one of its tags (or none).
#[derive(serde::Serialize)]
struct LsRow {
    /// The full normalised reference, `docker.io/library/busybox:latest`.
    reference: Option<String>,
    /// The repository as `docker images` shows it (`busybox`).
    repository: Option<String>,
    /// The tag.
    tag: Option<String>,
    id: String,
    /// The manifest (repo) digest, when the image came with a manifest.
    digest: Option<String>,
    platform: String,
    layers: usize,
    size: u64,
    /// The config's `created`, in seconds since the epoch.
    created: Option<i64>,
    imported_at: u64,
}

fn ls(store: &Store, json: bool) -> anyhow::Result<()> {
    let tags = store.images().tags()?;
    let mut rows = Vec::new();
    for rec in store.images().list()? {
        let created = created(store, &rec);
        let refs: Vec<&String> = tags
            .iter()
            .filter(|(_, id)| id == &rec.id)
            .map(|(r, _)| r)
            .collect();
        let mk = |reference: Option<&String>| {
            let parsed = reference.and_then(|r| ImageRef::parse(r).ok());
            LsRow {
                repository: match &parsed {
                    Some(p) => Some(p.familiar_name()),
                    // A tag an older store kept as written: NAME:TAG.
                    None => reference.map(|r| split_tag(r).0.to_string()),
                },
                tag: match &parsed {
                    Some(p) => p.tag().map(String::from),
                    None => reference.map(|r| split_tag(r).1.to_string()),
                },
                reference: reference.cloned(),
                id: rec.id.to_string(),
                digest: rec.repo_digest().map(|d| d.to_string()),
                platform: rec.platform.clone(),
                layers: rec.layers.len(),
                size: rec.size(),
                created,
                imported_at: rec.imported_at,
            }
        };
        if refs.is_empty() {
            rows.push(mk(None));
        }
        for r in refs {
            rows.push(mk(Some(r)));
        }
    }
    // `docker images`' order: newest first, then by name.
    rows.sort_by(|a, b| {
        (std::cmp::Reverse(a.created), &a.repository, &a.tag, &a.id).cmp(&(
            std::cmp::Reverse(b.created),
            &b.repository,
            &b.tag,
            &b.id,
        ))
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let none = "<none>".to_string();
    let table: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.repository.clone().unwrap_or_else(|| none.clone()),
                r.tag.clone().unwrap_or_else(|| none.clone()),
                r.id[7..19].to_string(),
                r.created
                    .map_or_else(|| "N/A".to_string(), |c| human_duration(now - c) + " ago"),
                human_size(r.size),
            ]
        })
        .collect();
    print!(
        "{}",
        docker_table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &table)
    );
    Ok(())
}

/// `NAME:TAG` split at the tag's colon (after the last `/`).
fn split_tag(r: &str) -> (&str, &str) {
    let slash = r.rfind('/').map_or(0, |i| i + 1);
    match r[slash..].rfind(':') {
        Some(i) => (&r[..slash + i], &r[slash + i + 1..]),
        None => (r, "latest"),
    }
}

/// A table as the `docker` CLI prints one (Go's tabwriter, minimum width
/// 10, padding 3): each column as wide as its widest cell plus 3.
fn docker_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; N]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                out.push_str(cell);
            } else {
                let width = (widths[i] + 3).max(10);
                out.push_str(&format!("{cell:<width$}"));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(header);
    for row in rows {
        out.push_str(&line(std::array::from_fn(|i| row[i].as_str())));
    }
    out
}

/// The image config's `created`, in seconds since the epoch.
fn created(store: &Store, rec: &ImageRecord) -> Option<i64> {
    let config: serde_json::Value =
        serde_json::from_slice(&store.content().read(&rec.config).ok()?).ok()?;
    parse_rfc3339(config.get("created")?.as_str()?)
}

/// Seconds since the epoch of an RFC 3339 time (`2024-09-26T21:31:42.5Z`,
/// `…+02:00`); fractions are dropped.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if s.get(4..5)? != "-" || !matches!(s.get(10..11)?, "T" | "t" | " ") {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        rest = frac.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.get(..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + mi * 60 + sec - offset)
}

/// A duration as `docker images` shows it (go-units' HumanDuration).
fn human_duration(secs: i64) -> String {
    let hours = (secs as f64 / 3600.0 + 0.5) as i64;
    match secs {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s / 60 == 1 => "About a minute".into(),
        s if s / 60 < 60 => format!("{} minutes", s / 60),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        s => format!("{} years", s / 3600 / 24 / 365),
    }
}

/// A size as `docker images` shows it: decimal units, three significant
/// digits (go-units' HumanSize).
fn human_size(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    // Go's %.3g: three significant digits, trailing zeros dropped.
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let mut s = format!("{v:.digits$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", UNITS[u])
}

fn inspect(store: &Store, reference: &str) -> anyhow::Result<()> {
    let rec = store.resolve(reference)?;
    // Raw JSON, so configs that are not strictly OCI still show.
    let config: serde_json::Value = serde_json::from_slice(&store.content().read(&rec.config)?)?;
    let tags = store.images().tags_of(&rec.id)?;
    let rootfs = store.mount_description(&rec)?;
    // As `docker image inspect` shows them: familiar names, NAME@DIGEST.
    let repo_tags: Vec<String> = tags.iter().map(|t| familiar(t)).collect();
    let mut repo_digests: Vec<String> = Vec::new();
    if let Some(d) = rec.repo_digest() {
        for t in &tags {
            if let Ok(r) = ImageRef::parse(t) {
                let rd = format!("{}@{d}", r.familiar_name());
                if !repo_digests.contains(&rd) {
                    repo_digests.push(rd);
                }
            }
        }
    }
    let out = serde_json::json!({
        "id": rec.id,
        "refs": tags,
        "repo_tags": repo_tags,
        "repo_digests": repo_digests,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_docker_table_shape() {
        // `docker images` on this machine (engine 20.10).
        let rows = [[
            "skiff-vendor/busybox".to_string(),
            "latest".to_string(),
            "ab84641e3af4".to_string(),
            "5 days ago".to_string(),
            "1.98MB".to_string(),
        ]];
        assert_eq!(
            docker_table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &rows),
            "REPOSITORY             TAG       IMAGE ID       CREATED      SIZE\n\
             skiff-vendor/busybox   latest    ab84641e3af4   5 days ago   1.98MB\n"
        );
    }

    #[test]
    fn test_human_size_and_duration() {
        assert_eq!(human_size(1_982_123), "1.98MB");
        assert_eq!(human_size(5_600), "5.6kB");
        assert_eq!(human_size(123), "123B");
        assert_eq!(human_size(12_345_678), "12.3MB");
        assert_eq!(human_size(2_000_000_000), "2GB");
        assert_eq!(human_duration(5 * 86400 + 100), "5 days");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 365 * 86400), "3 years");
        assert_eq!(parse_rfc3339("1970-01-02T00:00:01Z"), Some(86401));
        assert_eq!(
            parse_rfc3339("2024-09-26T21:31:42.123456789Z"),
            Some(1_727_386_302)
        );
        assert_eq!(
            parse_rfc3339("2024-09-26T23:31:42+02:00"),
            Some(1_727_386_302)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn test_split_tag() {
        assert_eq!(split_tag("MyApp:1"), ("MyApp", "1"));
        assert_eq!(split_tag("host:5000/App"), ("host:5000/App", "latest"));
    }
}
