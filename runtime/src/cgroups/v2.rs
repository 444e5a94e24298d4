//! cgroup v2: the unified hierarchy.
//!
//! The no-internal-processes rule: a cgroup with member processes cannot
//! enable controllers for its children. skiff requires a *delegated subtree*
//! and runs in a leaf of it (e.g. `<scope>/launcher` of a systemd scope with
//! `Delegate=yes`); its jobs go beside that leaf, in `<scope>/skiff/…`. See
//! `docs/cgroups.md`.

use std::path::{Path, PathBuf};

use super::{
    kill_and_rmdir, read_key, read_pids, read_u64, subdirs, AccountingBase, CgroupDriver,
    CgroupStats, CgroupVersion, CgroupView,
};
use crate::error::Result;
use crate::job::Limits;

/// The v2 driver.
#[derive(Debug, Clone)]
pub struct CgroupV2 {
    mount_root: PathBuf,
    base: PathBuf,
}

impl CgroupV2 {
    /// `own` is the caller's path from the `0::` line of `/proc/self/cgroup`.
    ///
    /// The caller's cgroup holds the caller, so by the no-internal-processes
    /// rule it cannot host controller-enabled children. Jobs therefore go
    /// beside it: `<parent of own>/skiff/<group>/<job>`, inside the delegated
    /// subtree whose leaf the launcher runs in (`<scope>/launcher` →
    /// `<scope>/skiff/…`). In the root cgroup, which is exempt from the
    /// rule, they go to `/skiff/<group>/<job>`.
    pub fn new(mount_root: &Path, own: &str, group: &str) -> CgroupV2 {
        let own = Path::new(own);
        let anchor = own.parent().unwrap_or(own);
        CgroupV2 {
            mount_root: mount_root.to_path_buf(),
            base: anchor.join("skiff").join(group),
        }
    }

    fn dir(&self, job: &str) -> PathBuf {
        self.mount_root.join(
            self.job_path(job)
                .strip_prefix("/")
                .unwrap_or(Path::new("")),
        )
    }
}

impl CgroupDriver for CgroupV2 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V2
    }

    fn job_path(&self, job: &str) -> PathBuf {
        self.base.join(job)
    }

    fn view(&self, _job: &str) -> CgroupView {
        CgroupView::Namespace
    }

    fn stats(&self, job: &str) -> Result<CgroupStats> {
        let d = self.dir(job);
        Ok(CgroupStats {
            peak_memory_bytes: read_u64(&d.join("memory.peak")),
            cpu_usec: read_key(&d.join("cpu.stat"), "usage_usec"),
            oom_kills: read_key(&d.join("memory.events"), "oom_kill").unwrap_or(0),
        })
    }

    fn apply_limits(&self, job: &str, limits: &Limits) -> Result<()> {
        super::handoff::apply_v2(&self.dir(job), limits)
    }

    fn reset_accounting(&self, job: &str) -> Result<AccountingBase> {
        super::handoff::reset_v2(&self.dir(job))
    }

    fn pids(&self, job: &str) -> Result<Vec<i32>> {
        read_pids(&self.dir(job))
    }

    fn remove(&self, job: &str) -> Result<()> {
        let d = self.dir(job);
        // cgroup.kill (5.14+) kills the whole subtree atomically.
        let _ = std::fs::write(d.join("cgroup.kill"), "1");
        kill_and_rmdir(&d)
    }

    fn group_dirs(&self) -> Vec<PathBuf> {
        vec![self
            .mount_root
            .join(self.base.strip_prefix("/").unwrap_or(&self.base))]
    }

    fn list_jobs(&self) -> Result<Vec<String>> {
        Ok(subdirs(&self.mount_root.join(
            self.base.strip_prefix("/").unwrap_or(Path::new("")),
        )))
    }
}
