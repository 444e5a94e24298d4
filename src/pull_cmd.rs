//! `skiff image pull`, and the registry flags `skiff run --pull` shares.

use std::path::PathBuf;

use anyhow::Context;
use imagestore::pull::{AuthFile, PullOptions, RegistryConfig, DEFAULT_CONFIG};
use imagestore::{Platform, PullReport, Store};

/// Where to pull from, and as whom.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Registry config: mirrors per registry and the certs directory
    /// (default /etc/skiff/registries.json, when it exists).
    #[arg(long, value_name = "FILE", env = "SKIFF_REGISTRY_CONFIG")]
    pub registry_config: Option<PathBuf>,
    /// A mirror to try first (repeatable, in order), before configured ones.
    #[arg(long = "mirror", value_name = "URL")]
    pub mirrors: Vec<String>,
    /// Docker-style credentials file (default ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
    /// Speak plain HTTP to the registry; only for one on loopback.
    #[arg(long)]
    pub insecure: bool,
}

impl RegistryArgs {
    /// The registry config in effect: the one named, else the default
    /// file when it exists.
    pub fn config(&self) -> anyhow::Result<Option<RegistryConfig>> {
        let (path, required) = match &self.registry_config {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(DEFAULT_CONFIG), false),
        };
        Ok(RegistryConfig::load(&path, required)?)
    }

    /// Whether a registry is configured at all (a config file, or mirrors
    /// given): `skiff run` then pulls missing images by default.
    pub fn configured(&self) -> anyhow::Result<bool> {
        Ok(!self.mirrors.is_empty() || self.config()?.is_some())
    }

    /// Pull options from these flags.
    pub fn options(&self, platform: Option<Platform>, json: bool) -> anyhow::Result<PullOptions> {
        let auth = match &self.auth_file {
            Some(p) => AuthFile::load(p, true)?,
            None => match AuthFile::default_path() {
                Some(p) => AuthFile::load(&p, false)?,
                None => AuthFile::default(),
            },
        };
        Ok(PullOptions {
            platform,
            config: self.config()?.unwrap_or_default(),
            mirrors: self.mirrors.clone(),
            auth,
            insecure: self.insecure,
            progress: crate::progress::bar(json, "pulling"),
            ..PullOptions::default()
        })
    }
}

/// Pull one reference, with context for the error.
pub fn pull(store: &Store, reference: &str, opts: &PullOptions) -> anyhow::Result<PullReport> {
    store
        .pull(reference, opts)
        .with_context(|| format!("pulling {reference}"))
}

/// `skiff image pull`.
pub fn run(
    store: &Store,
    reference: &str,
    registry: &RegistryArgs,
    platform: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let platform = platform.map(|p| Platform::parse(&p)).transpose()?;
    let opts = registry.options(platform, json)?;
    let report = pull(store, reference, &opts)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    print_report(&report);
    Ok(())
}

/// What `docker pull` says, in skiff's words (on stderr for warnings).
pub fn print_report(report: &PullReport) {
    for w in &report.warnings {
        eprintln!("skiff: warning: {w}");
    }
    println!(
        "Pulled {} ({}, {}): {} layers downloaded, {} already present",
        report.reference,
        report.image.id,
        report.image.platform,
        report.layers_downloaded,
        report.layers_reused
    );
    println!("Digest: {}", report.digest);
    if !report.served_by.is_empty() {
        println!("Served by: {}", report.served_by.join(", "));
    }
}
