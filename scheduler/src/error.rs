//! The scheduler's errors: a bad field of a request, and the queue's own
//! failures.

/// A request field that was refused, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field's name (a JSON path for nested ones).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A refusal of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The database refused or failed.
    #[error("job database: {0}")]
    Db(#[from] sqlx::Error),
    /// A migration failed.
    #[error("job database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// No such job.
    #[error("no job {0}")]
    NotFound(String),
    /// The job is in a state that does not allow the operation.
    #[error("job {id} is {state}: {what}")]
    Conflict {
        /// Job id.
        id: String,
        /// Its state.
        state: String,
        /// What cannot be done.
        what: &'static str,
    },
    /// A stored row could not be read back.
    #[error("job {id}: stored {what} is corrupt: {detail}")]
    Corrupt {
        /// Job id.
        id: String,
        /// Which column.
        what: &'static str,
        /// The parse error.
        detail: String,
    },
    /// A code package's stored layer does not match its digest.
    #[error("code package {name}: the layer read from the database is {got}, not {want} as pushed; refused")]
    LayerDigest {
        /// The package.
        name: String,
        /// The digest recorded at the push.
        want: String,
        /// The digest of what was read.
        got: String,
    },
    /// A file of the worker's (payload, output) could not be written or read.
    #[error("{what} {path}: {source}")]
    Io {
        /// What the file is.
        what: &'static str,
        /// Its path.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
}
