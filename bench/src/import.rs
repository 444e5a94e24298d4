//! The import-throughput benchmark.
//!
//! One run prepares an image archive (see [`crate::image`]), then times,
//! round by round and alternating (A B C A B C …, after warm-up rounds):
//!
//! - `skiff`: `imagestore::Store::import` in this process, into a fresh
//!   store each round (layers unpacked in parallel across cores);
//! - `tar`: `tar -x` of the layers one after another into one fresh
//!   directory, in the form the archive stores them (`-xzf` for gzip);
//! - `tar-raw`: for compressed images only, `tar -xf` of the same layers
//!   decompressed beforehand: the floor for writing the files;
//! - `tar-parallel`: one `tar -x` per layer, all at once, each into its own
//!   directory (as skiff unpacks each layer into its own snapshot);
//! - `podman`: `podman load -i` into a private, fresh storage root;
//! - `skopeo-umoci`: `skopeo copy docker-archive:… oci:…` then
//!   `umoci unpack`, timed together (each phase is kept too);
//! - `skiff-seed`: `imagestore::Store::seed` of an export of the image
//!   (made once, untimed) into a fresh store;
//! - `skiff-pull`, `skopeo-umoci-pull`, `podman-pull`: the image pulled from
//!   a local `docker-registry` (started and filled once, untimed; plain HTTP
//!   on loopback) by skiff in process, by `skopeo copy docker://… oci:…`
//!   then `umoci unpack`, and by `podman pull` (see [`crate::import_sources`]).
//!
//! After each run, its output is evicted from the page cache (outside the
//! timed window): otherwise, once memory is full, every later run pays for
//! reclaiming the earlier runs' pages (direct reclaim), and rounds drift.
//!
//! Each run's CPU time (user + system, its child processes included) is
//! kept beside its wall-clock time: on a shared machine it shows how much
//! work each tool does, undisturbed by what else runs.
//!
//! Every timed run writes into a new directory that is renamed into a
//! trash directory afterwards; the trash is emptied after the last round
//! (see [`crate::trash`] for why). `sync` runs before each timed run, outside
//! the timed window, so that one contender's writeback does not land in the
//! next one's time.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runtime::path_lookup::find_on_host;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result, RunError};
use crate::host::HostInfo;
use crate::image::{self, GenSpec, ImageInfo, LayerSource};
use crate::stats::Summary;
use crate::tools::{run_checked, tail, tool_version};
use crate::trash;
use crate::ui::Ui;

pub use crate::results::import::{ContenderResult, ImportResults, SCHEMA};
pub use crate::results::Skipped;

/// Default size of the generated image, in MB.
pub const DEFAULT_SIZE_MB: u64 = 450;
/// Size of the generated image with `--quick`, in MB.
pub const QUICK_SIZE_MB: u64 = 50;
/// Default number of timed rounds.
pub const DEFAULT_ROUNDS: usize = 5;
/// Timed rounds with `--quick`.
pub const QUICK_ROUNDS: usize = 3;
pub use crate::workdir::DEFAULT_WORKDIR;
/// How long to let the disk settle after a bulk delete, by default: ext4
/// without a journal skips inodes freed in the last 60 s, or 360 s while
/// their inode-table block is dirty (see [`trash`]).
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(360);
/// Bulk deletes smaller than this many entries need no settling.
pub const SETTLE_MIN_ENTRIES: u64 = 10_000;
/// Empty files created by the per-round inode-allocator probe.
const PROBE_FILES: usize = 1000;

/// The contenders, in the order they run within a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Contender {
    /// skiff's image store, in process.
    Skiff,
    /// `tar -x` of the layers as stored, one after another.
    Tar,
    /// `tar -xf` of the decompressed layers (compressed images only).
    TarRaw,
    /// `tar -x` of all layers at once.
    TarParallel,
    /// `podman load`.
    Podman,
    /// `skopeo copy` plus `umoci unpack`.
    SkopeoUmoci,
    /// `skiff store seed` of an export.
    SkiffSeed,
    /// `skiff image pull` from a local registry.
    SkiffPull,
    /// `skopeo copy docker://…` plus `umoci unpack`.
    SkopeoUmociPull,
    /// `podman pull` from a local registry.
    PodmanPull,
}

impl Contender {
    /// Every contender, in running order.
    pub const ALL: [Contender; 10] = [
        Contender::Skiff,
        Contender::Tar,
        Contender::TarRaw,
        Contender::TarParallel,
        Contender::Podman,
        Contender::SkopeoUmoci,
        Contender::SkiffSeed,
        Contender::SkiffPull,
        Contender::SkopeoUmociPull,
        Contender::PodmanPull,
    ];

    /// Its name on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            Contender::Skiff => "skiff",
            Contender::Tar => "tar",
            Contender::TarRaw => "tar-raw",
            Contender::TarParallel => "tar-parallel",
            Contender::Podman => "podman",
            Contender::SkopeoUmoci => "skopeo-umoci",
            Contender::SkiffSeed => "skiff-seed",
            Contender::SkiffPull => "skiff-pull",
            Contender::SkopeoUmociPull => "skopeo-umoci-pull",
            Contender::PodmanPull => "podman-pull",
        }
    }

    /// Parse a name.
    pub fn parse(name: &str) -> Result<Contender> {
        Contender::ALL
            .into_iter()
            .find(|c| c.name() == name.trim())
            .ok_or_else(|| {
                let known: Vec<&str> = Contender::ALL.iter().map(|c| c.name()).collect();
                Error::UnknownContender(name.to_string(), known.join(", "))
            })
    }

    /// Rough bytes written per uncompressed byte, for the free-space check.
    fn write_factor(self) -> f64 {
        match self {
            Contender::Skiff | Contender::SkiffPull => 2.0,
            Contender::Podman | Contender::PodmanPull => 2.5,
            Contender::SkopeoUmoci | Contender::SkopeoUmociPull => 2.0,
            _ => 1.0,
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ImportConfig {
    /// An existing archive, instead of the generated one.
    pub image: Option<PathBuf>,
    /// Generate gzip-compressed layers.
    pub gzip: bool,
    /// Generated image size, in MB of uncompressed layers.
    pub size_mb: u64,
    /// Timed rounds.
    pub rounds: usize,
    /// Untimed warm-up rounds before them.
    pub warmup: usize,
    /// Cache, run and trash directories live here.
    pub workdir: PathBuf,
    /// Contenders to run (`None`: every one that applies and is installed).
    pub contenders: Option<Vec<Contender>>,
    /// Leave the trash in place at the end (delete it yourself later).
    pub keep_trash: bool,
    /// Wait this long after the last bulk delete in `workdir` before timing.
    pub settle: Duration,
    /// Where the generated image's layers come from.
    pub sources: Vec<LayerSource>,
}

impl Default for ImportConfig {
    fn default() -> Self {
        ImportConfig {
            image: None,
            gzip: false,
            size_mb: DEFAULT_SIZE_MB,
            rounds: DEFAULT_ROUNDS,
            warmup: 1,
            workdir: PathBuf::from(DEFAULT_WORKDIR),
            contenders: None,
            keep_trash: false,
            settle: DEFAULT_SETTLE,
            sources: image::default_sources(),
        }
    }
}

/// A contender ready to run: its tool paths and versions resolved.
#[derive(Debug)]
struct Ready {
    which: Contender,
    command: String,
    version: Option<String>,
    samples: Vec<f64>,
    cpu: Vec<f64>,
    phases: BTreeMap<String, Vec<f64>>,
    failed: Option<String>,
}

/// Run the import benchmark.
pub fn run(cfg: &ImportConfig, ui: &Ui) -> Result<ImportResults> {
    if cfg.rounds == 0 {
        return Err(Error::Usage("--rounds must be at least 1".into()));
    }
    fs::create_dir_all(&cfg.workdir).ctx("create", &cfg.workdir)?;
    let workdir = fs::canonicalize(&cfg.workdir).ctx("resolve", &cfg.workdir)?;
    let _lock = crate::workdir::lock(&workdir)?;
    let cache = workdir.join("images");
    let runs = workdir.join("runs");
    let trash_dir = workdir.join("trash");
    let stamp = workdir.join("last-bulk-delete");
    let mut notes = Vec::new();

    // When the previous run's cleanup stops slowing file creation.
    let settle_until = trash::last_delete(&stamp)
        .filter(|d| d.entries >= SETTLE_MIN_ENTRIES && d.ago < cfg.settle)
        .map(|d| (Instant::now() + (cfg.settle - d.ago), d));

    // Leftovers of an interrupted run: out of the way now, deleted at the end.
    trash::set_aside(&runs, &trash_dir)?;
    fs::create_dir_all(&runs).ctx("create", &runs)?;

    // The image.
    let (image, layers_note) = match &cfg.image {
        Some(p) => {
            ui.spin(format!("reading {}", p.display()));
            image::prepare_existing(&cache, &trash_dir, p)?
        }
        None => {
            ui.spin(format!(
                "generating a {} MB{} benchmark image (cached for later runs)",
                cfg.size_mb,
                if cfg.gzip { " gzip" } else { "" }
            ));
            let (info, cached) = image::generate(
                &cache,
                &trash_dir,
                &GenSpec {
                    size_mb: cfg.size_mb,
                    gzip: cfg.gzip,
                    sources: cfg.sources.clone(),
                },
            )?;
            if !cached {
                ui.note(format!(
                    "generated {} ({} layers, {:.0} MB uncompressed, {} files)",
                    info.archive.display(),
                    info.layers.len(),
                    info.uncompressed_bytes as f64 / 1e6,
                    info.files
                ));
            }
            (info, None)
        }
    };
    ui.clear();
    ui.note(format!(
        "image: {} ({}, {} layers, {}, {:.1} MB archive, {:.1} MB uncompressed, {} files)",
        image.archive.display(),
        image.format,
        image.layers.len(),
        match image.compression.as_str() {
            "none" => "uncompressed layers".to_string(),
            c => format!("{c} layers"),
        },
        image.archive_bytes as f64 / 1e6,
        image.uncompressed_bytes as f64 / 1e6,
        image.files
    ));

    // The contenders.
    let wanted: Vec<Contender> = cfg
        .contenders
        .clone()
        .unwrap_or_else(|| Contender::ALL.to_vec());
    let mut ready = Vec::new();
    let mut skipped = Vec::new();
    let skip = |skipped: &mut Vec<Skipped>, c: Contender, reason: String| {
        ui.note(format!("skipping {}: {reason}", c.name()));
        skipped.push(Skipped {
            name: c.name().into(),
            reason,
        });
    };
    let compressed = image.compressed();
    for c in Contender::ALL.into_iter().filter(|c| wanted.contains(c)) {
        let archive = "ARCHIVE";
        let (command, version, missing) = match c {
            Contender::Skiff => (
                "imagestore::Store::import(ARCHIVE) into a fresh store, in process".to_string(),
                Some(format!("skiff {}", env!("CARGO_PKG_VERSION"))),
                None,
            ),
            Contender::Tar | Contender::TarRaw | Contender::TarParallel => {
                if let Some(why) = &layers_note {
                    skip(&mut skipped, c, format!("layers unavailable: {why}"));
                    continue;
                }
                if c == Contender::TarRaw && !compressed {
                    // Identical to `tar` for uncompressed layers.
                    continue;
                }
                let flag = |raw: bool| {
                    if raw || !compressed {
                        "-xf"
                    } else if image.compression == "zstd" {
                        "--zstd -xf"
                    } else {
                        "-xzf"
                    }
                };
                let n = image.layers.len();
                let cmd = match c {
                    Contender::Tar => format!(
                        "tar {} LAYER -C DIR, for each of the {n} layers in turn",
                        flag(false)
                    ),
                    Contender::TarRaw => format!(
                        "tar -xf LAYER -C DIR, for each of the {n} layers decompressed beforehand"
                    ),
                    _ => format!(
                        "tar {} LAYER_i -C DIR_i, all {n} layers at once",
                        flag(false)
                    ),
                };
                let missing = find_on_host("tar")
                    .is_none()
                    .then_some("tar is not installed");
                (cmd, tool_version("tar", &["--version"]), missing)
            }
            Contender::Podman => (
                format!(
                    "podman --root R --runroot RR --storage-driver overlay \
                     --cgroup-manager=cgroupfs --events-backend=file load -q -i {archive}"
                ),
                tool_version("podman", &["--version"]),
                find_on_host("podman")
                    .is_none()
                    .then_some("podman is not installed"),
            ),
            Contender::SkiffSeed => (
                "imagestore::Store::seed(EXPORT) into a fresh store, in process".to_string(),
                Some(format!("skiff {}", env!("CARGO_PKG_VERSION"))),
                None,
            ),
            Contender::SkiffPull => (
                "imagestore::Store::pull(REGISTRY/bench/image:1, insecure) into a fresh store, \
                 in process"
                    .to_string(),
                Some(format!("skiff {}", env!("CARGO_PKG_VERSION"))),
                pull_missing(&[]),
            ),
            Contender::SkopeoUmociPull => (
                "skopeo copy --src-tls-verify=false docker://REGISTRY/bench/image:1 oci:DIR:bench \
                 && umoci unpack --image DIR:bench BUNDLE"
                    .to_string(),
                tool_version("skopeo", &["--version"]),
                pull_missing(&["umoci"]),
            ),
            Contender::PodmanPull => (
                "podman --root R --runroot RR --storage-driver overlay pull -q \
                 --tls-verify=false REGISTRY/bench/image:1"
                    .to_string(),
                tool_version("podman", &["--version"]),
                pull_missing(&["podman"]),
            ),
            Contender::SkopeoUmoci => {
                let missing = if find_on_host("skopeo").is_none() {
                    Some("skopeo is not installed")
                } else if find_on_host("umoci").is_none() {
                    Some("umoci is not installed")
                } else {
                    None
                };
                let version = match (
                    tool_version("skopeo", &["--version"]),
                    tool_version("umoci", &["--version"]),
                ) {
                    (Some(a), Some(b)) => Some(format!("{a}; {b}")),
                    (a, b) => a.or(b),
                };
                (
                    format!(
                        "skopeo copy docker-archive:{archive} oci:DIR:bench \
                         && umoci unpack --image DIR:bench BUNDLE"
                    ),
                    version,
                    missing,
                )
            }
        };
        if let Some(why) = missing {
            skip(&mut skipped, c, why.to_string());
            continue;
        }
        let pulls = matches!(
            c,
            Contender::SkiffPull | Contender::SkopeoUmociPull | Contender::PodmanPull
        );
        if (pulls || c == Contender::SkiffSeed) && !image.format.starts_with("docker-archive") {
            skip(
                &mut skipped,
                c,
                format!("the image is not a docker-archive ({})", image.format),
            );
            continue;
        }
        if c == Contender::SkopeoUmoci && !image.format.starts_with("docker-archive") {
            skip(
                &mut skipped,
                c,
                format!("the image is not a docker-archive ({})", image.format),
            );
            continue;
        }
        ready.push(Ready {
            which: c,
            command,
            version,
            samples: Vec::new(),
            cpu: Vec::new(),
            phases: BTreeMap::new(),
            failed: None,
        });
    }
    if ready.is_empty() {
        return Err(Error::Usage("no contender can run".into()));
    }
    // What seeds and pulls read, made once, outside every timed window.
    let sources_dir = workdir.join("sources");
    trash::set_aside(&sources_dir, &trash_dir)?;
    fs::create_dir_all(&sources_dir).ctx("create", &sources_dir)?;
    let has = |c: &[Contender]| ready.iter().any(|r| c.contains(&r.which));
    let sources = Sources {
        export: if has(&[Contender::SkiffSeed]) {
            ui.spin("exporting the image for the seed contender");
            Some(crate::import_sources::export(&image, &sources_dir)?)
        } else {
            None
        },
        registry: if has(&[
            Contender::SkiffPull,
            Contender::SkopeoUmociPull,
            Contender::PodmanPull,
        ]) {
            ui.spin("starting a local registry and pushing the image to it");
            Some(crate::import_sources::registry(&image, &sources_dir)?)
        } else {
            None
        },
    };
    ui.clear();
    if let Some(why) = layers_note {
        notes.push(format!("tar contenders skipped: {why}"));
    }

    // Let the disk settle after the previous run's cleanup (the image was
    // prepared meanwhile).
    if let Some((until, last)) = settle_until {
        let wait = until.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            let msg = format!(
                "the last cleanup in {} freed {} entries {}s ago; ext4 creates files slowly \
                 for up to {}s after that, so waiting {}s (--settle 0 skips this; \
                 --keep-trash avoids the cleanup)",
                workdir.display(),
                last.entries,
                last.ago.as_secs(),
                cfg.settle.as_secs(),
                wait.as_secs()
            );
            ui.note(&msg);
            notes.push(msg);
            ui.spin("waiting for the disk to settle");
            std::thread::sleep(wait);
            ui.clear();
        }
    }

    let load_before = crate::host::load_average();
    let mut fs_probe_ms: Vec<f64> = Vec::new();
    let total_rounds = cfg.warmup + cfg.rounds;
    let per_round_bytes: f64 = ready
        .iter()
        .map(|r| r.which.write_factor() * image.uncompressed_bytes as f64 * 1.3)
        .sum();
    ui.steps(
        (total_rounds * ready.len()) as u64,
        "import benchmark".to_string(),
    );
    for round in 0..total_rounds {
        let warm = round < cfg.warmup;
        ensure_space(
            &workdir,
            &trash_dir,
            &stamp,
            per_round_bytes as u64,
            cfg.settle,
            ui,
            &mut notes,
        )?;
        // Outside every timed window: how fast can this disk create files now?
        let probe_dir = runs.join(format!("probe-r{round}"));
        let probe = trash::probe_creates(&probe_dir, PROBE_FILES)?;
        trash::set_aside(&probe_dir, &trash_dir)?;
        if !warm {
            fs_probe_ms.push(runtime::timing::ms(probe));
        }
        for r in ready.iter_mut() {
            if r.failed.is_some() {
                ui.inc();
                continue;
            }
            let label = if warm {
                format!("warm-up {}/{}", round + 1, cfg.warmup)
            } else {
                format!("round {}/{}", round - cfg.warmup + 1, cfg.rounds)
            };
            ui.message(format!("{label}: {}", r.which.name()));
            let dir = runs.join(format!("{}-r{round}", r.which.name()));
            fs::create_dir(&dir).ctx("create", &dir)?;
            let outcome = run_once(r.which, &image, &dir, &sources);
            // Out of the way by rename (deleted after the last round), and
            // out of the page cache, so that every run starts with the same
            // free memory.
            nix::unistd::sync();
            trash::evict(&dir);
            trash::set_aside(&dir, &trash_dir)?;
            match outcome {
                Ok(sample) => {
                    if !warm {
                        r.samples.push(sample.wall.as_secs_f64());
                        r.cpu.push(sample.cpu.as_secs_f64());
                        for (k, v) in sample.phases {
                            r.phases.entry(k).or_default().push(v.as_secs_f64());
                        }
                    }
                }
                Err(e) => {
                    if r.which == Contender::Skiff {
                        ui.clear();
                        return Err(Error::SkiffFailed {
                            what: "skiff import",
                            round,
                            source: Box::new(e),
                        });
                    }
                    r.failed = Some(ui.dropped(r.which.name(), round, &e));
                }
            }
            ui.inc();
        }
    }
    ui.clear();
    notes.push(format!(
        "load average before the first round: {load_before}; after the last: {}",
        crate::host::load_average()
    ));
    if let Some(p) = Summary::of(&fs_probe_ms) {
        if p.max > 3.0 * p.min.max(1.0) {
            let msg = format!(
                "file creation was uneven across rounds ({PROBE_FILES} empty files took \
                 {:.0}-{:.0} ms): something else on this disk (a bulk delete?) disturbed \
                 some rounds",
                p.min, p.max
            );
            ui.note(&msg);
            notes.push(msg);
        }
    }

    // Clean up, outside every timed window.
    drop(sources);
    trash::set_aside(&sources_dir, &trash_dir)?;
    if cfg.keep_trash {
        notes.push(format!(
            "run output kept in {} (--keep-trash)",
            trash_dir.display()
        ));
    } else {
        ui.spin(format!("deleting run output in {}", trash_dir.display()));
        let emptied = trash::empty(&trash_dir, &stamp)?;
        ui.clear();
        tracing::info!(took = ?emptied.took, "trash emptied");
    }
    let _ = fs::remove_dir(&runs);

    // Results.
    let skiff = ready.iter().find(|r| r.which == Contender::Skiff);
    let skiff_median = skiff
        .and_then(|r| Summary::of(&r.samples))
        .map(|s| s.median);
    let skiff_cpu = skiff.and_then(|r| Summary::of(&r.cpu)).map(|s| s.median);
    let mut contenders = Vec::new();
    for r in ready {
        if let Some(why) = r.failed {
            skipped.push(Skipped {
                name: r.which.name().into(),
                reason: why,
            });
            continue;
        }
        let Some(s) = Summary::of(&r.samples) else {
            continue;
        };
        let mb = image.uncompressed_bytes as f64 / 1e6;
        contenders.push(ContenderResult {
            name: r.which.name().into(),
            command: r.command,
            version: r.version,
            samples_s: r.samples,
            median_s: s.median,
            min_s: s.min,
            max_s: s.max,
            mean_s: s.mean,
            mb_per_s: (mb > 0.0 && s.median > 0.0).then(|| mb / s.median),
            ratio_vs_skiff: skiff_median.filter(|m| *m > 0.0).map(|m| s.median / m),
            cpu_median_s: Summary::of(&r.cpu).map(|c| c.median).unwrap_or(0.0),
            cpu_ratio_vs_skiff: match (skiff_cpu, Summary::of(&r.cpu)) {
                (Some(k), Some(c)) if k > 0.0 => Some(c.median / k),
                _ => None,
            },
            cpu_samples_s: r.cpu,
            phases_median_s: r
                .phases
                .iter()
                .filter_map(|(k, v)| Summary::of(v).map(|s| (k.clone(), s.median)))
                .collect(),
        });
    }
    notes.push(
        "wall-clock per import; inputs in the page cache after warm-up; `sync` before each \
         timed run (outside it); no fsync inside any contender's timing unless the tool does it"
            .into(),
    );
    notes.push("MB = 10^6 bytes of uncompressed layer tar streams".into());
    Ok(ImportResults {
        benchmark: "import".into(),
        schema: SCHEMA,
        date: crate::host::now_rfc3339(),
        host: HostInfo::detect(&workdir),
        image,
        rounds: cfg.rounds,
        warmup: cfg.warmup,
        order: contenders.iter().map(|c| c.name.clone()).collect(),
        contenders,
        skipped,
        fs_probe_ms,
        notes,
    })
}

/// Make room for one more round: empty the trash mid-run only when the
/// disk would otherwise fill up, then let it settle.
fn ensure_space(
    workdir: &Path,
    trash_dir: &Path,
    stamp: &Path,
    need: u64,
    settle: Duration,
    ui: &Ui,
    notes: &mut Vec<String>,
) -> Result<()> {
    let margin = 1u64 << 30;
    let Some(free) = trash::free_bytes(workdir) else {
        return Ok(());
    };
    if free >= need + margin {
        return Ok(());
    }
    let emptied = trash::empty(trash_dir, stamp)?;
    if emptied.entries > 0 {
        let msg = format!(
            "low on disk space ({:.1} GB free, ~{:.1} GB needed per round): emptied the trash \
             mid-run and waited {}s for the disk to settle",
            free as f64 / 1e9,
            need as f64 / 1e9,
            settle.as_secs()
        );
        ui.note(&msg);
        notes.push(msg);
        std::thread::sleep(settle);
    }
    let free = trash::free_bytes(workdir).unwrap_or(u64::MAX);
    if free < need {
        return Err(Error::Usage(format!(
            "not enough free space in {}: {:.1} GB free, a round needs about {:.1} GB",
            workdir.display(),
            free as f64 / 1e9,
            need as f64 / 1e9
        )));
    }
    Ok(())
}

type Phases = Vec<(String, Duration)>;

/// One timed run: wall-clock, CPU time (user + system) and phases.
#[derive(Debug)]
struct Sample {
    wall: Duration,
    cpu: Duration,
    phases: Phases,
}

/// CPU time (user + system) of this process and of its waited-for children.
fn cpu_now() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    [UsageWho::RUSAGE_SELF, UsageWho::RUSAGE_CHILDREN]
        .into_iter()
        .filter_map(|w| getrusage(w).ok())
        .map(|u| tv(u.user_time()) + tv(u.system_time()))
        .sum()
}

/// Wall-clock and CPU time from one point. CPU time counts this process
/// (the in-process skiff import and all its threads) and every child it
/// waited for (tar and its gzip, podman, skopeo, umoci): it is far less
/// disturbed than wall-clock when other work shares the cores.
struct Timer {
    wall: Instant,
    cpu: Duration,
}

impl Timer {
    fn start() -> Timer {
        nix::unistd::sync();
        Timer {
            cpu: cpu_now(),
            wall: Instant::now(),
        }
    }

    fn stop(&self, phases: Phases) -> Sample {
        let wall = self.wall.elapsed();
        Sample {
            wall,
            cpu: cpu_now().saturating_sub(self.cpu),
            phases,
        }
    }
}

/// Run one contender once into the fresh directory `dir`, timing it.
/// What seeds and pulls read (see [`crate::import_sources`]).
#[derive(Debug)]
struct Sources {
    export: Option<PathBuf>,
    registry: Option<crate::import_sources::LocalRegistry>,
}

/// Why a pull contender cannot run here: a program it needs is missing.
fn pull_missing(extra: &[&'static str]) -> Option<&'static str> {
    ["docker-registry", "skopeo"]
        .iter()
        .chain(extra)
        .find(|p| find_on_host(p).is_none())
        .map(|p| match *p {
            "docker-registry" => "docker-registry is not installed",
            "skopeo" => "skopeo is not installed",
            "umoci" => "umoci is not installed",
            _ => "podman is not installed",
        })
}

fn run_once(
    c: Contender,
    image: &ImageInfo,
    dir: &Path,
    sources: &Sources,
) -> std::result::Result<Sample, RunError> {
    let stored = |l: &image::LayerInfo| l.stored_path.clone().unwrap_or(l.tar_path.clone());
    let tar_flags = |l: &image::LayerInfo, raw: bool| -> Vec<&'static str> {
        match (raw, l.compression.as_str()) {
            (true, _) | (false, "none") => vec!["-xf"],
            (false, "zstd") => vec!["--zstd", "-xf"],
            (false, _) => vec!["-xzf"],
        }
    };
    match c {
        Contender::Skiff => {
            let root = dir.join("store");
            let input = imagestore::Input::Path(image.archive.clone());
            let opts = imagestore::ImportOptions::default();
            let timer = Timer::start();
            let store = imagestore::Store::open(&root).map_err(|source| RunError::OpenStore {
                path: root.clone(),
                source: Box::new(source),
            })?;
            store
                .import(&input, &opts)
                .map_err(|source| RunError::Import {
                    path: image.archive.clone(),
                    source: Box::new(source),
                })?;
            Ok(timer.stop(Vec::new()))
        }
        Contender::Tar | Contender::TarRaw => {
            let raw = c == Contender::TarRaw;
            let out = dir.join("rootfs");
            fs::create_dir(&out).map_err(|source| create_error(&out, source))?;
            let cmds: Vec<Command> = image
                .layers
                .iter()
                .map(|l| {
                    let mut cmd = Command::new("tar");
                    cmd.args(tar_flags(l, raw))
                        .arg(if raw { l.tar_path.clone() } else { stored(l) })
                        .arg("-C")
                        .arg(&out);
                    cmd
                })
                .collect();
            let timer = Timer::start();
            for mut cmd in cmds {
                run_checked(&mut cmd)?;
            }
            Ok(timer.stop(Vec::new()))
        }
        Contender::TarParallel => {
            let mut cmds = Vec::new();
            for (i, l) in image.layers.iter().enumerate() {
                let out = dir.join(i.to_string());
                fs::create_dir(&out).map_err(|source| create_error(&out, source))?;
                let mut cmd = Command::new("tar");
                cmd.args(tar_flags(l, false))
                    .arg(stored(l))
                    .arg("-C")
                    .arg(&out)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                cmds.push(cmd);
            }
            let timer = Timer::start();
            let children: Vec<_> = cmds
                .iter_mut()
                .map(|c| {
                    c.spawn().map_err(|source| RunError::Spawn {
                        program: "tar".into(),
                        source,
                    })
                })
                .collect::<std::result::Result<_, _>>()?;
            let mut errors = Vec::new();
            for child in children {
                match child.wait_with_output() {
                    Ok(o) if o.status.success() => {}
                    Ok(o) => errors.push(RunError::Exit {
                        program: "tar".into(),
                        status: o.status,
                        stderr: tail(&o.stderr),
                    }),
                    Err(source) => errors.push(RunError::Wait {
                        program: "tar".into(),
                        source,
                    }),
                }
            }
            let sample = timer.stop(Vec::new());
            if errors.is_empty() {
                Ok(sample)
            } else {
                Err(RunError::Several(errors))
            }
        }
        Contender::Podman => {
            let mut cmd = podman(dir, &["load", "-q", "-i"])?;
            cmd.arg(&image.archive);
            time_podman(cmd, dir)
        }
        Contender::SkiffSeed | Contender::SkiffPull => {
            let root = dir.join("store");
            let timer = Timer::start();
            let store = imagestore::Store::open(&root).map_err(|source| RunError::OpenStore {
                path: root.clone(),
                source: Box::new(source),
            })?;
            let (what, r) = if c == Contender::SkiffSeed {
                let export = sources.export.clone().unwrap_or_default();
                let file = fs::File::open(&export).map_err(|source| RunError::Io {
                    op: "open",
                    path: export.clone(),
                    source,
                })?;
                let r = store.seed(std::io::BufReader::with_capacity(1 << 20, file));
                (export, r.map(drop))
            } else {
                let reference = registry_ref(sources);
                let opts = imagestore::PullOptions {
                    insecure: true,
                    ..Default::default()
                };
                (
                    PathBuf::from(&reference),
                    store.pull(&reference, &opts).map(drop),
                )
            };
            r.map_err(|source| RunError::Import {
                path: what,
                source: Box::new(source),
            })?;
            Ok(timer.stop(Vec::new()))
        }
        Contender::SkopeoUmociPull => skopeo_umoci(
            dir,
            &["--src-tls-verify=false"],
            format!("docker://{}", registry_ref(sources)),
        ),
        Contender::PodmanPull => {
            let mut cmd = podman(dir, &["pull", "-q", "--tls-verify=false"])?;
            cmd.arg(registry_ref(sources));
            time_podman(cmd, dir)
        }
        Contender::SkopeoUmoci => skopeo_umoci(
            dir,
            &[],
            format!("docker-archive:{}", image.archive.display()),
        ),
    }
}

/// `skopeo copy SOURCE oci:…` (with `copy_args`), then `umoci unpack`
/// into a bundle under `dir`: timed together, each phase kept too.
fn skopeo_umoci(
    dir: &Path,
    copy_args: &[&str],
    source: String,
) -> std::result::Result<Sample, RunError> {
    let tmp = dir.join("tmp");
    fs::create_dir(&tmp).map_err(|source| create_error(&tmp, source))?;
    let layout = dir.join("oci");
    let mut copy = Command::new("skopeo");
    copy.args(["--insecure-policy", "copy", "-q"])
        .args(copy_args)
        .arg(source)
        .arg(format!("oci:{}:bench", layout.display()))
        .env("TMPDIR", &tmp);
    let mut unpack = Command::new("umoci");
    unpack
        .args(["unpack", "--image"])
        .arg(format!("{}:bench", layout.display()))
        .arg(dir.join("bundle"))
        .env("TMPDIR", &tmp);
    let timer = Timer::start();
    run_checked(&mut copy)?;
    let copied = timer.wall.elapsed();
    run_checked(&mut unpack)?;
    let took = timer.wall.elapsed();
    Ok(timer.stop(vec![
        ("skopeo copy".into(), copied),
        ("umoci unpack".into(), took - copied),
    ]))
}

/// `podman` on a private, fresh storage root under `dir`, running `args`.
fn podman(dir: &Path, args: &[&str]) -> std::result::Result<Command, RunError> {
    let tmp = dir.join("tmp");
    fs::create_dir(&tmp).map_err(|source| create_error(&tmp, source))?;
    let mut cmd = Command::new("podman");
    cmd.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("runroot"))
        .arg("--tmpdir")
        .arg(dir.join("libpod-tmp"))
        .args([
            "--storage-driver",
            "overlay",
            "--cgroup-manager=cgroupfs",
            "--events-backend=file",
        ])
        .args(args)
        .env("TMPDIR", &tmp);
    Ok(cmd)
}

/// Time one podman command.
fn time_podman(mut cmd: Command, dir: &Path) -> std::result::Result<Sample, RunError> {
    let timer = Timer::start();
    let r = run_checked(&mut cmd);
    let sample = timer.stop(Vec::new());
    // podman may leave its storage mounted; never rename a mount away.
    trash::unmount_under(dir);
    r?;
    Ok(sample)
}

/// The local registry's reference to the image.
fn registry_ref(sources: &Sources) -> String {
    sources
        .registry
        .as_ref()
        .map(|r| r.reference.clone())
        .unwrap_or_default()
}

fn create_error(path: &Path, source: std::io::Error) -> RunError {
    RunError::Io {
        op: "create",
        path: path.to_path_buf(),
        source,
    }
}
