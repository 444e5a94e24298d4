//! The host's cgroup layout as skiff would use it: which mode, which
//! controllers, whether skiff's subtree can be made, and `favordynmods`.
//!
//! Read from `/proc/self/mountinfo` and `/proc/self/cgroup`; the subtree
//! check creates (and removes) one empty cgroup where skiff's jobs would go.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// How cgroups are mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// Only v1 hierarchies.
    V1,
    /// v1 controller hierarchies plus a cgroup2 mount (systemd's hybrid).
    Hybrid,
    /// Only the unified (v2) hierarchy, at `/sys/fs/cgroup`.
    Unified,
    /// No cgroup filesystem is mounted.
    None,
}

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hierarchy {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// 2 for cgroup2, 1 otherwise.
    pub version: u8,
    /// v1: the controllers bound to it (`name=…` excluded).
    pub controllers: Vec<String>,
    /// The superblock options (`favordynmods`, `nsdelegate`, …).
    pub options: Vec<String>,
}

/// The cgroup facts `skiff check` reports.
#[derive(Debug, Clone, Serialize)]
pub struct CgroupFacts {
    /// The mode.
    pub mode: CgroupMode,
    /// The controllers of the mounted v1 hierarchies.
    pub v1_controllers: Vec<String>,
    /// Where cgroup2 is mounted, if anywhere.
    pub v2_mount: Option<PathBuf>,
    /// The controllers the cgroup2 root offers (`cgroup.controllers`).
    pub v2_controllers: Vec<String>,
    /// Which driver skiff picks (`v1` or `v2`), as `runtime::cgroups::detect` does.
    pub driver: String,
    /// The controllers skiff can place jobs in with that driver.
    pub usable_controllers: Vec<String>,
    /// Where skiff's job cgroups would go (absolute in the hierarchy).
    pub skiff_base: PathBuf,
    /// Whether skiff's subtree can be created and used (v1: creatable in
    /// the memory and pids hierarchies; v2: delegated).
    pub subtree_ok: bool,
    /// What the subtree check found.
    pub subtree_detail: String,
    /// Whether a cgroup mount has `favordynmods` (cheap task attach).
    pub favordynmods: bool,
    /// Every cgroup mount.
    pub hierarchies: Vec<Hierarchy>,
}

/// The controllers skiff's jobs need for limits and accounting.
pub const NEEDED: &[&str] = &["memory", "pids", "cpu"];

/// Parse the cgroup lines of `/proc/self/mountinfo`.
pub fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = left.split(' ').nth(4).unwrap_or("");
        let mut r = right.split(' ');
        let fstype = r.next().unwrap_or("");
        let _source = r.next();
        let opts: Vec<String> = r
            .next()
            .unwrap_or("")
            .split(',')
            .map(str::to_string)
            .collect();
        let version = match fstype {
            "cgroup2" => 2,
            "cgroup" => 1,
            _ => continue,
        };
        let controllers = if version == 1 {
            opts.iter()
                .filter(|o| is_v1_controller(o))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        out.push(Hierarchy {
            mount_point: PathBuf::from(runtime::mountinfo::unescape(mount_point)),
            version,
            controllers,
            options: opts,
        });
    }
    out
}

fn is_v1_controller(opt: &str) -> bool {
    matches!(
        opt,
        "cpu"
            | "cpuacct"
            | "cpuset"
            | "memory"
            | "devices"
            | "freezer"
            | "net_cls"
            | "net_prio"
            | "blkio"
            | "perf_event"
            | "hugetlb"
            | "pids"
            | "rdma"
            | "misc"
    )
}

/// The mode from the mounted hierarchies. `/sys/fs/cgroup` itself being
/// cgroup2 with no v1 controller hierarchy is unified.
pub fn mode_of(hs: &[Hierarchy]) -> CgroupMode {
    let v1 = hs
        .iter()
        .any(|h| h.version == 1 && !h.controllers.is_empty());
    let v2 = hs.iter().any(|h| h.version == 2);
    match (v1, v2) {
        (true, true) => CgroupMode::Hybrid,
        (true, false) => CgroupMode::V1,
        (false, true) => CgroupMode::Unified,
        (false, false) => CgroupMode::None,
    }
}

/// Whether any cgroup mount carries `favordynmods`.
pub fn favordynmods(hs: &[Hierarchy]) -> bool {
    hs.iter()
        .any(|h| h.options.iter().any(|o| o == "favordynmods"))
}

fn words(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Probe the host's cgroups for a store whose cgroup group key is `group`.
pub fn probe(group: &str) -> CgroupFacts {
    let hs = parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo").unwrap_or_default());
    let self_cgroup = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    probe_with(&hs, &self_cgroup, group)
}

fn probe_with(hs: &[Hierarchy], self_cgroup: &str, group: &str) -> CgroupFacts {
    let mode = mode_of(hs);
    let mut v1_controllers: Vec<String> = hs
        .iter()
        .filter(|h| h.version == 1)
        .flat_map(|h| h.controllers.clone())
        .collect();
    v1_controllers.sort();
    v1_controllers.dedup();
    let v2 = hs.iter().find(|h| h.version == 2);
    let v2_mount = v2.map(|h| h.mount_point.clone());
    let v2_controllers = v2_mount
        .as_ref()
        .map(|m| words(&m.join("cgroup.controllers")))
        .unwrap_or_default();
    let mut facts = CgroupFacts {
        mode,
        v1_controllers,
        v2_mount,
        v2_controllers,
        driver: String::new(),
        usable_controllers: Vec::new(),
        skiff_base: PathBuf::new(),
        subtree_ok: false,
        subtree_detail: String::new(),
        favordynmods: favordynmods(hs),
        hierarchies: hs.to_vec(),
    };
    let check_job = format!("skiff-check-{}", std::process::id());
    match mode {
        CgroupMode::None => {
            facts.subtree_detail = "no cgroup filesystem is mounted".into();
        }
        CgroupMode::Unified => {
            facts.driver = "v2".into();
            let own = self_cgroup
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .unwrap_or("/")
                .to_string();
            let mount = facts.v2_mount.clone().unwrap_or_default();
            let driver = runtime::cgroups::CgroupV2::new(&mount, &own, group);
            use runtime::cgroups::CgroupDriver;
            facts.skiff_base = driver
                .job_path(&check_job)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let own_dir = mount.join(own.trim_start_matches('/'));
            facts.usable_controllers = words(&own_dir.join("cgroup.controllers"));
            let (ok, detail) = v2_delegation(&own, &own_dir);
            facts.subtree_ok = ok;
            facts.subtree_detail = detail;
        }
        CgroupMode::V1 | CgroupMode::Hybrid => {
            facts.driver = "v1".into();
            let driver =
                runtime::cgroups::CgroupV1::new(Path::new("/sys/fs/cgroup"), self_cgroup, group);
            use runtime::cgroups::CgroupDriver;
            let job = driver.job_path(&check_job);
            facts.skiff_base = job.parent().map(Path::to_path_buf).unwrap_or_default();
            let mut notes = Vec::new();
            let mut ok = true;
            for ctrl in &facts.v1_controllers {
                let Some(h) = hs
                    .iter()
                    .find(|h| h.version == 1 && h.controllers.contains(ctrl))
                else {
                    continue;
                };
                let dir = h
                    .mount_point
                    .join(job.strip_prefix("/").unwrap_or(Path::new("")));
                match try_create(&dir) {
                    Ok(()) => facts.usable_controllers.push(ctrl.clone()),
                    Err(e) => {
                        if NEEDED.contains(&ctrl.as_str()) {
                            ok = false;
                        }
                        notes.push(format!("{ctrl}: cannot create {}: {e}", dir.display()));
                    }
                }
            }
            for n in NEEDED {
                if !facts.v1_controllers.iter().any(|c| c == n) {
                    ok = false;
                    notes.push(format!("{n}: no v1 hierarchy"));
                }
            }
            facts.subtree_ok = ok;
            facts.subtree_detail = if notes.is_empty() {
                format!(
                    "created and removed {} in every v1 hierarchy",
                    job.display()
                )
            } else {
                notes.join("; ")
            };
        }
    }
    facts
}

/// Create `dir` (and missing parents), then remove what was created.
fn try_create(dir: &Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut p = dir.to_path_buf();
    while !p.exists() {
        missing.push(p.clone());
        if !p.pop() {
            break;
        }
    }
    let r = fs::create_dir_all(dir);
    for m in &missing {
        let _ = fs::remove_dir(m);
    }
    r
}

/// On v2, skiff's job cgroups go below the caller's own cgroup, so the
/// caller's cgroup must be able to enable controllers for children: the
/// root cgroup always can; any other cgroup only while it has no processes
/// of its own (the no-internal-processes rule), and skiff itself is one.
/// Whether skiff's v2 job subtree can get controllers: jobs go beside the
/// caller's cgroup, so its parent must be writable and hold no processes.
fn v2_delegation(own: &str, own_dir: &Path) -> (bool, String) {
    if own == "/" {
        return (
            true,
            "the caller is in the root cgroup, which may enable controllers for children".into(),
        );
    }
    let parent = Path::new(own).parent().unwrap_or(Path::new("/"));
    let parent_dir = own_dir.parent().unwrap_or(own_dir);
    let pname = parent.display();
    if parent == Path::new("/") {
        return (true, format!("jobs go beside {own}, under the root cgroup"));
    }
    let procs = fs::read_to_string(parent_dir.join("cgroup.procs")).unwrap_or_default();
    let n = procs.lines().filter(|l| !l.trim().is_empty()).count();
    let writable = nix::unistd::access(
        &parent_dir.join("cgroup.subtree_control"),
        nix::unistd::AccessFlags::W_OK,
    )
    .is_ok();
    if !writable {
        return (
            false,
            format!("{pname}/cgroup.subtree_control is not writable: the subtree is not delegated"),
        );
    }
    if n > 0 {
        return (
            false,
            format!(
                "{pname} holds {n} process(es): the kernel refuses to enable controllers for \
                 skiff's jobs beside {own} (no internal processes); run skiff in a leaf of a \
                 delegated subtree"
            ),
        );
    }
    (
        true,
        format!("{pname} is delegated and holds no processes; jobs go beside {own}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 23 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/memory rw shared:12 - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw shared:13 - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 / /sys/fs/cgroup/pids rw shared:14 - cgroup cgroup rw,pids
";

    #[test]
    fn test_parse_mountinfo_hybrid() {
        let hs = parse_mountinfo(HYBRID);
        assert_eq!(hs.len(), 5);
        assert_eq!(mode_of(&hs), CgroupMode::Hybrid);
        assert!(!favordynmods(&hs));
        let cpu = hs
            .iter()
            .find(|h| h.mount_point == Path::new("/sys/fs/cgroup/cpu,cpuacct"))
            .expect("cpu");
        assert_eq!(cpu.controllers, vec!["cpu", "cpuacct"]);
        let sd = hs
            .iter()
            .find(|h| h.mount_point.ends_with("systemd"))
            .expect("systemd");
        assert!(sd.controllers.is_empty());
    }

    #[test]
    fn test_mode_unified_and_favordynmods() {
        let hs = parse_mountinfo(
            "31 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate,favordynmods,memory_recursiveprot\n",
        );
        assert_eq!(mode_of(&hs), CgroupMode::Unified);
        assert!(favordynmods(&hs));
        assert_eq!(mode_of(&[]), CgroupMode::None);
        // Only a named v1 hierarchy (no controllers) plus cgroup2 is unified.
        let hs = parse_mountinfo(
            "1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n2 0 0:2 / /x rw - cgroup cgroup rw,name=systemd\n",
        );
        assert_eq!(mode_of(&hs), CgroupMode::Unified);
    }

    #[test]
    fn test_unescape_mount_point() {
        assert_eq!(runtime::mountinfo::unescape("/a\\040b"), "/a b");
        assert_eq!(runtime::mountinfo::unescape("/plain"), "/plain");
    }
}
