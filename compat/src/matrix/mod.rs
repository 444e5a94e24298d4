//! The compatibility matrix: skiff's conformance suite across kernels ×
//! cgroup modes × runtimes.
//!
//! ```text
//! kernels: host, 6.1-v2, 6.1-v1, 6.12-v2      runtimes: libcontainer, runc, crun, youki
//!    │
//!    ├─ host ──► one `skiff launcher` per runtime (pool protocol), suite on this host
//!    └─ X.Y-vN ─► kernel::prepare (apt → cache → vmlinux + modules)
//!                 initramfs::build (skiff, runtimes, busybox, images, modules, /init)
//!                 qemu::boot (TCG, deadline) ─► guest::main in the VM ─► GuestReport
//!    ▼
//! MatrixReport { kernels: [KernelRow], cells: [Cell] } ─► report::{text, markdown, html}, JSON
//! ```
//!
//! A VM boots once per kernel column and runs the suite for every runtime
//! there; a VM that crashes or passes its deadline fails all its cells and
//! keeps its console log.

pub mod cpio;
pub mod guest;
pub mod initramfs;
pub mod kernel;
pub mod qemu;
pub mod report;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::conformance;
use guest::{CheckSummary, SuiteRun};
use runtime::pool::Launcher;
use runtime::Backend;

/// Errors of the matrix runner (a cell's failure is a result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    /// A filesystem operation failed.
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An external tool (apt, dpkg-deb, qemu, xz, ldd) failed.
    #[error("{tool}: {detail}")]
    Tool { tool: String, detail: String },
    /// No Debian kernel of that series is known to apt or in the cache.
    #[error("no Debian kernel {series}: {detail}")]
    KernelNotFound { series: String, detail: String },
    /// A `--kernels` or `--runtimes` entry does not parse.
    #[error("invalid {what} {value:?}: {detail}")]
    InvalidAxis {
        what: &'static str,
        value: String,
        detail: String,
    },
}

/// The default kernel axis.
pub const DEFAULT_KERNELS: &str = "host,6.1-v2,6.1-v1,6.12-v2";
/// The default runtime axis.
pub const DEFAULT_RUNTIMES: &str = "libcontainer,warm,runc,crun,youki";

/// The runtime column of skiff's warm sandboxes: libcontainer, every job
/// handed to a sandbox created before it (or, on a miss, for it).
pub const WARM: &str = "warm";

/// One kernel column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelSel {
    /// As given: `host`, `6.1-v2`, …
    pub id: String,
    /// The Debian series (`6.1`), or None for the host.
    pub series: Option<String>,
    /// The cgroup mode of a VM: `v1`, `v2` or `v2-delegated` (see
    /// [`guest::CGROUP_MODES`]).
    pub cgroup: Option<String>,
}

/// Parse `--kernels`.
pub fn parse_kernels(s: &str) -> Result<Vec<KernelSel>, MatrixError> {
    let mut out = Vec::new();
    for id in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        if id == "host" {
            out.push(KernelSel {
                id: id.into(),
                series: None,
                cgroup: None,
            });
            continue;
        }
        let bad = |detail: &str| MatrixError::InvalidAxis {
            what: "kernel",
            value: id.to_string(),
            detail: detail.to_string(),
        };
        let (series, cg) = id
            .split_once('-')
            .ok_or_else(|| bad("expected host or SERIES-MODE, e.g. 6.1-v2"))?;
        if !guest::CGROUP_MODES.contains(&cg) {
            return Err(bad("the cgroup mode must be v1, v2 or v2-delegated"));
        }
        let mut parts = series.split('.');
        let ok = parts.next().is_some_and(|p| p.parse::<u32>().is_ok())
            && parts.next().is_some_and(|p| p.parse::<u32>().is_ok())
            && parts.next().is_none();
        if !ok {
            return Err(bad("the series must be MAJOR.MINOR, e.g. 6.12"));
        }
        out.push(KernelSel {
            id: id.into(),
            series: Some(series.into()),
            cgroup: Some(cg.into()),
        });
    }
    if out.is_empty() {
        return Err(MatrixError::InvalidAxis {
            what: "kernels",
            value: s.into(),
            detail: "empty".into(),
        });
    }
    Ok(out)
}

/// Parse `--runtimes`.
pub fn parse_runtimes(s: &str) -> Result<Vec<String>, MatrixError> {
    let v: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(bad) = v.iter().find(|r| r.contains('/')) {
        return Err(MatrixError::InvalidAxis {
            what: "runtime",
            value: bad.clone(),
            detail: "give a name found in PATH (libcontainer, runc, crun, youki)".into(),
        });
    }
    Ok(v)
}

/// How a cell came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellStatus {
    /// Every case passed.
    Pass,
    /// Some case failed.
    Fail,
    /// The runtime is not installed here.
    Absent,
    /// The cell could not run: VM crash, deadline, setup failure.
    Error,
}

/// One failed case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    /// Case name.
    pub case: String,
    /// Why.
    pub reason: String,
}

/// One kernel × runtime result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    /// Kernel column id.
    pub kernel: String,
    /// Runtime.
    pub runtime: String,
    /// Outcome.
    pub status: CellStatus,
    /// Cases passed.
    pub passed: usize,
    /// Cases run.
    pub total: usize,
    /// The failed cases.
    pub failures: Vec<Failure>,
    /// Median launch latency of the suite's latency case, ms.
    pub launch_ms: Option<f64>,
    /// Why the cell is absent or an error.
    pub detail: Option<String>,
    /// Seconds the suite took.
    pub seconds: f64,
    /// Every case (for the JSON).
    pub cases: Vec<guest::CaseResult>,
}

impl Cell {
    fn from_run(kernel: &str, runtime: &str, run: &SuiteRun) -> Cell {
        let passed = run.cases.iter().filter(|c| c.passed).count();
        let failures: Vec<Failure> = run
            .cases
            .iter()
            .filter(|c| !c.passed)
            .map(|c| Failure {
                case: c.name.clone(),
                reason: c.reason.clone().unwrap_or_default(),
            })
            .collect();
        let status = if run.error.is_some() || run.cases.is_empty() {
            CellStatus::Error
        } else if failures.is_empty() {
            CellStatus::Pass
        } else {
            CellStatus::Fail
        };
        Cell {
            kernel: kernel.into(),
            runtime: runtime.into(),
            status,
            passed,
            total: run.cases.len(),
            failures,
            launch_ms: run
                .cases
                .iter()
                .find(|c| c.area == "latency")
                .and_then(|c| c.launch_ms),
            detail: run.error.clone(),
            seconds: run.seconds,
            cases: run.cases.clone(),
        }
    }

    fn without(kernel: &str, runtime: &str, status: CellStatus, detail: String) -> Cell {
        Cell {
            kernel: kernel.into(),
            runtime: runtime.into(),
            status,
            passed: 0,
            total: 0,
            failures: Vec::new(),
            launch_ms: None,
            detail: Some(detail),
            seconds: 0.0,
            cases: Vec::new(),
        }
    }
}

/// One kernel column's facts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KernelRow {
    /// Column id.
    pub id: String,
    /// The kernel release that ran.
    pub release: Option<String>,
    /// The Debian package (VMs).
    pub package: Option<String>,
    /// `skiff check` there.
    pub check: Option<CheckSummary>,
    /// Seconds for the whole column (boot included).
    pub seconds: f64,
    /// The VM's console log, kept.
    pub console_log: Option<PathBuf>,
    /// Why the column could not run.
    pub error: Option<String>,
}

/// The whole matrix.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MatrixReport {
    /// When it ran (UTC, RFC 3339).
    pub generated: String,
    /// skiff's version.
    pub skiff_version: String,
    /// The host's kernel.
    pub host_kernel: String,
    /// The runtime axis.
    pub runtimes: Vec<String>,
    /// The kernel axis.
    pub kernels: Vec<KernelRow>,
    /// One cell per kernel × runtime.
    pub cells: Vec<Cell>,
}

impl MatrixReport {
    /// The cell for `kernel` × `runtime`.
    pub fn cell(&self, kernel: &str, runtime: &str) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.kernel == kernel && c.runtime == runtime)
    }

    /// Whether every cell that could run passed (absent runtimes are fine).
    pub fn passed(&self) -> bool {
        self.cells
            .iter()
            .all(|c| matches!(c.status, CellStatus::Pass | CellStatus::Absent))
    }
}

/// What `skiff matrix` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Kernel columns.
    pub kernels: Vec<KernelSel>,
    /// Runtimes.
    pub runtimes: Vec<String>,
    /// Output directory.
    pub out: PathBuf,
    /// Per-cell deadline (a VM gets one per runtime it runs, plus boot).
    pub timeout: Duration,
    /// Kernel cache.
    pub cache: PathBuf,
    /// The skiff binary (this one).
    pub skiff: PathBuf,
    /// The vendored images.
    pub vendor_images: PathBuf,
    /// A static busybox for the initramfs.
    pub busybox: PathBuf,
    /// VM memory, MiB.
    pub memory_mb: u32,
    /// VM CPUs.
    pub cpus: u32,
}

/// Where a runtime's binary is, or why it is absent.
pub fn find_runtime(name: &str) -> Result<Option<PathBuf>, String> {
    if name == WARM {
        return Ok(None);
    }
    match Backend::parse(name) {
        Ok(Backend::Libcontainer) => Ok(None),
        Ok(Backend::Binary(p)) => Ok(Some(p)),
        Err(e) => Err(e.to_string()),
    }
}

fn now_rfc3339() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn uname_r() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn io_err(op: &'static str, p: &Path) -> impl FnOnce(std::io::Error) -> MatrixError {
    let path = p.to_path_buf();
    move |source| MatrixError::Io { op, path, source }
}

/// Run the host column: a fresh store with the vendored images, and one
/// `skiff launcher` per runtime.
fn host_column(opts: &Options, log: &mut dyn Write) -> (KernelRow, Vec<Cell>) {
    let t = Instant::now();
    let mut row = KernelRow {
        id: "host".into(),
        release: Some(uname_r()),
        package: None,
        check: None,
        seconds: 0.0,
        console_log: None,
        error: None,
    };
    let work = opts.out.join("work").join("host");
    let store_root = work.join("store");
    let setup = (|| -> Result<(), String> {
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).map_err(|e| format!("create {}: {e}", work.display()))?;
        let store = imagestore::Store::open(&store_root).map_err(|e| e.to_string())?;
        conformance::import_vendor_images(&store, &opts.vendor_images).map_err(|e| {
            format!(
                "import the vendored images: {}",
                conformance::error_chain(&e)
            )
        })
    })();
    let check = crate::probe::Report::new(crate::probe::probe(&store_root), None, None);
    row.check = Some(CheckSummary::from_report(&check));
    let mut cells = Vec::new();
    for rt in &opts.runtimes {
        if let Err(e) = &setup {
            cells.push(Cell::without("host", rt, CellStatus::Error, e.clone()));
            continue;
        }
        let runtime = match find_runtime(rt) {
            Ok(p) => p,
            Err(e) => {
                cells.push(Cell::without("host", rt, CellStatus::Absent, e));
                continue;
            }
        };
        let tc = Instant::now();
        let run = (|| -> Result<SuiteRun, String> {
            let mut cmd = Command::new(&opts.skiff);
            cmd.arg("--root").arg(&store_root).arg("launcher");
            if rt == WARM {
                cmd.args(["--warm", "2", "--warm-per-key", "1"]);
            }
            cmd.stderr(std::process::Stdio::null());
            let mut launcher = Launcher::spawn(cmd).map_err(|e| e.to_string())?;
            launcher.set_runtime(runtime.as_ref().map(|_| rt.clone()));
            if rt == WARM {
                launcher.set_warm_policy(Some(runtime::warm::WarmPolicy::Require));
            }
            let dir = work.join(format!("suite-{rt}"));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let r = conformance::run_suite(&mut launcher, &dir);
            let _ = launcher.finish();
            Ok(SuiteRun::from_report(&r, tc.elapsed().as_secs_f64()))
        })();
        let cell = match run {
            Ok(r) => Cell::from_run("host", rt, &r),
            Err(e) => Cell::without("host", rt, CellStatus::Error, e),
        };
        let _ = writeln!(
            log,
            "matrix: host × {rt}: {} ({}/{}) in {:.1} s",
            report::status_word(cell.status),
            cell.passed,
            cell.total,
            cell.seconds
        );
        cells.push(cell);
    }
    remove_group_cgroups(&store_root);
    let _ = std::fs::remove_dir_all(&work);
    row.seconds = t.elapsed().as_secs_f64();
    (row, cells)
}

/// Remove the (empty) `skiff/<key>` cgroups a throwaway store's jobs used,
/// in every hierarchy.
pub fn remove_group_cgroups(store_root: &Path) {
    let Ok(driver) = runtime::cgroups::detect(&runtime::cgroups::group_key(store_root)) else {
        return;
    };
    let job = driver.job_path("x");
    let Some(base) = job.parent() else { return };
    let rel = base.strip_prefix("/").unwrap_or(base);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for h in crate::probe::cgroup::parse_mountinfo(&mountinfo) {
        // Not the `skiff` parent, which every store shares: removing it
        // races with other stores' launches creating their groups under it.
        let _ = std::fs::remove_dir(h.mount_point.join(rel));
    }
}

/// Run one VM column.
fn vm_column(opts: &Options, k: &KernelSel, log: &mut dyn Write) -> (KernelRow, Vec<Cell>) {
    let t = Instant::now();
    let mut row = KernelRow {
        id: k.id.clone(),
        release: None,
        package: None,
        check: None,
        seconds: 0.0,
        console_log: None,
        error: None,
    };
    let mut in_vm = Vec::new();
    let mut cells = Vec::new();
    let mut binaries = Vec::new();
    for rt in &opts.runtimes {
        match find_runtime(rt) {
            Ok(p) => {
                in_vm.push(rt.clone());
                binaries.extend(p);
            }
            Err(e) => cells.push(Cell::without(&k.id, rt, CellStatus::Absent, e)),
        }
    }
    let series = k.series.clone().unwrap_or_default();
    let cgroup = k.cgroup.clone().unwrap_or_else(|| "v2".into());
    let vm_dir = opts.out.join("vm").join(&k.id);
    let booted = (|| -> Result<qemu::VmOutcome, MatrixError> {
        let kern = kernel::prepare(&opts.cache, &series, log)?;
        row.release = Some(kern.release.clone());
        row.package = Some(kern.package.clone());
        let modules = kernel::modules_with_deps(&kern.modules, &["overlay"])?;
        let work = opts.out.join("work").join(&k.id);
        std::fs::create_dir_all(&work).map_err(io_err("create", &work))?;
        let initrd = work.join("initramfs.cpio");
        let mut images = Vec::new();
        for (_, stem) in conformance::IMAGES {
            for ext in ["tar", "tar.gz"] {
                let p = opts.vendor_images.join(format!("{stem}.{ext}"));
                if p.exists() {
                    images.push(p);
                    break;
                }
            }
        }
        initramfs::build(
            &initramfs::Contents {
                skiff: opts.skiff.clone(),
                binaries: binaries.clone(),
                busybox: opts.busybox.clone(),
                images,
                modules,
            },
            &initrd,
        )?;
        let _ = std::fs::remove_dir_all(&vm_dir);
        let _ = writeln!(
            log,
            "matrix: booting {} ({}) with cgroup {cgroup} for {}",
            k.id,
            kern.release,
            in_vm.join(", ")
        );
        let vm = qemu::Vm {
            kernel: kern.vmlinux.clone(),
            initrd,
            append: format!("skiff.cgroup={cgroup} skiff.runtimes={}", in_vm.join(",")),
            memory_mb: opts.memory_mb,
            cpus: opts.cpus,
            dir: vm_dir.clone(),
            timeout: Duration::from_secs(60) + opts.timeout * (in_vm.len().max(1) as u32),
        };
        let out = qemu::boot(&vm);
        let _ = std::fs::remove_dir_all(&work);
        out
    })();
    match booted {
        Err(e) => {
            row.error = Some(e.to_string());
            for rt in &in_vm {
                cells.push(Cell::without(&k.id, rt, CellStatus::Error, e.to_string()));
            }
        }
        Ok(vm) => {
            row.console_log = Some(vm.console_log.clone());
            let why = if vm.timed_out {
                format!(
                    "VM killed after {:.0} s (deadline); console log kept",
                    vm.seconds
                )
            } else {
                format!(
                    "VM ended (QEMU exit {:?}) without a report; console log kept",
                    vm.exit_code
                )
            };
            match &vm.report {
                None => {
                    row.error = Some(why.clone());
                    for rt in &in_vm {
                        cells.push(Cell::without(&k.id, rt, CellStatus::Error, why.clone()));
                    }
                }
                Some(r) => {
                    row.release = Some(r.kernel.clone());
                    row.check = r.check.clone();
                    row.error = r.setup_error.clone();
                    for rt in &in_vm {
                        let cell = match r.runtimes.get(rt) {
                            Some(run) => Cell::from_run(&k.id, rt, run),
                            None => Cell::without(
                                &k.id,
                                rt,
                                CellStatus::Error,
                                r.setup_error.clone().unwrap_or_else(|| why.clone()),
                            ),
                        };
                        let _ = writeln!(
                            log,
                            "matrix: {} × {rt}: {} ({}/{}) in {:.1} s",
                            k.id,
                            report::status_word(cell.status),
                            cell.passed,
                            cell.total,
                            cell.seconds
                        );
                        cells.push(cell);
                    }
                }
            }
            let _ = writeln!(log, "matrix: {} done in {:.1} s", k.id, vm.seconds);
        }
    }
    // Keep the runtime axis order.
    cells.sort_by_key(|c| opts.runtimes.iter().position(|r| *r == c.runtime));
    row.seconds = t.elapsed().as_secs_f64();
    (row, cells)
}

/// Run the matrix and write `matrix.{json,md,html,txt}` into `opts.out`.
pub fn run(opts: &Options, log: &mut dyn Write) -> Result<MatrixReport, MatrixError> {
    std::fs::create_dir_all(&opts.out).map_err(io_err("create", &opts.out))?;
    // A private copy of the binary: a rebuild during a long run must not
    // change (or delete) what the later columns boot.
    let work = opts.out.join("work");
    std::fs::create_dir_all(&work).map_err(io_err("create", &work))?;
    let skiff = work.join("skiff");
    initramfs::copy_stripped(&opts.skiff, &skiff)?;
    let opts = &Options {
        skiff,
        ..opts.clone()
    };
    let mut rep = MatrixReport {
        generated: now_rfc3339(),
        skiff_version: env!("CARGO_PKG_VERSION").into(),
        host_kernel: uname_r(),
        runtimes: opts.runtimes.clone(),
        kernels: Vec::new(),
        cells: Vec::new(),
    };
    for k in &opts.kernels {
        let (row, cells) = if k.series.is_none() {
            host_column(opts, log)
        } else {
            vm_column(opts, k, log)
        };
        rep.kernels.push(row);
        rep.cells.extend(cells);
        // Written after every column, so a long run shows progress.
        report::write_all(&rep, &opts.out)?;
    }
    let _ = std::fs::remove_dir_all(opts.out.join("work"));
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_kernels() {
        let k = parse_kernels("host,6.1-v2,6.12-v2,6.1-v1").expect("parse");
        assert_eq!(k.len(), 4);
        assert_eq!(k[0].series, None);
        assert_eq!(k[1].series.as_deref(), Some("6.1"));
        assert_eq!(k[3].cgroup.as_deref(), Some("v1"));
        assert!(parse_kernels("6.1-v3").is_err());
        let d = parse_kernels("6.12-v2-delegated").expect("delegated");
        assert_eq!(d[0].series.as_deref(), Some("6.12"));
        assert_eq!(d[0].cgroup.as_deref(), Some("v2-delegated"));
        assert!(parse_kernels("6-v2").is_err());
        assert!(parse_kernels("latest").is_err());
        assert!(parse_kernels("").is_err());
    }

    #[test]
    fn test_cell_from_run() {
        let run = SuiteRun {
            cases: vec![
                guest::CaseResult {
                    name: "a".into(),
                    area: "process".into(),
                    passed: true,
                    ..Default::default()
                },
                guest::CaseResult {
                    name: "launch latency".into(),
                    area: "latency".into(),
                    passed: false,
                    reason: Some("exit 1".into()),
                    launch_ms: Some(9.5),
                    ..Default::default()
                },
            ],
            error: None,
            seconds: 1.0,
        };
        let c = Cell::from_run("host", "runc", &run);
        assert_eq!(c.status, CellStatus::Fail);
        assert_eq!((c.passed, c.total), (1, 2));
        assert_eq!(c.launch_ms, Some(9.5));
        assert_eq!(c.failures[0].case, "launch latency");
        let empty = Cell::from_run("host", "runc", &SuiteRun::default());
        assert_eq!(empty.status, CellStatus::Error);
    }
}
