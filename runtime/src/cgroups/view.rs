//! The job's own cgroup, read-only at `/sys/fs/cgroup`, as Docker shows it:
//! runtimes size themselves from these files (the JVM's heap, Go's and
//! Node's CPU counts), and without them they take the host's size.
//!
//! - v1: a read-only skeleton (one directory per hierarchy, plus the host's
//!   co-mount symlinks such as `cpuacct -> cpu,cpuacct`) is bound over
//!   `/sys/fs/cgroup`, then each hierarchy's job cgroup is bound read-only
//!   onto its directory. Only hierarchies the backend places jobs in are
//!   shown (not `name=systemd` nor a hybrid host's `unified`), so the job
//!   never sees a cgroup other than its own.
//! - v2: a cgroup namespace, and a read-only `cgroup2` mount inside it,
//!   whose root is the job's cgroup.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use super::cg_err;
use crate::error::Result;

/// Where the view is mounted in the job.
pub const MOUNT_POINT: &str = "/sys/fs/cgroup";

/// v1 controllers whose hierarchies a launch backend creates the job's
/// cgroup in (libcontainer's, runc's and crun's common set).
pub(super) const V1_JOB_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "pids",
    "devices",
    "freezer",
    "blkio",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
];

/// How a job sees its cgroup, from the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupView {
    /// v1: bind each hierarchy's job cgroup into a skeleton.
    Binds {
        /// `(name under /sys/fs/cgroup, host directory of the job's cgroup)`.
        dirs: Vec<(String, PathBuf)>,
        /// `(name, target)`: the host's co-mount symlinks.
        links: Vec<(String, String)>,
    },
    /// v2: a cgroup namespace and a fresh `cgroup2` mount.
    Namespace,
}

/// The mounts a job's spec gets for its cgroup view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobCgroupMount {
    /// v1: read-only binds, in mount order.
    Binds(Vec<ViewBind>),
    /// v2: a cgroup namespace and a read-only `cgroup2` mount.
    Namespace,
}

/// One bind mount of the view: `source` on the host onto `dest` in the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewBind {
    /// Host path.
    pub source: PathBuf,
    /// Path in the job.
    pub dest: String,
}

impl CgroupView {
    /// The v1 view of `job_path` (absolute from each hierarchy's root) on a
    /// host whose hierarchies are mounted under `mount_root`.
    pub fn v1(mount_root: &Path, job_path: &Path) -> CgroupView {
        let rel = job_path.strip_prefix("/").unwrap_or(job_path);
        let mut dirs: Vec<(String, PathBuf)> = Vec::new();
        let mut links = Vec::new();
        for ctrl in V1_JOB_CONTROLLERS {
            let entry = mount_root.join(ctrl);
            let Ok(meta) = fs::symlink_metadata(&entry) else {
                continue;
            };
            let name = if meta.file_type().is_symlink() {
                // `cpu -> cpu,cpuacct`: show the link and the real directory.
                let Some(target) = fs::read_link(&entry)
                    .ok()
                    .and_then(|t| t.to_str().map(str::to_string))
                    .filter(|t| !t.contains('/') && mount_root.join(t).is_dir())
                else {
                    continue;
                };
                links.push((ctrl.to_string(), target.clone()));
                target
            } else if meta.is_dir() {
                ctrl.to_string()
            } else {
                continue;
            };
            if !dirs.iter().any(|(n, _)| *n == name) {
                dirs.push((name.clone(), mount_root.join(&name).join(rel)));
            }
        }
        CgroupView::Binds { dirs, links }
    }

    /// Build the read-only skeleton in `skeleton` (an empty directory of
    /// the job's scratch) and return the binds, in mount order: the
    /// skeleton over [`MOUNT_POINT`], then each hierarchy onto it. The v2
    /// view needs no host directory.
    pub fn prepare(&self, skeleton: &Path) -> Result<JobCgroupMount> {
        let CgroupView::Binds { dirs, links } = self else {
            return Ok(JobCgroupMount::Namespace);
        };
        fs::create_dir_all(skeleton).map_err(|e| cg_err("create", skeleton, e))?;
        let mut binds = vec![ViewBind {
            source: skeleton.to_path_buf(),
            dest: MOUNT_POINT.to_string(),
        }];
        for (name, source) in dirs {
            let dir = skeleton.join(name);
            match fs::create_dir(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(cg_err("create", &dir, e));
                }
                _ => {}
            }
            binds.push(ViewBind {
                source: source.clone(),
                dest: format!("{MOUNT_POINT}/{name}"),
            });
        }
        for (name, target) in links {
            let link = skeleton.join(name);
            let _ = fs::remove_file(&link);
            symlink(target, &link).map_err(|e| cg_err("symlink", &link, e))?;
        }
        Ok(JobCgroupMount::Binds(binds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_v1_view_follows_the_hosts_hierarchies_and_links() {
        let host = tempfile::tempdir().expect("tempdir");
        let root = host.path();
        for d in ["cpu,cpuacct", "memory", "pids", "systemd", "unified"] {
            fs::create_dir(root.join(d)).expect("mkdir");
        }
        symlink("cpu,cpuacct", root.join("cpu")).expect("link");
        symlink("cpu,cpuacct", root.join("cpuacct")).expect("link");
        // A hostile link out of the mount root is not followed.
        symlink("/etc", root.join("freezer")).expect("link");
        let view = CgroupView::v1(root, Path::new("/a/skiff/g/job"));
        let CgroupView::Binds { dirs, links } = &view else {
            panic!("{view:?}")
        };
        let names: Vec<&str> = dirs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["cpu,cpuacct", "memory", "pids"]);
        assert_eq!(dirs[1].1, root.join("memory/a/skiff/g/job"));
        assert_eq!(
            links,
            &[
                ("cpu".to_string(), "cpu,cpuacct".to_string()),
                ("cpuacct".to_string(), "cpu,cpuacct".to_string())
            ]
        );

        let scratch = tempfile::tempdir().expect("tempdir");
        let skel = scratch.path().join("cgroupfs");
        let JobCgroupMount::Binds(binds) = view.prepare(&skel).expect("prepare") else {
            panic!("v1 view gives binds")
        };
        assert_eq!(binds[0].dest, MOUNT_POINT);
        assert_eq!(binds[0].source, skel);
        assert_eq!(binds[2].dest, "/sys/fs/cgroup/memory");
        assert!(skel.join("memory").is_dir());
        assert_eq!(
            fs::read_link(skel.join("cpuacct")).expect("link"),
            Path::new("cpu,cpuacct")
        );
        assert_eq!(
            CgroupView::Namespace.prepare(&skel).expect("v2"),
            JobCgroupMount::Namespace
        );
    }
}
