//! The runtime's error type. Each variant is named after the operation that
//! failed, and its message says what it was done to.

use std::io;
use std::path::PathBuf;

/// Result alias for the runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors from preparing, launching, supervising or cleaning up a job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem or process operation failed.
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The image store failed.
    #[error(transparent)]
    Store(#[from] imagestore::Error),
    /// A job option does not parse or is out of range.
    #[error("invalid {what} {value:?}: {detail}")]
    InvalidOption {
        what: &'static str,
        value: String,
        detail: String,
    },
    /// Another job has this name.
    #[error("Conflict. The job name {name:?} is already in use by {by}. Wait for it to end or choose another name")]
    NameInUse { name: String, by: String },
    /// Neither the image nor the request gives a command.
    #[error("no command specified")]
    NoCommand,
    /// A user name is not in the image's /etc/passwd.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UserNotFound(String),
    /// A group name is not in the image's /etc/group.
    #[error("unable to find group {0}: no matching entries in group file")]
    GroupNotFound(String),
    /// libseccomp could not compile the job's filter.
    #[error("compile the seccomp filter")]
    SeccompCompile(#[source] libseccomp::error::SeccompError),
    /// Building a part of the OCI runtime spec failed.
    #[error("build the OCI spec")]
    BuildSpec(#[source] oci_spec::OciSpecError),
    /// Writing the bundle's `config.json` failed.
    #[error("save the OCI spec to {path}")]
    SaveSpec {
        path: PathBuf,
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// Encoding a seccomp profile for its cache key failed.
    #[error("encode the seccomp profile")]
    EncodeSeccompProfile(#[source] serde_json::Error),
    /// libcontainer created a container but reported no init pid.
    #[error("the created container {0} has no init pid")]
    ContainerHasNoPid(String),
    /// Mounting something failed.
    #[error("mount {what} on {target}")]
    Mount {
        what: &'static str,
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A cgroup operation failed.
    #[error("cgroup: cannot {op} {path}")]
    Cgroup {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// libcontainer failed to create the container.
    #[error("create container")]
    ContainerCreate(#[source] libcontainer::error::LibcontainerError),
    /// libcontainer failed to start the container.
    #[error("start container")]
    ContainerStart(#[source] libcontainer::error::LibcontainerError),
    /// An external OCI runtime binary failed before the job ran.
    #[error("OCI runtime {runtime}: {detail}")]
    RuntimeBinary { runtime: String, detail: String },
    /// Per-job state on disk is unreadable.
    #[error("job state {path} is corrupt: {detail}")]
    CorruptState { path: PathBuf, detail: String },
    /// The launching process could not run from a read-only view of its
    /// own binary (see `readonly_exe`).
    #[error("launch from a read-only skiff binary: {detail}")]
    ReadOnlyExe { detail: String },
    /// A launcher pool request or reply was malformed.
    #[error("launcher protocol: {0}")]
    Protocol(String),
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

/// Attach an operation and a path to an `io::Result` or `nix::Result`.
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

/// Full message of an error with its causes.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    msg
}
