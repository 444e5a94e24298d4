//! Phase 2, rootfs: the scratch tree (a sized tmpfs, or the store's disk),
//! skiff's init layer, and the overlay of the image's snapshots.

use std::fs;
use std::path::PathBuf;

use crate::error::{IoContext, Result};
use crate::job::ScratchMode;
use crate::mounts;

use super::JobCtx;

/// The rootfs phase; returns the mounted rootfs.
pub(crate) fn rootfs(ctx: &mut JobCtx<'_>, desc: &imagestore::MountDescription) -> Result<PathBuf> {
    let scratch = ctx.scratch.clone();
    fs::create_dir(&scratch).ctx("create", &scratch)?;
    if ctx.job.scratch == ScratchMode::Tmpfs {
        mounts::mount_scratch_tmpfs(&scratch, ctx.job.scratch_bytes())?;
        ctx.mounted.push(scratch.clone());
    }
    for d in ["upper", "work", "rootfs", "etc", "bundle", "state"] {
        fs::create_dir(ctx.sub(d)).ctx("create", ctx.sub(d))?;
    }
    let rootfs = ctx.sub("rootfs");
    mounts::init_layer(&ctx.sub("upper"))?;
    mounts::mount_rootfs(desc, &ctx.sub("upper"), &ctx.sub("work"), &rootfs)?;
    ctx.mounted.push(rootfs.clone());
    Ok(rootfs)
}
