//! The guest side of a matrix VM: `skiff matrix-guest`, pid 1 in a tmpfs
//! root (after `/init`'s `switch_root`).
//!
//! It mounts `/proc`, `/sys`, `/dev` and the cgroup hierarchies the cell
//! asks for (`skiff.cgroup=v2`: cgroup2 at `/sys/fs/cgroup`; `v1`: one
//! hierarchy per controller on a tmpfs there), loads the modules in
//! `/modules/order`, imports `/images/*` into a store on the tmpfs, runs
//! `skiff check`'s probes and the conformance suite once per runtime
//! (`skiff.runtimes=libcontainer,runc`), prints one JSON [`GuestReport`]
//! between [`BEGIN`] and [`END`] on the console and on the second serial
//! port, and ends the VM through the `isa-debug-exit` port.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::conformance::{self, InProcess};
use runtime::Backend;

/// Marks the start of the result on the console.
pub const BEGIN: &str = "SKIFF-MATRIX-RESULT-BEGIN";
/// Marks its end.
pub const END: &str = "SKIFF-MATRIX-RESULT-END";
/// The `isa-debug-exit` I/O port.
pub const EXIT_PORT: u16 = 0xf4;

/// One case as the matrix keeps it (the suite's `CaseReport`, readable back).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CaseResult {
    /// Case name.
    pub name: String,
    /// Area (`limits`, `process`, …).
    pub area: String,
    /// Whether it passed.
    pub passed: bool,
    /// Why not.
    pub reason: Option<String>,
    /// Median launch latency, ms.
    pub launch_ms: Option<f64>,
    /// Median wall time, ms.
    pub wall_ms: Option<f64>,
}

/// A suite run by one runtime.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SuiteRun {
    /// The cases, in suite order.
    pub cases: Vec<CaseResult>,
    /// Why the suite could not run at all.
    pub error: Option<String>,
    /// Seconds the suite took.
    pub seconds: f64,
}

impl SuiteRun {
    /// From the suite's report.
    pub fn from_report(r: &conformance::SuiteReport, seconds: f64) -> SuiteRun {
        let cases = serde_json::to_value(&r.cases)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        SuiteRun {
            cases,
            error: None,
            seconds,
        }
    }
}

/// The probe summary of a guest (or the host).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckSummary {
    /// `ok`, `degraded` or `unusable`.
    pub verdict: String,
    /// The cgroup mode the probe saw.
    pub cgroup_mode: String,
    /// The controllers skiff can use.
    pub controllers: Vec<String>,
    /// `key: status` of every check that is not ok.
    pub not_ok: Vec<String>,
}

impl CheckSummary {
    /// Summarise a `skiff check` report.
    pub fn from_report(r: &crate::probe::Report) -> CheckSummary {
        CheckSummary {
            verdict: serde_json::to_value(r.verdict)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            cgroup_mode: serde_json::to_value(r.host.cgroups.mode)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            controllers: r.host.cgroups.usable_controllers.clone(),
            not_ok: r
                .checks
                .iter()
                .filter(|c| c.status != crate::probe::Status::Ok)
                .map(|c| format!("{}: {}", c.key, c.status.as_str()))
                .collect(),
        }
    }
}

/// What a guest reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GuestReport {
    /// `uname -r` in the guest.
    pub kernel: String,
    /// The cgroup setup asked for (`v1` or `v2`).
    pub cgroup: String,
    /// `skiff check` in the guest.
    pub check: Option<CheckSummary>,
    /// Runtime name → its suite run.
    pub runtimes: BTreeMap<String, SuiteRun>,
    /// Why the guest could not set up (no runtime ran).
    pub setup_error: Option<String>,
    /// Seconds from pid 1's start to the report.
    pub seconds: f64,
}

/// Parse `skiff.KEY=VALUE` words of a kernel command line.
pub fn cmdline_params(cmdline: &str) -> BTreeMap<String, String> {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("skiff."))
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Extract the report from a console or result-port log.
pub fn parse_report(log: &str) -> Option<GuestReport> {
    let start = log.rfind(BEGIN)? + BEGIN.len();
    let end = start + log[start..].find(END)?;
    serde_json::from_str(log[start..end].trim()).ok()
}

fn mount(src: &str, target: &str, fstype: &str, data: Option<&str>) -> Result<(), String> {
    let _ = fs::create_dir_all(target);
    nix::mount::mount(
        Some(src),
        target,
        Some(fstype),
        nix::mount::MsFlags::empty(),
        data,
    )
    .map_err(|e| format!("mount {fstype} on {target}: {e}"))
}

/// The cgroup modes a VM can be booted in: `v1` (one hierarchy per
/// controller), `v2` (cgroup2, skiff in the root cgroup, as in a container
/// or a VM) and `v2-delegated` (cgroup2, skiff in the leaf of a delegated
/// subtree, as under systemd with `Delegate=yes`).
pub const CGROUP_MODES: &[&str] = &["v1", "v2", "v2-delegated"];

/// The v1 hierarchies mounted for a `v1` cell (co-mounted groups as
/// systemd does).
pub const V1_HIERARCHIES: &[&str] = &[
    "cpu,cpuacct",
    "memory",
    "pids",
    "devices",
    "freezer",
    "blkio",
    "cpuset",
];

fn mount_cgroups(mode: &str) -> Result<(), String> {
    if mode == "v1" {
        mount("tmpfs", "/sys/fs/cgroup", "tmpfs", Some("mode=0755"))?;
        let mut errs = Vec::new();
        for h in V1_HIERARCHIES {
            let target = format!("/sys/fs/cgroup/{h}");
            if let Err(e) = mount("cgroup", &target, "cgroup", Some(h)) {
                errs.push(e);
                let _ = fs::remove_dir(&target);
                continue;
            }
            if h.contains(',') {
                for c in h.split(',') {
                    let _ = std::os::unix::fs::symlink(h, format!("/sys/fs/cgroup/{c}"));
                }
            }
        }
        if !errs.is_empty() {
            eprintln!("skiff matrix-guest: {}", errs.join("; "));
        }
        Ok(())
    } else {
        mount("cgroup2", "/sys/fs/cgroup", "cgroup2", None)?;
        if mode == "v2-delegated" {
            delegate()?;
        }
        Ok(())
    }
}

/// The layout `docs/cgroups.md` asks for on a systemd host: a delegated
/// subtree `/skiff.scope` with memory, pids and cpu enabled for children,
/// whose processes (skiff, here pid 1) sit in the leaf
/// `/skiff.scope/launcher`.
fn delegate() -> Result<(), String> {
    let w = |p: &str, v: &str| fs::write(p, v).map_err(|e| format!("write {v:?} to {p}: {e}"));
    let mk = |p: &str| fs::create_dir_all(p).map_err(|e| format!("mkdir {p}: {e}"));
    mk("/sys/fs/cgroup/skiff.scope/launcher")?;
    w(
        "/sys/fs/cgroup/cgroup.subtree_control",
        "+memory +pids +cpu",
    )?;
    w("/sys/fs/cgroup/skiff.scope/launcher/cgroup.procs", "0")?;
    w(
        "/sys/fs/cgroup/skiff.scope/cgroup.subtree_control",
        "+memory +pids +cpu",
    )
}

fn load_modules() -> Result<(), String> {
    let order = fs::read_to_string("/modules/order").unwrap_or_default();
    for name in order.lines().filter(|l| !l.is_empty()) {
        let p = Path::new("/modules").join(name);
        let f = fs::File::open(&p).map_err(|e| format!("open {}: {e}", p.display()))?;
        // SAFETY: finit_module with a valid descriptor and an empty C string.
        let rc = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), c"".as_ptr(), 0) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(format!("load module {name}: {e}"));
            }
        }
    }
    Ok(())
}

fn setup(cgroup: &str) -> Result<(), String> {
    mount("sysfs", "/sys", "sysfs", None)?;
    mount("devtmpfs", "/dev", "devtmpfs", None)?;
    let _ = mount("devpts", "/dev/pts", "devpts", None);
    let _ = mount("tmpfs", "/dev/shm", "tmpfs", None);
    mount_cgroups(cgroup)?;
    load_modules()?;
    // Rust 2021: set_var is safe; pid 1 has no other thread.
    std::env::set_var("PATH", "/bin:/sbin:/usr/bin:/usr/sbin");
    std::env::set_var("HOME", "/root");
    Ok(())
}

fn run_all(params: &BTreeMap<String, String>, report: &mut GuestReport) -> Result<(), String> {
    let root = Path::new("/var/lib/skiff");
    let store = imagestore::Store::open(root).map_err(|e| format!("open store: {e}"))?;
    conformance::import_vendor_images(&store, Path::new("/images")).map_err(|e| {
        format!(
            "import the vendored images: {}",
            conformance::error_chain(&e)
        )
    })?;
    drop(store);
    let check = crate::probe::Report::new(crate::probe::probe(root), None, None);
    report.check = Some(CheckSummary::from_report(&check));
    let runtimes = params
        .get("runtimes")
        .map(String::as_str)
        .unwrap_or("libcontainer");
    for rt in runtimes.split(',').filter(|r| !r.is_empty()) {
        let t = Instant::now();
        let run = (|| -> Result<SuiteRun, String> {
            let store = imagestore::Store::open(root).map_err(|e| e.to_string())?;
            let mut launch = if rt == super::WARM {
                InProcess::warm(store)
            } else {
                let backend = Backend::parse(rt).map_err(|e| e.to_string())?;
                InProcess::new(store, backend)
            }
            .map_err(|e| conformance::error_chain(&e))?;
            let work = Path::new("/tmp/suite").join(rt);
            fs::create_dir_all(&work).map_err(|e| e.to_string())?;
            let r = conformance::run_suite(&mut launch, &work);
            Ok(SuiteRun::from_report(&r, t.elapsed().as_secs_f64()))
        })();
        let run = run.unwrap_or_else(|e| SuiteRun {
            cases: Vec::new(),
            error: Some(e),
            seconds: t.elapsed().as_secs_f64(),
        });
        eprintln!(
            "skiff matrix-guest: {rt}: {} of {} cases passed in {:.1} s",
            run.cases.iter().filter(|c| c.passed).count(),
            run.cases.len(),
            run.seconds
        );
        report.runtimes.insert(rt.to_string(), run);
    }
    Ok(())
}

/// Write the report where the host reads it.
fn emit(report: &GuestReport) {
    let json =
        serde_json::to_string(report).unwrap_or_else(|e| format!("{{\"setup_error\":\"{e}\"}}"));
    let text = format!("\n{BEGIN}\n{json}\n{END}\n");
    if let Ok(mut f) = fs::OpenOptions::new().write(true).open("/dev/ttyS1") {
        let _ = f.write_all(text.as_bytes());
        let _ = f.flush();
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// End the VM: QEMU exits with `(code << 1) | 1` through `isa-debug-exit`;
/// if the port is absent, power off.
pub fn exit_vm(code: u32) -> ! {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    // SAFETY: ioperm for one port range; the write goes to QEMU's device.
    unsafe {
        if libc::ioperm(u64::from(EXIT_PORT), 4, 1) == 0 {
            std::arch::asm!("out dx, eax", in("dx") EXIT_PORT, in("eax") code, options(nomem, nostack));
        }
        libc::reboot(libc::LINUX_REBOOT_CMD_POWER_OFF);
    }
    // The kernel halts; pid 1 must never return.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// `skiff matrix-guest`: everything above, then the exit (0 when every
/// case of every runtime passed, 1 otherwise).
pub fn main() -> ! {
    let t = Instant::now();
    let mut report = GuestReport::default();
    // Mounted already when this is the re-execution below.
    let proc = if Path::new("/proc/self/exe").exists() {
        Ok(())
    } else {
        mount("proc", "/proc", "proc", None)
    };
    // Jobs must never be able to write this binary (needs /proc): re-execute
    // from a read-only bind mount of it, once.
    let proc =
        proc.and_then(|()| runtime::readonly_exe::reexec_read_only().map_err(|e| format!("{e}")));
    let params = cmdline_params(&fs::read_to_string("/proc/cmdline").unwrap_or_default());
    report.cgroup = params.get("cgroup").cloned().unwrap_or_else(|| "v2".into());
    report.kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let res = proc
        .and_then(|()| setup(&report.cgroup))
        .and_then(|()| run_all(&params, &mut report));
    if let Err(e) = res {
        eprintln!("skiff matrix-guest: {e}");
        report.setup_error = Some(e);
    }
    report.seconds = t.elapsed().as_secs_f64();
    emit(&report);
    let ok = report.setup_error.is_none()
        && report
            .runtimes
            .values()
            .all(|r| r.error.is_none() && r.cases.iter().all(|c| c.passed));
    exit_vm(if ok { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cmdline_params() {
        let p = cmdline_params(
            "console=ttyS0 panic=-1 skiff.cgroup=v1 skiff.runtimes=libcontainer,runc",
        );
        assert_eq!(p.get("cgroup").map(String::as_str), Some("v1"));
        assert_eq!(
            p.get("runtimes").map(String::as_str),
            Some("libcontainer,runc")
        );
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn test_parse_report_between_markers() {
        let r = GuestReport {
            kernel: "6.1.0-1-amd64".into(),
            cgroup: "v2".into(),
            ..Default::default()
        };
        let log = format!(
            "[ 1.0] boot noise\n{BEGIN}\n{}\n{END}\n[ 2.0] reboot: Power down\n",
            serde_json::to_string(&r).expect("json")
        );
        let back = parse_report(&log).expect("report");
        assert_eq!(back.kernel, "6.1.0-1-amd64");
        assert!(parse_report("no markers").is_none());
        assert!(parse_report(&format!("{BEGIN}\n{{broken")).is_none());
    }
}
