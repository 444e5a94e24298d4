//! Errors of the benchmark library. Each variant is named after the
//! operation that failed and keeps the error that made it fail as its
//! source; messages leave the source out (print the chain, e.g. with
//! [`runtime::error::error_chain`]).
//!
//! - [`Error`]: a benchmark cannot run (files, the image, bad options, or
//!   skiff itself failing).
//! - [`RunError`]: one timed run of one contender failed (the contender is
//!   dropped; for skiff, the benchmark stops with [`Error::SkiffFailed`]).
//! - [`Unavailable`]: a launch contender cannot run on this host (it is
//!   skipped, with this as its reason).

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

use imagestore::oci_spec::OciSpecError;

/// A benchmark error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// The benchmark image is unusable.
    #[error("benchmark image {path}: {detail}")]
    Image {
        /// The archive.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The benchmark image's `manifest.json` does not parse.
    #[error("benchmark image {path}: cannot parse manifest.json")]
    ImageManifest {
        /// The archive.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A layer of the benchmark image cannot be copied out of it.
    #[error("benchmark image {path}: cannot copy out layer {layer}")]
    ImageLayer {
        /// The archive.
        path: PathBuf,
        /// The layer's entry in the archive.
        layer: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The bench store cannot take or describe the benchmark image.
    #[error("benchmark image {path}: cannot {op}")]
    BenchStore {
        /// What was being done (`open the bench store`, `import it`, …).
        op: &'static str,
        /// The archive.
        path: PathBuf,
        /// The store's error.
        #[source]
        source: Box<imagestore::Error>,
    },
    /// The host's cgroup layout cannot be detected.
    #[error("cannot detect the cgroup layout for {path}")]
    Cgroups {
        /// The directory whose group key was used.
        path: PathBuf,
        /// The runtime's error.
        #[source]
        source: Box<runtime::Error>,
    },
    /// A requested contender does not exist.
    #[error("unknown contender {0:?} (known: {1})")]
    UnknownContender(String, String),
    /// A bad option combination.
    #[error("{0}")]
    Usage(String),
    /// JSON could not be written or read.
    #[error("JSON for {what}")]
    Json {
        /// Which document.
        what: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The skiff contender itself failed: the benchmark has no baseline.
    #[error("{what} failed in round {round}")]
    SkiffFailed {
        /// What failed: `skiff import`, `skiff` or `skiff-pool`.
        what: &'static str,
        /// Round (0-based, warm-ups included).
        round: usize,
        /// Why.
        #[source]
        source: Box<RunError>,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach an operation and a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            op,
            path: path.into(),
            source,
        })
    }
}

/// Why one timed run (an import, a launch, a throughput job) failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A program could not be started.
    #[error("cannot run {program}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A program could not be waited for.
    #[error("cannot wait for {program}")]
    Wait {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A program exited unsuccessfully: its status and the last lines of
    /// its stderr.
    #[error("{program}: {status}: {stderr}")]
    Exit {
        /// The program.
        program: String,
        /// How it exited.
        status: ExitStatus,
        /// The last lines of its stderr.
        stderr: String,
    },
    /// A file or directory for the run could not be made.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// skiff's store could not be opened.
    #[error("cannot open the store {path}")]
    OpenStore {
        /// The store root.
        path: PathBuf,
        /// The store's error.
        #[source]
        source: Box<imagestore::Error>,
    },
    /// skiff's store could not import the archive.
    #[error("cannot import {path}")]
    Import {
        /// The archive.
        path: PathBuf,
        /// The store's error.
        #[source]
        source: Box<imagestore::Error>,
    },
    /// A pool launcher could not be started.
    #[error("cannot start a pool launcher")]
    SpawnLauncher(#[source] Box<runtime::Error>),
    /// A request to a pool launcher could not be sent, or its reply read.
    #[error("cannot send a request to a pool launcher")]
    Request(#[source] Box<runtime::Error>),
    /// The pool launcher refused the job (its message).
    #[error("{0}")]
    Refused(String),
    /// The contender has no pool launcher in this slot.
    #[error("{0} has no launcher")]
    NoLauncher(&'static str),
    /// `skiff run --json` printed no result.
    #[error("skiff run --json printed no result: {line:?}")]
    NoResult {
        /// Its last line of output.
        line: String,
        /// Why that line is not a result.
        #[source]
        source: serde_json::Error,
    },
    /// The job ran but exited non-zero.
    #[error("the job exited {0}")]
    JobExit(i32),
    /// No job of a throughput level ran.
    #[error("no job ran at concurrency {0}")]
    NoJobRan(usize),
    /// A throughput worker thread panicked.
    #[error("a worker panicked")]
    WorkerPanicked,
    /// Programs run side by side failed (each with its cause).
    #[error("{}", chains(.0))]
    Several(Vec<RunError>),
}

fn chains(errors: &[RunError]) -> String {
    errors
        .iter()
        .map(|e| runtime::error::error_chain(e))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a launch contender cannot run on this host (it is skipped).
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// Its program is not on `PATH`.
    #[error("{0} is not installed")]
    NotInstalled(String),
    /// The `skiff` binary to measure is missing.
    #[error("{0} does not exist")]
    NoSkiff(PathBuf),
    /// A file or directory it needs could not be made.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A preparation command (`podman load`, `docker load`) failed.
    #[error("{what} failed")]
    Prepare {
        /// The command.
        what: &'static str,
        /// Why.
        #[source]
        source: RunError,
    },
    /// The Docker engine does not answer.
    #[error("the Docker engine is not reachable")]
    DockerEngine(#[source] RunError),
    /// skiff's runtime could not write a part of the OCI bundle.
    #[error("cannot {op} for the {runtime} bundle")]
    Bundle {
        /// What was being done.
        op: &'static str,
        /// `runc` or `crun`.
        runtime: String,
        /// The runtime's error.
        #[source]
        source: Box<runtime::Error>,
    },
    /// A bundle's `config.json` could not be saved.
    #[error("cannot save {path}")]
    SaveSpec {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: OciSpecError,
    },
    /// The image has no layers to copy a root filesystem from.
    #[error("the image has no layers")]
    NoLayers,
    /// Copying the image's root filesystem could not start.
    #[error("copying the image's rootfs")]
    CopyRootfs(#[source] io::Error),
    /// Copying the image's root filesystem failed.
    #[error("copying the image's rootfs failed: {0}")]
    CopyRootfsFailed(ExitStatus),
    /// The untimed trial launch failed.
    #[error("a trial launch failed")]
    Trial(#[source] RunError),
}
