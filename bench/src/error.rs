//! Errors of the benchmark library.

use std::io;
use std::path::PathBuf;

/// A benchmark error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed.
    #[error("cannot {op} {path}: {source}")]
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
    /// A requested contender does not exist.
    #[error("unknown contender {0:?} (known: {1})")]
    UnknownContender(String, String),
    /// A bad option combination.
    #[error("{0}")]
    Usage(String),
    /// JSON could not be written or read.
    #[error("JSON for {what}: {source}")]
    Json {
        /// Which document.
        what: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The skiff contender itself failed: the benchmark has no baseline.
    #[error("skiff import failed in round {round}: {detail}")]
    SkiffFailed {
        /// Round (0-based, warm-ups included).
        round: usize,
        /// The store's error.
        detail: String,
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
