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
//! - [`results`]: what each of them produces: plain serializable data,
//!   written as JSON. The modules above produce it; [`report`] (tables,
//!   result files) and [`plot`] (the launch benchmark's SVG and PNG plots)
//!   consume it; neither side imports the other.
//! - [`workdir`]: the work directory, its lock, and the vendored image.
//! - [`trash`]: run output is renamed aside and deleted only after the last
//!   timed run (bulk deletes slow ext4 file creation for a while).
//! - [`error`]: why a benchmark, a run or a contender failed.
//! - [`stats`], [`host`], `tools`, [`ui`]: medians and percentiles, host
//!   facts, other programs, progress.
//!
//! See `docs/bench.md` for how to run it and the latest figures.

pub mod error;
pub mod host;
pub mod image;
pub mod import;
mod import_sources;
pub mod launch;
pub mod plot;
pub mod queue;
pub mod report;
pub mod results;
pub mod soak;
pub mod stats;
mod tools;
pub mod trash;
pub mod ui;
mod units;
pub mod workdir;

pub use error::{Error, Result, RunError, Unavailable};
pub use import::{Contender, ImportConfig, ImportResults};
pub use launch::{LaunchConfig, LaunchResults};
pub use ui::Ui;
