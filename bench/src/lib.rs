//! skiff's benchmarks, reached from `skiff bench`.
//!
//! - [`import`]: import throughput of the image store against `tar -x` of
//!   the same layers, `podman load`, and `skopeo copy` plus `umoci unpack`.
//! - [`image`]: the benchmark image, generated from host directories as a
//!   realistic multi-layer `docker save` archive and cached.
//! - [`launch`]: launch latency and throughput of `skiff run` and skiff's
//!   launcher pool against runc, crun, podman, docker and the kernel's floor.
//! - [`soak`]: many jobs through the launcher pool, sampling RSS, fds,
//!   mounts, cgroups, run directories and leases for leaks.
//! - [`plot`]: the launch benchmark's plots (SVG and PNG).
//! - [`trash`]: run output is renamed aside and deleted only after the last
//!   timed run (bulk deletes slow ext4 file creation for a while).
//! - [`stats`], [`host`], [`report`], [`ui`]: medians, host facts, tables,
//!   progress.
//!
//! See `docs/bench.md` for how to run it and the latest figures.

pub mod error;
pub mod host;
pub mod image;
pub mod import;
pub mod launch;
pub mod plot;
pub mod report;
pub mod soak;
pub mod stats;
pub mod trash;
pub mod ui;

pub use error::{Error, Result};
pub use import::{Contender, ImportConfig, ImportResults};
pub use launch::{LaunchConfig, LaunchResults};
pub use ui::Ui;
