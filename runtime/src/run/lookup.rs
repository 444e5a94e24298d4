//! Phase 1, lookup: the image, its config and mount description in the
//! store; the job's name claimed (`ROOT/run/<job>/`, locked); the lease.
//! An image of another platform than the host's is warned about here.

use std::path::Path;

use imagestore::{ImageId, Lease, MountDescription, Store};

use crate::error::Result;
use crate::state::JobDir;

/// What the lookup found and holds for the job.
#[derive(Debug)]
pub(crate) struct Found {
    /// The image's config.
    pub(crate) config: oci_spec::image::ImageConfiguration,
    /// The image's layers, for the overlay.
    pub(crate) desc: MountDescription,
    /// The job's state directory.
    pub(crate) dir: JobDir,
    /// Keeps the image's snapshots from `image gc` while the job runs.
    pub(crate) lease: Lease,
}

/// The lookup phase. The image was resolved before the job began: here it
/// is read by id, no reference parsed.
pub(crate) fn lookup(store: &Store, run_root: &Path, image: &ImageId, name: &str) -> Result<Found> {
    let rec = store.image(image)?;
    // As `docker run` does: the job still starts (and its exec then fails
    // with "exec format error"), but the user was told why first.
    if let Some(w) = imagestore::platform::run_mismatch_warning(&rec.platform) {
        tracing::warn!("{w}");
    }
    let config = store.image_config(&rec)?;
    let desc = store.mount_description(&rec)?;
    // The name is claimed first: a second job of the same name is refused
    // here, before it could touch the first one's lease.
    let dir = JobDir::create(run_root, name)?;
    let lease = match store.lease(name, &rec) {
        Ok(l) => l,
        Err(e) => {
            let _ = dir.remove();
            return Err(e.into());
        }
    };
    Ok(Found {
        config,
        desc,
        dir,
        lease,
    })
}
