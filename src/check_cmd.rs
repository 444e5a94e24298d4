//! `skiff check`: what this host supports and what follows for skiff.
//! Argument parsing and output only: the probes are `compat::probe`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use compat::conformance::{self, InProcess, Launch};
use compat::probe::{self, ImageCheck, Report};
use imagestore::{ImportOptions, ResolveError, Store};
use runtime::{Backend, JobSpec};

/// Arguments of `skiff check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Print the facts and checks as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Also launch a tiny job from IMAGE (a store reference or an archive
    /// path) end to end and report the launch latency.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// The tiny job's command.
    #[arg(long, default_value = "true", requires = "image")]
    pub command: String,
    /// How many times to launch it.
    #[arg(long, default_value_t = 5, requires = "image")]
    pub runs: u32,
    /// Also run the conformance suite (imports the vendored images into the
    /// store from --vendor-images if missing).
    #[arg(long)]
    pub conformance: bool,
    /// Where the vendored images are (busybox.tar, compat.tar).
    #[arg(long, env = "SKIFF_VENDOR_IMAGES", value_name = "DIR")]
    pub vendor_images: Option<PathBuf>,
}

/// The vendored images directory: the flag, `./vendor-images`, or the
/// repository this binary was built from.
pub fn vendor_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    let here = PathBuf::from("vendor-images");
    if here.join("busybox.tar").exists() || here.join("busybox.tar.gz").exists() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vendor-images")
}

fn image_check(launch: &mut dyn Launch, image: &str, command: &str, runs: u32) -> ImageCheck {
    let job = JobSpec {
        command: vec![command.to_string()],
        ..Default::default()
    };
    let (mut launch_ms, mut wall_ms) = (Vec::new(), Vec::new());
    let mut check = ImageCheck {
        image: image.to_string(),
        runs: 0,
        succeeded: 0,
        launch_ms: None,
        wall_ms: None,
        error: None,
    };
    for _ in 0..runs {
        check.runs += 1;
        match launch.launch(image, &job) {
            Ok(out) if out.result.exit_code == 0 => {
                check.succeeded += 1;
                launch_ms.push(out.result.launch_ms);
                wall_ms.push(out.result.wall_ms);
            }
            Ok(out) => {
                check.error.get_or_insert(format!(
                    "exit {}: {}",
                    out.result.exit_code,
                    out.stderr.trim()
                ));
            }
            Err(e) => {
                check.error.get_or_insert(conformance::error_chain(&e));
            }
        }
    }
    check.launch_ms = runtime::timing::median(&launch_ms);
    check.wall_ms = runtime::timing::median(&wall_ms);
    check
}

/// Run `skiff check`; returns 0 ok, 1 unusable, 2 degraded.
pub fn run(root: &Path, args: CheckArgs) -> anyhow::Result<u8> {
    // The probes fork children: run them before anything else starts.
    let host = probe::probe(root);
    let (mut image, mut suite) = (None, None);
    if args.image.is_some() || args.conformance {
        let store =
            Store::open(root).with_context(|| format!("opening store {}", root.display()))?;
        let reference = match &args.image {
            // Resolved once (an archive path imported first): the launches
            // name the image by its id. A reference naming no image is not
            // fatal: the launches fail on it, and the report says so.
            Some(i) => Some(
                match store.resolve_or_import(i, &ImportOptions::default()) {
                    Ok(r) => r.id.to_string(),
                    Err(ResolveError::Lookup(_)) => i.clone(),
                    Err(e) => return Err(e.into()),
                },
            ),
            None => None,
        };
        if args.conformance {
            let dir = vendor_dir(args.vendor_images.as_deref());
            conformance::import_vendor_images(&store, &dir)
                .with_context(|| format!("importing the vendored images from {}", dir.display()))?;
        }
        let mut launch = InProcess::new(store, Backend::Libcontainer)?;
        if let Some(r) = reference {
            let mut c = image_check(&mut launch, &r, &args.command, args.runs.max(1));
            c.image = args.image.clone().unwrap_or(r);
            image = Some(c);
        }
        if args.conformance {
            let work = tempfile_dir()?;
            suite = Some(conformance::run_suite(&mut launch, &work));
            let _ = std::fs::remove_dir_all(&work);
        }
    }
    let report = Report::new(host, image, suite);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(report.exit_code)
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let p = std::env::temp_dir().join(format!("skiff-check-suite-{}", std::process::id()));
    std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
    Ok(p)
}
