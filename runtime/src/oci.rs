//! The OCI runtime spec (`config.json`) for a job, with Docker's defaults:
//! mounts, capabilities, masked and read-only paths, namespaces,
//! `no_new_privileges`, seccomp and device rules. The same spec goes to
//! libcontainer and, in a bundle, to an external runtime.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespace, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxResources, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder,
};

use crate::cgroups::{self, JobCgroupMount};
use crate::error::{Error, Result};
use crate::job::{JobSpec, NetworkMode, TmpfsMount};
use crate::seccomp::SeccompPlan;
use crate::user::ExecUser;

/// Docker's default capability set.
pub const DEFAULT_CAPS: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Capability names by bit number (`CapBnd` in `/proc/self/status`).
const CAP_BITS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Docker's masked paths.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn parse_cap(name: &str) -> Result<Capability> {
    let up = name.trim().to_ascii_uppercase();
    let bare = up.strip_prefix("CAP_").unwrap_or(&up);
    bare.parse().map_err(|_| Error::InvalidOption {
        what: "capability",
        value: name.to_string(),
        detail: "unknown capability".into(),
    })
}

/// The caller's bounding set: a job can never hold more.
pub fn caller_bounding_set() -> Vec<Capability> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    CAP_BITS
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .filter_map(|(_, n)| n.parse().ok())
        .collect()
}

/// Docker's default set with `--cap-add` and `--cap-drop` applied (`ALL`
/// means every capability the caller holds). Adding one the caller lacks is
/// an error.
pub fn capabilities(
    add: &[String],
    drop: &[String],
    bounding: &[Capability],
) -> Result<Vec<Capability>> {
    let mut caps: Vec<Capability> = if drop.iter().any(|d| d.eq_ignore_ascii_case("all")) {
        Vec::new()
    } else {
        DEFAULT_CAPS.to_vec()
    };
    for d in drop.iter().filter(|d| !d.eq_ignore_ascii_case("all")) {
        let c = parse_cap(d)?;
        caps.retain(|x| *x != c);
    }
    for a in add {
        let new: Vec<Capability> = if a.eq_ignore_ascii_case("all") {
            bounding.to_vec()
        } else {
            let c = parse_cap(a)?;
            if !bounding.contains(&c) {
                return Err(Error::InvalidOption {
                    what: "capability",
                    value: a.clone(),
                    detail: "skiff itself does not hold it, so no job can".into(),
                });
            }
            vec![c]
        };
        for c in new {
            if !caps.contains(&c) {
                caps.push(c);
            }
        }
    }
    Ok(caps)
}

/// The resolved process of a job.
#[derive(Debug, Clone)]
pub struct ProcessPlan {
    /// argv.
    pub args: Vec<String>,
    /// Environment.
    pub env: Vec<String>,
    /// Working directory (absolute).
    pub cwd: String,
    /// Identity.
    pub user: ExecUser,
    /// Hostname.
    pub hostname: String,
    /// Capabilities.
    pub caps: Vec<Capability>,
}

/// Host-side inputs of a spec.
#[derive(Debug)]
pub struct SpecPaths<'a> {
    /// The mounted root filesystem.
    pub rootfs: &'a Path,
    /// Directory holding `hostname`, `hosts` and `resolv.conf` for the job.
    pub etc_dir: &'a Path,
    /// `linux.cgroupsPath`.
    pub cgroups_path: &'a Path,
    /// The job's read-only view of its cgroup at `/sys/fs/cgroup`.
    pub cgroup_mount: &'a JobCgroupMount,
    /// The job's seccomp plan ([`crate::seccomp::plan`]): only
    /// [`SeccompPlan::InSpec`] puts a profile in the spec.
    pub seccomp: &'a SeccompPlan,
}

fn mount(dest: &str, typ: &str, source: &str, opts: &[&str]) -> Result<Mount> {
    MountBuilder::default()
        .destination(PathBuf::from(dest))
        .typ(typ)
        .source(PathBuf::from(source))
        .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(Error::BuildSpec)
}

fn namespace(t: LinuxNamespaceType) -> Result<LinuxNamespace> {
    LinuxNamespaceBuilder::default()
        .typ(t)
        .build()
        .map_err(Error::BuildSpec)
}

/// Docker's standard mounts.
fn standard_mounts() -> Result<Vec<Mount>> {
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
    ])
}

/// The job's cgroup at `/sys/fs/cgroup`, read-only: on v1, binds of the
/// skeleton and of each hierarchy's job cgroup; on v2, `cgroup2` mounted in
/// the job's cgroup namespace (the runtime's `cgroup` mount type).
fn cgroup_mounts(view: &JobCgroupMount) -> Result<Vec<Mount>> {
    const FLAGS: [&str; 4] = ["nosuid", "noexec", "nodev", "ro"];
    match view {
        JobCgroupMount::Namespace => Ok(vec![mount(
            cgroups::MOUNT_POINT,
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?]),
        JobCgroupMount::Binds(binds) => binds
            .iter()
            .map(|b| {
                let opts = ["bind", "rprivate"].iter().chain(FLAGS.iter());
                let opts: Vec<&str> = opts.copied().collect();
                mount(&b.dest, "bind", &b.source.to_string_lossy(), &opts)
            })
            .collect(),
    }
}

/// Build the spec of a job.
pub fn build_spec(
    job: &JobSpec,
    plan: &ProcessPlan,
    paths: &SpecPaths<'_>,
    resources: Option<LinuxResources>,
) -> Result<Spec> {
    let bad = Error::BuildSpec;
    let caps: std::collections::HashSet<Capability> = plan.caps.iter().copied().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(std::collections::HashSet::new())
        .ambient(std::collections::HashSet::new())
        .build()
        .map_err(bad)?;
    let user = UserBuilder::default()
        .uid(plan.user.uid)
        .gid(plan.user.gid)
        .additional_gids(plan.user.additional_gids.clone())
        .build()
        .map_err(bad)?;
    let mut process = ProcessBuilder::default()
        .terminal(false)
        .user(user)
        .args(plan.args.clone())
        .env(plan.env.clone())
        .cwd(PathBuf::from(&plan.cwd))
        .capabilities(capabilities)
        .build()
        .map_err(bad)?;
    // `--security-opt no-new-privileges=false` leaves the field out (the
    // OCI default, false) rather than writing `false`: libcontainer treats
    // any value as "set" and then loads seccomp after dropping the
    // capabilities, which fails for a non-root user without no_new_privs.
    process.set_no_new_privileges(job.no_new_privileges.then_some(true));
    // `--ulimit`s and the caller's nofile: every other rlimit is inherited
    // from the caller, as Docker's jobs inherit the daemon's (the builder's
    // default would set nofile to 1024/1024).
    let rlimits = crate::ulimit::for_job(&job.ulimits)
        .map_err(|(value, detail)| Error::InvalidOption {
            what: "--ulimit",
            value,
            detail,
        })?
        .iter()
        .map(|u| u.to_oci().map_err(bad))
        .collect::<Result<Vec<_>>>()?;
    process.set_rlimits(Some(rlimits));

    let mut mounts = standard_mounts()?;
    mounts.extend(cgroup_mounts(paths.cgroup_mount)?);
    for v in &job.volumes {
        let mut opts = vec!["rbind", "rprivate"];
        if v.read_only {
            opts.push("ro");
        }
        mounts.push(mount(&v.target, "bind", &v.host.to_string_lossy(), &opts)?);
    }
    for t in &job.tmpfs {
        let t = TmpfsMount::parse(t).map_err(|detail| Error::InvalidOption {
            what: "--tmpfs",
            value: t.clone(),
            detail,
        })?;
        let opts: Vec<&str> = t.options.iter().map(String::as_str).collect();
        mounts.push(mount(&t.target, "tmpfs", "tmpfs", &opts)?);
    }
    // The job's own /etc files go last, as Docker mounts them: a volume or
    // tmpfs over /etc must not hide its hostname, hosts and resolv.conf.
    let etc_opts: &[&str] = if job.read_only {
        &["rbind", "rprivate", "ro"]
    } else {
        &["rbind", "rprivate"]
    };
    for (name, dest) in [
        ("hostname", "/etc/hostname"),
        ("hosts", "/etc/hosts"),
        ("resolv.conf", "/etc/resolv.conf"),
    ] {
        let src = paths.etc_dir.join(name);
        mounts.push(mount(dest, "bind", &src.to_string_lossy(), etc_opts)?);
    }

    let mut namespaces = vec![
        namespace(LinuxNamespaceType::Pid)?,
        namespace(LinuxNamespaceType::Ipc)?,
        namespace(LinuxNamespaceType::Uts)?,
        namespace(LinuxNamespaceType::Mount)?,
    ];
    if job.network == NetworkMode::None {
        namespaces.push(namespace(LinuxNamespaceType::Network)?);
    }
    if *paths.cgroup_mount == JobCgroupMount::Namespace {
        namespaces.push(namespace(LinuxNamespaceType::Cgroup)?);
    }

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(
            MASKED_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .readonly_paths(
            READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .cgroups_path(paths.cgroups_path.to_path_buf());
    if let Some(r) = resources {
        linux = linux.resources(r);
    }
    if let Some(profile) = paths.seccomp.spec_profile() {
        linux = linux.seccomp(profile.clone());
    }
    let root = RootBuilder::default()
        .path(paths.rootfs.to_path_buf())
        .readonly(job.read_only)
        .build()
        .map_err(bad)?;
    SpecBuilder::default()
        .version("1.0.2")
        .root(root)
        .hostname(plan.hostname.clone())
        .process(process)
        .mounts(mounts)
        .linux(linux.build().map_err(bad)?)
        .build()
        .map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::PosixRlimitType;

    #[test]
    fn test_capabilities_add_drop() {
        let bounding: Vec<Capability> = CAP_BITS.iter().filter_map(|n| n.parse().ok()).collect();
        let caps =
            capabilities(&["SYS_ADMIN".into()], &["CAP_NET_RAW".into()], &bounding).expect("ok");
        assert!(caps.contains(&Capability::SysAdmin));
        assert!(!caps.contains(&Capability::NetRaw));
        assert_eq!(caps.len(), DEFAULT_CAPS.len());
        let none = capabilities(&[], &["ALL".into()], &bounding).expect("ok");
        assert!(none.is_empty());
        let without_resource: Vec<Capability> = bounding
            .iter()
            .copied()
            .filter(|c| *c != Capability::SysResource)
            .collect();
        assert!(capabilities(&["SYS_RESOURCE".into()], &[], &without_resource).is_err());
        assert!(capabilities(&["NOPE".into()], &[], &bounding).is_err());
    }

    #[test]
    fn test_build_spec_docker_defaults() {
        let job = JobSpec {
            read_only: true,
            ..Default::default()
        };
        let plan = ProcessPlan {
            args: vec!["true".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            user: ExecUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![2000],
                home: "/".into(),
            },
            hostname: "h".into(),
            caps: DEFAULT_CAPS.to_vec(),
        };
        let paths = SpecPaths {
            rootfs: Path::new("/r"),
            etc_dir: Path::new("/e"),
            cgroups_path: Path::new("/a/skiff/j"),
            cgroup_mount: &JobCgroupMount::Namespace,
            seccomp: &SeccompPlan::InSpec(
                crate::seccomp::default_profile(
                    &plan.caps,
                    crate::seccomp::MaskedEqOrder::default(),
                )
                .expect("profile"),
            ),
        };
        let spec = build_spec(&job, &plan, &paths, None).expect("spec");
        let p = spec.process().as_ref().expect("process");
        assert_eq!(p.no_new_privileges(), Some(true));
        assert_eq!(
            p.user().additional_gids().as_ref().expect("gids"),
            &vec![2000]
        );
        let linux = spec.linux().as_ref().expect("linux");
        assert!(linux
            .masked_paths()
            .as_ref()
            .expect("masked")
            .contains(&"/proc/kcore".to_string()));
        assert!(linux.seccomp().is_some());
        let ns = linux.namespaces().as_ref().expect("ns");
        assert!(ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
        assert_eq!(spec.root().as_ref().expect("root").readonly(), Some(true));
        // Inherited rlimits: only the caller's nofile is written, not the
        // builder's 1024/1024.
        let rl = p.rlimits().as_ref().expect("rlimits");
        let mut own = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: writes into the struct we own.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut own) }, 0);
        assert_eq!(rl.len(), 1);
        assert_eq!(rl[0].typ(), PosixRlimitType::RlimitNofile);
        assert_eq!((rl[0].soft(), rl[0].hard()), (own.rlim_cur, own.rlim_max));
        // v2: the job's cgroup namespace and a read-only cgroup2 mount.
        assert!(ns.iter().any(|n| n.typ() == LinuxNamespaceType::Cgroup));
        let cg = spec
            .mounts()
            .as_ref()
            .expect("mounts")
            .iter()
            .find(|m| m.destination() == Path::new("/sys/fs/cgroup"))
            .expect("cgroup mount");
        assert_eq!(cg.typ().as_deref(), Some("cgroup"));
        assert!(cg.options().as_ref().expect("opts").contains(&"ro".into()));
    }

    #[test]
    fn test_build_spec_ulimits_and_cgroup_binds() {
        let job = JobSpec {
            ulimits: vec!["nofile=10:20".into(), "nproc=5".into(), "nofile=30".into()],
            ..Default::default()
        };
        let binds = JobCgroupMount::Binds(vec![
            cgroups::ViewBind {
                source: "/scratch/cgroupfs".into(),
                dest: "/sys/fs/cgroup".into(),
            },
            cgroups::ViewBind {
                source: "/sys/fs/cgroup/memory/a/skiff/j".into(),
                dest: "/sys/fs/cgroup/memory".into(),
            },
        ]);
        let plan = plan_for_tests();
        let paths = SpecPaths {
            rootfs: Path::new("/r"),
            etc_dir: Path::new("/e"),
            cgroups_path: Path::new("/a/skiff/j"),
            cgroup_mount: &binds,
            seccomp: &SeccompPlan::None,
        };
        let spec = build_spec(&job, &plan, &paths, None).expect("spec");
        let rl = spec
            .process()
            .as_ref()
            .expect("p")
            .rlimits()
            .clone()
            .expect("rl");
        let got: Vec<_> = rl.iter().map(|r| (r.typ(), r.soft(), r.hard())).collect();
        assert_eq!(
            got,
            [
                (PosixRlimitType::RlimitNproc, 5, 5),
                (PosixRlimitType::RlimitNofile, 30, 30)
            ]
        );
        let mounts = spec.mounts().as_ref().expect("mounts");
        let cg: Vec<_> = mounts
            .iter()
            .filter(|m| m.destination().starts_with("/sys/fs/cgroup"))
            .collect();
        assert_eq!(cg.len(), 2);
        for m in &cg {
            assert_eq!(m.typ().as_deref(), Some("bind"));
            assert!(m.options().as_ref().expect("o").contains(&"ro".into()));
        }
        assert_eq!(
            cg[1].source().as_deref(),
            Some(Path::new("/sys/fs/cgroup/memory/a/skiff/j"))
        );
        let ns = spec
            .linux()
            .as_ref()
            .expect("linux")
            .namespaces()
            .clone()
            .expect("ns");
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Cgroup));
        let bad = JobSpec {
            ulimits: vec!["bogus=1".into()],
            ..Default::default()
        };
        let e = build_spec(&bad, &plan, &paths, None).expect_err("bad ulimit");
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    fn spec_for(job: &JobSpec) -> Spec {
        spec_with(job, &SeccompPlan::None)
    }

    fn plan_for_tests() -> ProcessPlan {
        ProcessPlan {
            args: vec!["true".into()],
            env: vec![],
            cwd: "/".into(),
            user: ExecUser {
                uid: 0,
                gid: 0,
                additional_gids: vec![],
                home: "/".into(),
            },
            hostname: "h".into(),
            caps: DEFAULT_CAPS.to_vec(),
        }
    }

    fn spec_with(job: &JobSpec, seccomp: &SeccompPlan) -> Spec {
        let plan = plan_for_tests();
        let paths = SpecPaths {
            rootfs: Path::new("/r"),
            etc_dir: Path::new("/e"),
            cgroups_path: Path::new("/a/skiff/j"),
            cgroup_mount: &JobCgroupMount::Namespace,
            seccomp,
        };
        build_spec(job, &plan, &paths, None).expect("spec")
    }

    #[test]
    fn test_build_spec_follows_the_seccomp_plan() {
        let seccomp_of = |plan: &SeccompPlan| {
            let spec = spec_with(&JobSpec::default(), plan);
            spec.linux().as_ref().expect("linux").seccomp().clone()
        };
        let profile =
            crate::seccomp::default_profile(DEFAULT_CAPS, crate::seccomp::MaskedEqOrder::default())
                .expect("profile");
        assert_eq!(
            seccomp_of(&SeccompPlan::InSpec(profile.clone())),
            Some(profile)
        );
        assert_eq!(seccomp_of(&SeccompPlan::None), None);
        let bpf = crate::seccomp::Bpf::from_bytes(&[0; 8]).expect("one instruction");
        assert_eq!(seccomp_of(&SeccompPlan::Executor(bpf)), None);
    }

    #[test]
    fn test_build_spec_no_new_privileges_follows_the_job() {
        let nnp = |on: bool| {
            let job = JobSpec {
                no_new_privileges: on,
                ..Default::default()
            };
            let spec = spec_for(&job);
            spec.process()
                .as_ref()
                .expect("process")
                .no_new_privileges()
        };
        assert_eq!(nnp(true), Some(true));
        assert_eq!(nnp(false), None);
    }

    #[test]
    fn test_build_spec_etc_files_mounted_after_volumes() {
        let job = JobSpec {
            volumes: vec!["/etc:/etc".parse().expect("volume")],
            tmpfs: vec!["/etc/x".into()],
            ..Default::default()
        };
        let spec = spec_for(&job);
        let dests: Vec<String> = spec
            .mounts()
            .as_ref()
            .expect("mounts")
            .iter()
            .map(|m| m.destination().to_string_lossy().into_owned())
            .collect();
        let pos = |d: &str| dests.iter().position(|x| x == d).expect(d);
        for f in ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"] {
            assert!(
                pos(f) > pos("/etc"),
                "{f} before the /etc volume: {dests:?}"
            );
            assert!(pos(f) > pos("/etc/x"), "{f} before the tmpfs: {dests:?}");
        }
    }

    #[test]
    fn test_build_spec_tmpfs_options() {
        let job = JobSpec {
            tmpfs: vec!["/x:size=1m,mode=700".into()],
            ..Default::default()
        };
        let spec = spec_for(&job);
        let m = spec
            .mounts()
            .as_ref()
            .expect("mounts")
            .iter()
            .find(|m| m.destination() == Path::new("/x"))
            .expect("tmpfs at /x")
            .clone();
        let opts = m.options().clone().unwrap_or_default();
        assert!(opts.contains(&"size=1048576".to_string()), "{opts:?}");
        assert!(opts.contains(&"mode=700".to_string()), "{opts:?}");
        assert!(opts.contains(&"noexec".to_string()), "{opts:?}");
    }
}
