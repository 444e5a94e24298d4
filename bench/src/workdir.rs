//! A benchmark's work directory: its default place, the lock that keeps two
//! benchmarks from measuring each other, and the vendored image they use.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// Default work directory.
pub const DEFAULT_WORKDIR: &str = "/var/tmp/skiff-bench";

/// Exclusive use of a work directory for the length of a run.
#[derive(Debug)]
pub(crate) struct WorkdirLock {
    _lock: nix::fcntl::Flock<File>,
}

/// A benchmark's private directory `WORKDIR/<name>` (the work directory
/// locked for the run) and its image archive (`image`, or the vendored
/// busybox), both resolved.
pub(crate) fn private_dir(
    workdir: &Path,
    name: &str,
    image: Option<&PathBuf>,
) -> Result<(WorkdirLock, PathBuf, PathBuf)> {
    fs::create_dir_all(workdir).ctx("create", workdir)?;
    let workdir = fs::canonicalize(workdir).ctx("resolve", workdir)?;
    let lock = lock(&workdir)?;
    let dir = workdir.join(name);
    fs::create_dir_all(&dir).ctx("create", &dir)?;
    let archive = match image {
        Some(p) => p.clone(),
        None => default_image().ok_or_else(|| {
            Error::Usage(
                "no image: vendor-images/busybox.tar is not here; give --image ARCHIVE".into(),
            )
        })?,
    };
    let archive = fs::canonicalize(&archive).ctx("find the image", &archive)?;
    Ok((lock, dir, archive))
}

pub(crate) fn lock(workdir: &Path) -> Result<WorkdirLock> {
    let p = workdir.join("lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .ctx("open", &p)?;
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(WorkdirLock { _lock: lock }),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(Error::Usage(format!(
            "another `skiff bench` is using {}; two at once would measure each other",
            workdir.display()
        ))),
        Err((_, e)) => Err(Error::io("lock", &p, e.into())),
    }
}

/// The vendored busybox archive: `vendor-images/busybox.tar` (or `.tar.gz`)
/// in the current directory, else in the source tree this was built from.
pub fn default_image() -> Option<PathBuf> {
    let roots = [
        PathBuf::from("."),
        Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    ];
    roots
        .iter()
        .flat_map(|r| {
            ["busybox.tar", "busybox.tar.gz"]
                .into_iter()
                .map(move |n| r.join("vendor-images").join(n))
        })
        .find(|p| p.is_file())
}
