//! Job cgroups behind one trait, [`CgroupDriver`], with a v1 (legacy and
//! hybrid) and a v2 implementation. The layout is detected once, in
//! [`detect`]; nothing else asks which version is in use.
//!
//! Layout: every job gets `<caller's cgroup>/skiff/<store key>/<job>` on v1,
//! and `<parent of the caller's cgroup>/skiff/<store key>/<job>` on v2 (see
//! `docs/cgroups.md`). The limits themselves are written by the launch
//! backend from the OCI spec's `linux.resources` (see [`resources`]); the
//! driver names the paths, reads accounting, and kills and removes.

pub mod handoff;
mod v1;
mod v2;
mod view;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

use crate::error::{Error, Result};
use crate::job::Limits;

pub use handoff::AccountingBase;
pub use v1::CgroupV1;
pub use v2::CgroupV2;
pub use view::{CgroupView, JobCgroupMount, ViewBind, MOUNT_POINT};

/// The file crun 1.8 trips over on hybrid hosts: it refuses to run while
/// this lists any controller. Its workaround binds `/dev/null` over it in a
/// private mount namespace (HOST-FACTS.md); the host is unchanged.
pub const CRUN_HYBRID_CONTROLLERS: &str = "/sys/fs/cgroup/unified/cgroup.controllers";

/// Whether crun needs that workaround here: the file exists and lists
/// controllers.
pub fn crun_needs_hybrid_workaround() -> bool {
    std::fs::read(CRUN_HYBRID_CONTROLLERS).is_ok_and(|c| !c.trim_ascii().is_empty())
}

/// Accounting read from a job's cgroup after it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CgroupStats {
    /// Peak memory use in bytes, when the kernel reports it.
    pub peak_memory_bytes: Option<u64>,
    /// CPU time used, in microseconds.
    pub cpu_usec: Option<u64>,
    /// Number of OOM kills in the cgroup.
    pub oom_kills: u64,
}

/// Which cgroup layout the host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CgroupVersion {
    /// v1 hierarchies (legacy, or hybrid with an empty cgroup2 mount).
    V1,
    /// The unified hierarchy.
    V2,
}

/// The one seam between skiff and the host's cgroups.
pub trait CgroupDriver: std::fmt::Debug {
    /// The layout this driver handles.
    fn version(&self) -> CgroupVersion;
    /// The `linux.cgroupsPath` for a job: absolute, from the hierarchy root,
    /// below the caller's own cgroup.
    fn job_path(&self, job: &str) -> PathBuf;
    /// How the job sees its own cgroup at `/sys/fs/cgroup`.
    fn view(&self, job: &str) -> CgroupView;
    /// Read the job's accounting.
    fn stats(&self, job: &str) -> Result<CgroupStats>;
    /// Write `limits` into the cgroup of a job created without any (a warm
    /// sandbox at handoff), as the launch backend would have at create.
    fn apply_limits(&self, job: &str, limits: &Limits) -> Result<()>;
    /// Reset or baseline the accounting counters (a warm sandbox at
    /// handoff); [`handoff::since`] then gives the job's own figures.
    fn reset_accounting(&self, job: &str) -> Result<AccountingBase>;
    /// Pids in the job's cgroup.
    fn pids(&self, job: &str) -> Result<Vec<i32>>;
    /// Kill every task in the job's cgroup, then remove it. Missing is fine.
    fn remove(&self, job: &str) -> Result<()>;
    /// Names of the job cgroups that exist (for `gc` and leak counts).
    fn list_jobs(&self) -> Result<Vec<String>>;
    /// The store's group cgroup (the parent of its jobs') in each hierarchy.
    fn group_dirs(&self) -> Vec<PathBuf>;
    /// Remove the store's group cgroups where empty: a launcher recreates
    /// them with its next job. `rmdir` never removes a cgroup that has a job
    /// in it. Their `skiff` parent is shared by every store on the host and
    /// stays: removing it could race with another store's launch.
    fn prune_groups(&self) -> usize {
        self.group_dirs()
            .iter()
            .filter(|dir| fs::remove_dir(dir).is_ok())
            .count()
    }
}

/// Detect the host's layout and the caller's place in it. Job cgroups go in
/// `<caller's cgroup>/skiff/<group>/<job>`; `group` keeps the jobs of
/// different store roots apart, so one store's `gc` never touches another's.
pub fn detect(group: &str) -> Result<Box<dyn CgroupDriver>> {
    detect_at(
        Path::new("/sys/fs/cgroup"),
        Path::new("/proc/self/cgroup"),
        group,
    )
}

/// Whether a cgroup hierarchy is mounted with `favordynmods`, from
/// `/proc/self/mounts`. The option switches the kernel's (global)
/// `cgroup_threadgroup_rwsem` to favour writers, so moving a task into a
/// cgroup no longer waits for an RCU grace period (7–15 ms on an idle host;
/// see `docs/cgroups.md`). It reports the mount option only: on some
/// kernels the fast mode stays after the option is removed.
pub fn favordynmods_active() -> bool {
    fs::read_to_string("/proc/self/mounts")
        .map(|t| favordynmods_in(&t))
        .unwrap_or(false)
}

/// [`favordynmods_active`] on the text of a `/proc/mounts` file: any
/// `cgroup2` (or v1 `cgroup`) mount whose options hold `favordynmods`.
pub fn favordynmods_in(mounts: &str) -> bool {
    mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (_src, _dir, fstype, opts) = (f.next(), f.next(), f.next(), f.next());
        matches!(fstype, Some("cgroup2") | Some("cgroup"))
            && opts.is_some_and(|o| o.split(',').any(|x| x == "favordynmods"))
    })
}

/// Every `…/skiff/<group>` directory in every cgroup hierarchy mounted
/// according to `mountinfo` (the text of `/proc/self/mountinfo`): a store's
/// group cgroups wherever its launchers' callers sat, not only below this
/// process's cgroup (a service runs the jobs, a shell or timer runs `gc`).
/// Job cgroups below `<group>` are not descended into; symlinks are not
/// followed.
pub fn find_group_dirs(mountinfo: &str, group: &str) -> Vec<PathBuf> {
    /// Deeper than any cgroup tree seen in practice; bounds a hostile one.
    const MAX_DEPTH: usize = 32;
    let mut out = Vec::new();
    let mut mounts: Vec<PathBuf> = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let fstype = post.split_whitespace().next();
        let Some(mount) = pre.split_whitespace().nth(4) else {
            continue;
        };
        let mount = PathBuf::from(mount);
        if matches!(fstype, Some("cgroup" | "cgroup2")) && !mounts.contains(&mount) {
            mounts.push(mount);
        }
    }
    for mount in mounts {
        let mut todo = vec![(mount, 0usize)];
        while let Some((dir, depth)) = todo.pop() {
            let Ok(rd) = fs::read_dir(&dir) else {
                continue;
            };
            let in_skiff = dir.file_name().is_some_and(|n| n == "skiff");
            for e in rd.flatten() {
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                if in_skiff && e.file_name() == group {
                    out.push(e.path());
                } else if depth < MAX_DEPTH {
                    todo.push((e.path(), depth + 1));
                }
            }
        }
    }
    out
}

/// A short stable key for a store root, for [`detect`]'s `group`.
pub fn group_key(root: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    // FNV-1a, 64 bits: stable across builds, unlike DefaultHasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in root.as_os_str().as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", h as u32)
}

/// [`detect`] with explicit paths (for tests).
pub fn detect_at(
    mount_root: &Path,
    self_cgroup: &Path,
    group: &str,
) -> Result<Box<dyn CgroupDriver>> {
    let text = fs::read_to_string(self_cgroup).map_err(|e| cg_err("read", self_cgroup, e))?;
    if mount_root.join("cgroup.controllers").exists() {
        let own = text
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap_or("/");
        Ok(Box::new(CgroupV2::new(mount_root, own, group)))
    } else {
        Ok(Box::new(CgroupV1::new(mount_root, &text, group)))
    }
}

pub(crate) fn cg_err(op: &'static str, path: &Path, source: io::Error) -> Error {
    Error::Cgroup {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Read a cgroup file holding one number.
pub(crate) fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Read `key value` from a flat-keyed cgroup file.
pub(crate) fn read_key(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

pub(crate) fn read_pids(dir: &Path) -> Result<Vec<i32>> {
    let p = dir.join("cgroup.procs");
    match fs::read_to_string(&p) {
        Ok(t) => Ok(t.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(cg_err("read", &p, e)),
    }
}

/// Remove the cgroup `dir`: usually it is already empty (the job's init was
/// its pid namespace's reaper, so its death took every process with it) and
/// one `rmdir` does it. Otherwise SIGKILL every task in it and retry while
/// the dying tasks leave.
pub(crate) fn kill_and_rmdir(dir: &Path) -> Result<()> {
    for attempt in 0..200 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 199 => {
                for pid in read_pids(dir)? {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::SIGKILL,
                    );
                }
                if attempt > 0 {
                    std::thread::sleep(Duration::from_millis(if attempt < 20 { 1 } else { 10 }));
                }
            }
            Err(e) => return Err(cg_err("remove", dir, e)),
        }
    }
    Ok(())
}

/// Names of the subdirectories of `dir`.
pub(crate) fn subdirs(dir: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect()
}

fn dev_rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<LinuxDeviceCgroup> {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ)
        .access(access);
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    b.build().map_err(Error::BuildSpec)
}

/// Docker's default device rules: deny everything, then allow `mknod` of
/// any node and read/write of the standard devices only. A device node left
/// in an image therefore gives no access to the host's device.
pub fn default_device_rules() -> Result<Vec<LinuxDeviceCgroup>> {
    use LinuxDeviceType::{A, B, C};
    let mut rules = vec![
        dev_rule(false, A, None, None, "rwm")?,
        dev_rule(true, C, None, None, "m")?,
        dev_rule(true, B, None, None, "m")?,
    ];
    for (maj, min) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
        (10, 200),
    ] {
        rules.push(dev_rule(true, C, Some(maj), Some(min), "rwm")?);
    }
    rules.push(dev_rule(true, C, Some(136), None, "rwm")?);
    Ok(rules)
}

/// The OCI `linux.resources` for a job's limits (always with the device rules).
pub fn resources(limits: &Limits) -> Result<LinuxResources> {
    let bad = Error::BuildSpec;
    let mut b = LinuxResourcesBuilder::default().devices(default_device_rules()?);
    if let Some(m) = limits.memory_bytes {
        // Docker sets swap = 2 × memory by default when only -m is given; skiff
        // forbids swap instead so that an OOM is an OOM. `--memory-swap`
        // (memory + swap, or -1) as Docker.
        b = b.memory(
            LinuxMemoryBuilder::default()
                .limit(m as i64)
                .swap(limits.memory_swap_bytes.unwrap_or(m as i64))
                .build()
                .map_err(bad)?,
        );
    }
    if limits.cpus.is_some() || limits.cpu_shares.is_some() {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some((quota, period)) = limits.cpu_quota_period() {
            cpu = cpu.quota(quota).period(period);
        }
        if let Some(s) = limits.cpu_shares {
            cpu = cpu.shares(s);
        }
        b = b.cpu(cpu.build().map_err(bad)?);
    }
    if let Some(p) = limits.pids {
        b = b.pids(LinuxPidsBuilder::default().limit(p).build().map_err(bad)?);
    }
    b.build().map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_find_group_dirs_every_hierarchy_and_caller() {
        let t = tempfile::tempdir().expect("tempdir");
        let (cpu, uni) = (t.path().join("cpu"), t.path().join("unified"));
        let want = [
            cpu.join("a/skiff/k1"),
            cpu.join("a/b/skiff/k1"),
            uni.join("skiff/k1"),
        ];
        for d in want.iter().chain(&[
            cpu.join("a/skiff/k2"),
            cpu.join("a/skiff/k1/job/skiff/k1"),
            cpu.join("a/k1"),
        ]) {
            fs::create_dir_all(d).expect("mkdir");
        }
        let mountinfo = format!(
            "1 0 0:1 / / rw - ext4 /dev/x rw\n\
             2 1 0:2 / {} rw - cgroup cgroup rw,cpu\n\
             3 1 0:3 / {} rw - cgroup2 cgroup2 rw\n\
             4 1 0:2 / {} rw - cgroup cgroup rw,cpu\n",
            cpu.display(),
            uni.display(),
            cpu.display(),
        );
        let mut got = find_group_dirs(&mountinfo, "k1");
        got.sort();
        let mut want = want.to_vec();
        want.sort();
        assert_eq!(got, want);
        assert!(find_group_dirs("", "k1").is_empty());
    }

    #[test]
    fn test_resources_limits_to_oci() {
        let r = resources(&Limits {
            memory_bytes: Some(64 << 20),
            memory_swap_bytes: None,
            cpus: Some(1.5),
            cpu_shares: Some(512),
            pids: Some(32),
        })
        .expect("ok");
        let mem = r.memory().as_ref().expect("memory");
        assert_eq!(mem.limit(), Some(64 << 20));
        let cpu = r.cpu().as_ref().expect("cpu");
        assert_eq!(
            (cpu.quota(), cpu.period(), cpu.shares()),
            (Some(150_000), Some(100_000), Some(512))
        );
        assert_eq!(r.pids().as_ref().expect("pids").limit(), 32);
        let devs = r.devices().as_ref().expect("devices");
        assert!(!devs[0].allow());
    }

    #[test]
    fn test_favordynmods_from_mount_options() {
        let stock = "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0\n\
                     cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0\n\
                     cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";
        assert!(!favordynmods_in(stock));
        let tuned = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nsdelegate,favordynmods,memory_recursiveprot 0 0\n";
        assert!(favordynmods_in(tuned));
        // Only cgroup filesystems count, and only the whole option.
        assert!(!favordynmods_in("tmpfs /x tmpfs rw,favordynmods 0 0\n"));
        assert!(!favordynmods_in(
            "cgroup2 /x cgroup2 rw,nofavordynmods 0 0\n"
        ));
    }

    #[test]
    fn test_detect_v1_uses_deepest_caller_path() {
        let dir = tempfile::tempdir().expect("tmp");
        let cg = dir.path().join("cgroup");
        fs::write(&cg, "4:memory:/a/b\n3:pids:/\n0::/\n").expect("write");
        let d = detect_at(dir.path(), &cg, "g").expect("detect");
        assert_eq!(d.version(), CgroupVersion::V1);
        assert_eq!(d.job_path("j1"), PathBuf::from("/a/b/skiff/g/j1"));
    }

    #[test]
    fn test_detect_v2_uses_unified_path() {
        let dir = tempfile::tempdir().expect("tmp");
        fs::write(dir.path().join("cgroup.controllers"), "memory pids\n").expect("write");
        let cg = dir.path().join("self");
        fs::write(&cg, "0::/user.slice/x\n").expect("write");
        let d = detect_at(dir.path(), &cg, "g").expect("detect");
        assert_eq!(d.version(), CgroupVersion::V2);
        // Beside the caller's own (process-holding) cgroup: v2's no-internal-processes rule.
        assert_eq!(d.job_path("j"), PathBuf::from("/user.slice/skiff/g/j"));
        fs::write(&cg, "0::/\n").expect("write");
        let d = detect_at(dir.path(), &cg, "g").expect("detect");
        assert_eq!(d.job_path("j"), PathBuf::from("/skiff/g/j"));
    }
}
