//! cgroup v1 (legacy or hybrid): one hierarchy per controller under
//! `/sys/fs/cgroup/<controller>`.

use std::path::{Path, PathBuf};

use super::{
    kill_and_rmdir, read_key, read_pids, read_u64, subdirs, AccountingBase, CgroupDriver,
    CgroupStats, CgroupVersion, CgroupView,
};
use crate::error::Result;
use crate::job::Limits;

/// The controllers skiff (through the launch backend) places jobs in, and
/// so removes them from.
const CONTROLLERS: &[&str] = &[
    "memory",
    "pids",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "blkio",
    "net_cls",
    "net_prio",
    "perf_event",
    "hugetlb",
    // Not controllers, but runtime binaries (runc, crun) place jobs there too
    // on hybrid hosts; `gc` cleans them up after a killed launcher.
    "systemd",
    "unified",
];

/// The v1 driver.
#[derive(Debug, Clone)]
pub struct CgroupV1 {
    mount_root: PathBuf,
    /// `<caller's deepest cgroup>/skiff`, absolute from each hierarchy's root.
    base: PathBuf,
    /// The entries of [`CONTROLLERS`] mounted under `mount_root` (looked up
    /// once, so removing a job touches only hierarchies that exist).
    mounted: Vec<&'static str>,
}

impl CgroupV1 {
    /// `self_cgroup` is the text of `/proc/self/cgroup`. The job path is the
    /// caller's deepest v1 cgroup (on this host, its memory cgroup) plus
    /// `skiff/<job>`; the backend uses the same absolute path in every
    /// hierarchy, which is below the caller's cgroup wherever the caller's
    /// paths are prefixes of each other (the usual case: `/` and one nested path).
    pub fn new(mount_root: &Path, self_cgroup: &str, group: &str) -> CgroupV1 {
        let mut deepest = "/";
        for line in self_cgroup.lines() {
            let mut f = line.splitn(3, ':');
            let (Some(id), Some(ctrls), Some(path)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            if id == "0" || ctrls.starts_with("name=") {
                continue;
            }
            if path.len() > deepest.len() {
                deepest = path;
            }
        }
        let mounted = CONTROLLERS
            .iter()
            .copied()
            .filter(|c| mount_root.join(c).is_dir())
            .collect();
        CgroupV1 {
            mount_root: mount_root.to_path_buf(),
            base: Path::new(deepest).join("skiff").join(group),
            mounted,
        }
    }

    fn dir(&self, ctrl: &str, job: &str) -> PathBuf {
        self.mount_root.join(ctrl).join(
            self.job_path(job)
                .strip_prefix("/")
                .unwrap_or(Path::new("")),
        )
    }
}

impl CgroupDriver for CgroupV1 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }

    fn job_path(&self, job: &str) -> PathBuf {
        self.base.join(job)
    }

    fn view(&self, job: &str) -> CgroupView {
        CgroupView::v1(&self.mount_root, &self.job_path(job))
    }

    fn stats(&self, job: &str) -> Result<CgroupStats> {
        let mem = self.dir("memory", job);
        Ok(CgroupStats {
            peak_memory_bytes: read_u64(&mem.join("memory.max_usage_in_bytes")),
            cpu_usec: read_u64(&self.dir("cpuacct", job).join("cpuacct.usage")).map(|ns| ns / 1000),
            oom_kills: read_key(&mem.join("memory.oom_control"), "oom_kill").unwrap_or(0),
        })
    }

    fn apply_limits(&self, job: &str, limits: &Limits) -> Result<()> {
        super::handoff::apply_v1(&|ctrl| self.dir(ctrl, job), limits)
    }

    fn reset_accounting(&self, job: &str) -> Result<AccountingBase> {
        super::handoff::reset_v1(&self.dir("memory", job), &self.dir("cpuacct", job))
    }

    fn pids(&self, job: &str) -> Result<Vec<i32>> {
        read_pids(&self.dir("pids", job))
    }

    fn remove(&self, job: &str) -> Result<()> {
        // The freezer first would be cleaner for fork bombs; the pid namespace
        // already makes the job's init the last to go.
        for ctrl in &self.mounted {
            kill_and_rmdir(&self.dir(ctrl, job))?;
        }
        Ok(())
    }

    fn group_dirs(&self) -> Vec<PathBuf> {
        let rel = self.base.strip_prefix("/").unwrap_or(&self.base);
        self.mounted
            .iter()
            .map(|c| self.mount_root.join(c).join(rel))
            .collect()
    }

    fn list_jobs(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for ctrl in &self.mounted {
            let base = self
                .mount_root
                .join(ctrl)
                .join(self.base.strip_prefix("/").unwrap_or(Path::new("")));
            for name in subdirs(&base) {
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
        Ok(out)
    }
}
