//! The store's error type. Every variant names the thing that was bad: the
//! archive entry, the blob digest or the file, so a user can act on it.

use std::io;
use std::path::PathBuf;

/// Result alias for the image store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors from the image store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation on the store or an input failed.
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading the input archive failed (truncated, corrupt compression, bad tar).
    #[error("reading archive {what}")]
    ReadArchive {
        what: String,
        #[source]
        source: io::Error,
    },
    /// The input is not any image format skiff understands (`input` names it;
    /// callers usually say which input they were importing).
    #[error("not a recognised image archive: {detail}")]
    UnknownFormat { input: String, detail: String },
    /// An entry the format requires is absent from the archive.
    #[error("archive entry {entry} is missing ({what})")]
    MissingEntry { entry: String, what: String },
    /// A blob that a manifest or index declares is absent.
    #[error("blob {digest} ({what}) is missing from the archive")]
    MissingBlob { digest: String, what: String },
    /// A JSON document does not parse.
    #[error("{what} is not valid: {detail}")]
    BadJson { what: String, detail: String },
    /// A digest string is malformed or uses an unsupported algorithm.
    #[error("invalid digest {digest:?}: {detail}")]
    InvalidDigest {
        digest: String,
        detail: &'static str,
    },
    /// Content does not hash to the digest declared for it.
    #[error("blob {what}: digest mismatch: declared {expected}, content is {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// Content size differs from the size declared for it.
    #[error("blob {what}: size mismatch: declared {expected} bytes, content is {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    /// A layer's uncompressed stream does not hash to the config's diff_id.
    #[error("layer {layer}: diff_id mismatch: config declares {expected}, uncompressed stream is {actual}")]
    DiffIdMismatch {
        layer: String,
        expected: String,
        actual: String,
    },
    /// A layer media type skiff cannot unpack.
    #[error("layer {digest}: unsupported media type {media_type}")]
    UnsupportedMediaType { digest: String, media_type: String },
    /// The image config and manifest disagree.
    #[error("image {image}: {detail}")]
    Inconsistent { image: String, detail: String },
    /// A layer could not be applied.
    #[error("layer {layer}")]
    Apply {
        layer: String,
        #[source]
        source: crate::apply::ApplyError,
    },
    /// The archive holds nothing that can be run.
    #[error("no runnable image: {detail}")]
    NoImage { input: String, detail: String },
    /// No manifest matches the wanted platform.
    #[error("no image for platform {wanted} (available: {available})")]
    PlatformNotFound { wanted: String, available: String },
    /// A platform string does not parse.
    #[error("invalid platform {0:?}: expected OS/ARCH[/VARIANT]")]
    InvalidPlatform(String),
    /// An image reference does not parse.
    #[error("invalid image reference {reference:?}: {detail}")]
    InvalidReference { reference: String, detail: String },
    /// No image matches the reference.
    #[error("no such image: {0}")]
    ImageNotFound(String),
    /// A short id matches several images.
    #[error("image reference {0} is ambiguous: it matches several image ids")]
    AmbiguousReference(String),
    /// `--tag` was given for an archive holding several images.
    #[error("--tag needs exactly one image, but the archive holds {0}")]
    TagNeedsOneImage(usize),
    /// An import selector names no image of the input.
    #[error("no image in {input} matches {selector:?}; it holds: {available}")]
    SelectorNotFound {
        selector: String,
        input: String,
        available: String,
    },
    /// An import selector names several images of the input.
    #[error("{selector:?} matches several images in {input}: {matches}")]
    AmbiguousSelector {
        selector: String,
        input: String,
        matches: String,
    },
    /// A running job already holds a lease under this name.
    #[error("lease {name:?} is held by a running job (pid {pid})")]
    LeaseInUse { name: String, pid: i32 },
    /// A registry pull failed.
    #[error(transparent)]
    Pull(#[from] crate::pull_error::PullError),
    /// Store metadata is unreadable: the store was damaged outside skiff.
    #[error("store metadata {path} is corrupt: {detail}")]
    CorruptMetadata { path: PathBuf, detail: String },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Attach an operation and a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(op, path, io::Error::from(e)))
    }
}
