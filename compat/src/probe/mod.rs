//! Host capability probing for `skiff check`: what this kernel and this
//! caller support, found by using each feature (a forked child unshares,
//! mounts in a private mount namespace, installs a filter), and what
//! follows for skiff.
//!
//! ```text
//! probe(store_root) ──► HostFacts        raw facts, typed (the JSON's "host")
//!                          │
//! assess(&HostFacts) ──► Assessment { checks: [Check { status, need, … }], verdict }
//! ```
//!
//! [`assess`] is pure, so the judgement is unit-tested without a host.
//! A [`Check`]'s [`Status`] says whether the capability is there; its
//! [`Need`] says what its absence costs skiff, and together they make the
//! [`Verdict`]: any required capability not ok → skiff cannot run jobs
//! (exit 1); any recommended one not ok → degraded (exit 2); else ok (0).

pub mod cgroup;
mod child;
pub mod fs;
pub mod kernel;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use cgroup::{CgroupFacts, CgroupMode};

/// The outcome of probing one feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// Whether it worked.
    pub ok: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Probe {
    /// It worked.
    pub fn ok() -> Probe {
        Probe {
            ok: true,
            error: None,
        }
    }
    /// It did not, because `why`.
    pub fn failed(why: impl Into<String>) -> Probe {
        Probe {
            ok: false,
            error: Some(why.into()),
        }
    }
    fn why(&self) -> &str {
        self.error.as_deref().unwrap_or("")
    }
}

/// The running kernel.
#[derive(Debug, Clone, Serialize)]
pub struct Kernel {
    /// `uname -r`.
    pub release: String,
    /// Major and minor version.
    pub version: (u32, u32),
}

/// Who the caller is.
#[derive(Debug, Clone, Serialize)]
pub struct Caller {
    /// Effective uid.
    pub euid: u32,
    /// CAP_SYS_ADMIN in the effective set (mounts, namespaces).
    pub cap_sys_admin: bool,
}

/// Everything [`probe`] found.
#[derive(Debug, Clone, Serialize)]
pub struct HostFacts {
    /// The kernel.
    pub kernel: Kernel,
    /// The caller.
    pub caller: Caller,
    /// cgroups.
    pub cgroups: CgroupFacts,
    /// Namespace kind → unshare result.
    pub namespaces: BTreeMap<String, Probe>,
    /// overlayfs.
    pub overlay: fs::Overlay,
    /// Kernel interfaces.
    pub interfaces: kernel::Interfaces,
    /// rlimits.
    pub limits: kernel::Limits,
    /// The store's filesystem.
    pub store: fs::Store,
}

/// A field of `/proc/self/status`.
pub(crate) fn status_field(name: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == name).then(|| v.trim().to_string())
    })
}

/// Parse `6.1.0-18-amd64` into (6, 1).
pub fn parse_release(release: &str) -> (u32, u32) {
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn uname_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Probe this host for a store at `store_root`. Scratch directories for
/// the mount probes go in `std::env::temp_dir()` and the store's filesystem;
/// all are removed, and every probe mount lives in a child's private mount
/// namespace.
pub fn probe(store_root: &Path) -> HostFacts {
    let release = uname_release();
    let cgroups = cgroup::probe(&runtime::cgroups::group_key(store_root));
    let own_cgroup2 = cgroups.v2_mount.as_ref().map(|m| {
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("0::").map(str::to_string))
            .unwrap_or_else(|| "/".into());
        m.join(own.trim_start_matches('/'))
    });
    let store = fs::store(store_root);
    HostFacts {
        kernel: Kernel {
            version: parse_release(&release),
            release,
        },
        caller: Caller {
            euid: nix::unistd::geteuid().as_raw(),
            cap_sys_admin: status_field("CapEff")
                .and_then(|v| u64::from_str_radix(&v, 16).ok())
                .is_some_and(|m| m & (1 << 21) != 0),
        },
        cgroups,
        namespaces: kernel::namespaces(),
        overlay: fs::overlay(&std::env::temp_dir()),
        interfaces: kernel::interfaces(&store.probed, own_cgroup2.as_deref()),
        limits: kernel::limits(),
        store,
    }
}

/// Whether a capability is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Present and as skiff wants it.
    Ok,
    /// Present, but with a cost or a restriction.
    Degraded,
    /// Absent, or it failed.
    Missing,
}

impl Status {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Degraded => "degraded",
            Status::Missing => "missing",
        }
    }
}

/// What a capability's absence costs skiff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Need {
    /// skiff cannot run jobs without it.
    Required,
    /// Jobs run, but slower or with less (makes the verdict degraded).
    Recommended,
    /// Reported for operators; skiff does not depend on it.
    Optional,
}

/// One line of `skiff check`.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable key, e.g. `cgroup.mode`, `overlay.volatile`.
    pub key: String,
    /// Group: system, namespaces, overlayfs, kernel, limits, store, image.
    pub group: &'static str,
    /// Whether it is there.
    pub status: Status,
    /// What its absence costs.
    pub need: Need,
    /// What was found.
    pub value: String,
    /// What follows for skiff.
    pub impact: String,
}

/// The overall answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// skiff can run jobs here as designed.
    Ok,
    /// skiff can run jobs, with costs or restrictions.
    Degraded,
    /// skiff cannot run jobs here.
    Unusable,
}

impl Verdict {
    /// `skiff check`'s exit status: 0 ok, 1 unusable, 2 degraded.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Ok => 0,
            Verdict::Unusable => 1,
            Verdict::Degraded => 2,
        }
    }
}

/// The verdict of a list of checks.
pub fn verdict(checks: &[Check]) -> Verdict {
    let not_ok = |n: Need| checks.iter().any(|c| c.need == n && c.status != Status::Ok);
    if checks
        .iter()
        .any(|c| c.need == Need::Required && c.status == Status::Missing)
    {
        Verdict::Unusable
    } else if not_ok(Need::Required) || not_ok(Need::Recommended) {
        Verdict::Degraded
    } else {
        Verdict::Ok
    }
}

struct Checks(Vec<Check>);

impl Checks {
    fn add(
        &mut self,
        key: impl Into<String>,
        group: &'static str,
        status: Status,
        need: Need,
        value: impl Into<String>,
        impact: impl Into<String>,
    ) {
        self.0.push(Check {
            key: key.into(),
            group,
            status,
            need,
            value: value.into(),
            impact: impact.into(),
        });
    }

    fn probe(
        &mut self,
        key: &str,
        group: &'static str,
        p: &Probe,
        need: Need,
        ok: (&str, &str),
        missing: &str,
    ) {
        if p.ok {
            self.add(key, group, Status::Ok, need, ok.0, ok.1);
        } else {
            self.add(key, group, Status::Missing, need, p.why(), missing);
        }
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(" ")
    }
}

/// Judge the facts: one [`Check`] per capability, in report order.
pub fn assess(h: &HostFacts) -> Vec<Check> {
    use Need::*;
    use Status::*;
    let mut c = Checks(Vec::new());
    let (maj, min) = h.kernel.version;
    let old = (maj, min) < (5, 6);
    c.add(
        "kernel",
        "system",
        if old { Degraded } else { Ok },
        Recommended,
        &h.kernel.release,
        if old {
            "older than 5.6: openat2 and pidfd_open may be missing"
        } else {
            "new enough for every interface skiff uses (openat2 and pidfd_open: 5.6)"
        },
    );
    let root = h.caller.euid == 0 && h.caller.cap_sys_admin;
    c.add(
        "privileges",
        "system",
        if root { Ok } else { Missing },
        Required,
        format!(
            "euid {}, CAP_SYS_ADMIN {}",
            h.caller.euid, h.caller.cap_sys_admin
        ),
        if root {
            "skiff runs jobs as root (rootless is not supported)"
        } else {
            "skiff needs root with CAP_SYS_ADMIN to mount and create namespaces"
        },
    );

    // cgroups.
    let cg = &h.cgroups;
    let v2c = cg
        .v2_mount
        .as_ref()
        .map(|m| {
            format!(
                "cgroup2 at {} with [{}]",
                m.display(),
                list(&cg.v2_controllers)
            )
        })
        .unwrap_or_default();
    let (st, value, impact) = match cg.mode {
        CgroupMode::Unified => (
            Ok,
            format!("unified: {v2c}"),
            "skiff uses cgroup v2 (memory.max, pids.max, memory.peak, cpu.stat)".to_string(),
        ),
        CgroupMode::Hybrid => (
            Degraded,
            format!("hybrid: v1 [{}]; {v2c}", list(&cg.v1_controllers)),
            "skiff uses the v1 hierarchies; v2-only features (clone3 into a cgroup, \
             memory.peak, cgroup.kill) are unavailable, and crun refuses hybrid \
             (skiff works around it)"
                .to_string(),
        ),
        CgroupMode::V1 => (
            Degraded,
            format!("v1: [{}]", list(&cg.v1_controllers)),
            "skiff uses the v1 hierarchies; v2-only features are unavailable".to_string(),
        ),
        CgroupMode::None => (
            Missing,
            "no cgroup filesystem".to_string(),
            "skiff cannot limit or account jobs".to_string(),
        ),
    };
    c.add("cgroup.mode", "system", st, Required, value, impact);
    if cg.mode != CgroupMode::None {
        let lacking: Vec<&str> = cgroup::NEEDED
            .iter()
            .copied()
            .filter(|n| !cg.usable_controllers.iter().any(|u| u == n))
            .collect();
        c.add(
            "cgroup.controllers",
            "system",
            if lacking.is_empty() { Ok } else { Degraded },
            Recommended,
            format!("{} driver: [{}]", cg.driver, list(&cg.usable_controllers)),
            if lacking.is_empty() {
                "memory, pids and CPU limits and accounting work".to_string()
            } else {
                format!(
                    "no usable {}: those limits (and their accounting) cannot be enforced",
                    lacking.join(", ")
                )
            },
        );
        let what = if cg.driver == "v2" {
            "delegated"
        } else {
            "creatable"
        };
        c.add(
            "cgroup.subtree",
            "system",
            if cg.subtree_ok { Ok } else { Missing },
            Required,
            format!(
                "{} {}: {}",
                cg.skiff_base.display(),
                what,
                cg.subtree_detail
            ),
            if cg.subtree_ok {
                "skiff can create job cgroups below the caller's cgroup"
            } else {
                "skiff cannot place jobs in cgroups of their own"
            },
        );
        c.add(
            "cgroup.favordynmods",
            "system",
            if cg.favordynmods { Ok } else { Missing },
            Recommended,
            if cg.favordynmods {
                "a cgroup mount has favordynmods"
            } else {
                "no cgroup mount has favordynmods"
            },
            if cg.favordynmods {
                "attaching a job's first task is cheap"
            } else {
                "each launch's first cgroup.procs write can wait 7–15 ms for an RCU grace \
                 period on an idle host (mount cgroup2 with -o favordynmods, kernel ≥ 6.0)"
            },
        );
    }

    for (name, p) in &h.namespaces {
        let need = match name.as_str() {
            "user" | "cgroup" => Optional,
            _ => Required,
        };
        let ok_impact = match name.as_str() {
            "user" => "available (skiff does not use user namespaces yet)",
            "cgroup" => "available (skiff's jobs share the launcher's cgroup namespace)",
            _ => "every job gets its own",
        };
        c.probe(
            &format!("namespace.{name}"),
            "namespaces",
            p,
            need,
            ("unshare works", ok_impact),
            if need == Required {
                "skiff cannot isolate jobs without it"
            } else {
                "not used by skiff today"
            },
        );
    }

    let o = &h.overlay;
    c.probe(
        "overlay",
        "overlayfs",
        &o.mount,
        Required,
        (
            if o.listed {
                "mounts (built in or loaded)"
            } else {
                "mounts (module loaded by the probe)"
            },
            "skiff stacks image layers with overlayfs",
        ),
        "skiff cannot build a job's root filesystem",
    );
    c.probe(
        "overlay.volatile",
        "overlayfs",
        &o.volatile,
        Recommended,
        (
            "supported",
            "skiff skips syncs on the job's throwaway upper layer",
        ),
        "skiff mounts without it: the upper layer pays syncs (slower cleanup of write-heavy jobs)",
    );
    for (key, p, what) in [
        (
            "overlay.redirect_dir",
            &o.redirect_dir,
            "renaming lower directories without copying them",
        ),
        (
            "overlay.metacopy",
            &o.metacopy,
            "metadata-only copy-up (chmod/chown without copying data)",
        ),
        ("overlay.index", &o.index, "hard-link-preserving copy-up"),
        (
            "overlay.userxattr",
            &o.userxattr,
            "overlay in user namespaces (rootless)",
        ),
    ] {
        c.probe(
            key,
            "overlayfs",
            p,
            Optional,
            ("supported", &format!("{what}; skiff does not need it")),
            "not used by skiff",
        );
    }

    let i = &h.interfaces;
    c.probe(
        "idmapped_mounts",
        "kernel",
        &i.idmapped_mounts,
        Optional,
        (
            "mount_setattr(MOUNT_ATTR_IDMAP) works on the store's filesystem",
            "usable for user-namespaced jobs later; not used today",
        ),
        "no id-shifted mounts: user-namespaced jobs would need chowned copies",
    );
    c.probe(
        "clone3",
        "kernel",
        &i.clone3,
        Optional,
        ("present", "libcontainer uses it when present"),
        "libcontainer falls back to clone",
    );
    let into = if h.cgroups.mode == CgroupMode::Unified {
        "a v2 launcher can start a job in its cgroup without a migration"
    } else {
        "but only into the cgroup2 hierarchy, which holds no controller skiff uses here"
    };
    c.probe(
        "clone_into_cgroup",
        "kernel",
        &i.clone_into_cgroup,
        Optional,
        ("clone3(CLONE_INTO_CGROUP) works", into),
        "each job's cgroup attach is a migration (see cgroup.favordynmods)",
    );
    c.probe(
        "pidfd_open",
        "kernel",
        &i.pidfd_open,
        Required,
        ("present", "skiff's supervisor waits on a pidfd"),
        "skiff's supervisor cannot wait for jobs",
    );
    c.probe(
        "openat2",
        "kernel",
        &i.openat2,
        Required,
        (
            "RESOLVE_IN_ROOT works",
            "skiff reads image files without following their symlinks out",
        ),
        "skiff cannot read /etc/passwd and friends safely from images",
    );
    c.probe(
        "seccomp",
        "kernel",
        &i.seccomp_filter,
        Required,
        (
            if i.caller_seccomp_mode == 0 {
                "filters can be installed; none applies to the caller"
            } else {
                "filters can be installed; the caller already runs under one"
            },
            "jobs get skiff's default seccomp profile",
        ),
        "jobs cannot get the default seccomp profile (only --security-opt seccomp=unconfined)",
    );

    let l = &h.limits;
    let can = l.cap_sys_resource_bounding && l.cap_sys_resource_effective && l.raise_hard_rlimit.ok;
    c.add(
        "rlimits",
        "limits",
        if can { Ok } else { Missing },
        Recommended,
        format!(
            "CAP_SYS_RESOURCE bounding {}, effective {}; raising hard nofile: {}; nofile {}/{}",
            l.cap_sys_resource_bounding,
            l.cap_sys_resource_effective,
            if l.raise_hard_rlimit.ok {
                "ok"
            } else {
                l.raise_hard_rlimit.why()
            },
            l.nofile.0,
            l.nofile.1
        ),
        if can {
            "the caller can raise rlimits for jobs"
        } else {
            "jobs inherit skiff's rlimits and can never exceed its hard limits; \
             the job's /proc/self/exe cannot be re-pointed (PR_SET_MM_EXE_FILE)"
        },
    );

    let s = &h.store;
    c.add(
        "store.fs",
        "store",
        Ok,
        Optional,
        format!(
            "{} on {}{}",
            s.root.display(),
            s.fs_type,
            if s.exists {
                ""
            } else {
                " (not created yet; parent probed)"
            }
        ),
        "layers are unpacked here and used as overlay lower directories",
    );
    c.probe(
        "store.whiteouts",
        "store",
        &s.whiteouts,
        Required,
        (
            "0/0 character devices and trusted.overlay.opaque honoured by overlay",
            "deleted files and opaque directories of image layers work",
        ),
        "images that delete files or replace directories would show the wrong files",
    );
    c.0
}

/// The result of `skiff check --image`: a tiny job launched end to end.
#[derive(Debug, Clone, Serialize)]
pub struct ImageCheck {
    /// The image.
    pub image: String,
    /// Launches made.
    pub runs: u32,
    /// Launches that exited 0.
    pub succeeded: u32,
    /// Median launch latency (start of the run until the job started), ms.
    pub launch_ms: Option<f64>,
    /// Median wall time per job, ms.
    pub wall_ms: Option<f64>,
    /// The first failure.
    pub error: Option<String>,
}

impl ImageCheck {
    /// Its line in the report.
    pub fn check(&self) -> Check {
        let ok = self.succeeded == self.runs && self.runs > 0;
        Check {
            key: "image.launch".into(),
            group: "image",
            status: if ok { Status::Ok } else { Status::Missing },
            need: Need::Required,
            value: match (ok, self.launch_ms) {
                (true, Some(l)) => format!(
                    "{}: {} of {} launches ok, launch {l:.1} ms median, wall {:.1} ms",
                    self.image,
                    self.succeeded,
                    self.runs,
                    self.wall_ms.unwrap_or(0.0)
                ),
                _ => format!(
                    "{}: {} of {} launches ok: {}",
                    self.image,
                    self.succeeded,
                    self.runs,
                    self.error.as_deref().unwrap_or("")
                ),
            },
            impact: if ok {
                "a job runs end to end".into()
            } else {
                "skiff could not run a job from this image".into()
            },
        }
    }
}

/// A finished `skiff check`, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The overall answer.
    pub verdict: Verdict,
    /// `skiff check`'s exit status.
    pub exit_code: u8,
    /// One entry per capability.
    pub checks: Vec<Check>,
    /// The raw facts.
    pub host: HostFacts,
    /// The image check, with `--image`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageCheck>,
    /// The conformance suite, when it was run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conformance: Option<crate::conformance::SuiteReport>,
}

impl Report {
    /// Assess `host` (plus the image check and suite, if run).
    pub fn new(
        host: HostFacts,
        image: Option<ImageCheck>,
        conformance: Option<crate::conformance::SuiteReport>,
    ) -> Report {
        let mut checks = assess(&host);
        if let Some(i) = &image {
            checks.push(i.check());
        }
        if let Some(s) = &conformance {
            let failed: Vec<String> = s.failures().iter().map(|c| c.name.clone()).collect();
            checks.push(Check {
                key: "image.conformance".into(),
                group: "image",
                status: if failed.is_empty() {
                    Status::Ok
                } else {
                    Status::Degraded
                },
                need: Need::Recommended,
                value: format!(
                    "{} of {} cases passed{}",
                    s.cases.len() - failed.len(),
                    s.cases.len(),
                    if failed.is_empty() {
                        String::new()
                    } else {
                        format!("; failed: {}", failed.join(", "))
                    }
                ),
                impact: if failed.is_empty() {
                    "jobs behave as docker run's do".into()
                } else {
                    "some Docker behaviours differ on this host".into()
                },
            });
        }
        let v = verdict(&checks);
        Report {
            verdict: v,
            exit_code: v.exit_code(),
            checks,
            host,
            image,
            conformance,
        }
    }

    /// The terminal report: one line per capability, then the verdict.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut group = "";
        for c in &self.checks {
            if c.group != group {
                group = c.group;
                out.push_str(&format!("{group}:\n"));
            }
            out.push_str(&format!(
                "  {:<9} {:<22} {} — {}\n",
                c.status.as_str(),
                c.key,
                c.value,
                c.impact
            ));
        }
        let lacking: Vec<&str> = self
            .checks
            .iter()
            .filter(|c| c.need != Need::Optional && c.status != Status::Ok)
            .map(|c| c.key.as_str())
            .collect();
        out.push_str(&match self.verdict {
            Verdict::Ok => "verdict: ok — skiff can run jobs here\n".to_string(),
            Verdict::Degraded => format!(
                "verdict: degraded — skiff can run jobs here, with costs: {}\n",
                lacking.join(", ")
            ),
            Verdict::Unusable => format!(
                "verdict: unusable — skiff cannot run jobs here: {}\n",
                self.checks
                    .iter()
                    .filter(|c| c.need == Need::Required && c.status == Status::Missing)
                    .map(|c| c.key.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
        out
    }
}

/// The store root a `skiff check` would probe, for callers that only have
/// `--root`.
pub fn default_store_root() -> PathBuf {
    PathBuf::from(imagestore::DEFAULT_ROOT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(key: &str, status: Status, need: Need) -> Check {
        Check {
            key: key.into(),
            group: "system",
            status,
            need,
            value: String::new(),
            impact: String::new(),
        }
    }

    #[test]
    fn test_verdict_levels() {
        use Need::*;
        use Status::*;
        assert_eq!(verdict(&[check("a", Ok, Required)]), Verdict::Ok);
        assert_eq!(
            verdict(&[check("a", Ok, Required), check("b", Missing, Optional)]),
            Verdict::Ok
        );
        assert_eq!(
            verdict(&[check("a", Degraded, Required), check("b", Ok, Recommended)]),
            Verdict::Degraded
        );
        assert_eq!(
            verdict(&[check("b", Missing, Recommended)]),
            Verdict::Degraded
        );
        assert_eq!(
            verdict(&[
                check("a", Missing, Required),
                check("b", Missing, Recommended)
            ]),
            Verdict::Unusable
        );
        assert_eq!(Verdict::Unusable.exit_code(), 1);
        assert_eq!(Verdict::Degraded.exit_code(), 2);
    }

    #[test]
    fn test_parse_release() {
        assert_eq!(parse_release("6.1.0-18-amd64"), (6, 1));
        assert_eq!(parse_release("6.18.44-fc-v669"), (6, 18));
        assert_eq!(parse_release(""), (0, 0));
    }
}
