//! Boot one matrix VM with QEMU (TCG: this host's /dev/kvm cannot boot
//! stock kernels), with a deadline: a VM that hangs is killed, one that
//! crashes simply ends, and either way its console log is kept.
//!
//! The guest's console (ttyS0) goes to `console.log`; its report to a
//! second serial port (ttyS1), `result.log`. `panic=-1` plus `-no-reboot`
//! turns a guest kernel panic into a QEMU exit.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::guest::{self, GuestReport};
use super::MatrixError;

/// One VM to boot.
#[derive(Debug, Clone)]
pub struct Vm {
    /// Uncompressed kernel.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// Extra kernel command line (`skiff.cgroup=…`).
    pub append: String,
    /// Memory in MiB.
    pub memory_mb: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Where the logs go.
    pub dir: PathBuf,
    /// The deadline.
    pub timeout: Duration,
}

/// How a VM ended.
#[derive(Debug, Clone)]
pub struct VmOutcome {
    /// QEMU's exit code (None when killed).
    pub exit_code: Option<i32>,
    /// Whether the deadline killed it.
    pub timed_out: bool,
    /// The guest's report, if it got that far.
    pub report: Option<GuestReport>,
    /// The console log.
    pub console_log: PathBuf,
    /// Wall seconds.
    pub seconds: f64,
}

/// The QEMU program.
pub const QEMU: &str = "qemu-system-x86_64";

/// The QEMU command line for `vm`.
pub fn command(vm: &Vm) -> Command {
    let mut c = Command::new(QEMU);
    c.args(["-accel", "tcg", "-cpu", "max"])
        .args(["-smp", &vm.cpus.to_string()])
        .args(["-m", &vm.memory_mb.to_string()])
        .args([
            "-nographic",
            "-monitor",
            "none",
            "-nic",
            "none",
            "-no-reboot",
        ])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-serial")
        .arg(format!("file:{}", vm.dir.join("console.log").display()))
        .arg("-serial")
        .arg(format!("file:{}", vm.dir.join("result.log").display()))
        .arg("-kernel")
        .arg(&vm.kernel)
        .arg("-initrd")
        .arg(&vm.initrd)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 panic=-1 loglevel=4 rdinit=/init {}",
            vm.append
        ));
    c
}

/// Boot, wait until the guest ends or the deadline passes, and read the
/// report.
pub fn boot(vm: &Vm) -> Result<VmOutcome, MatrixError> {
    fs::create_dir_all(&vm.dir).map_err(|e| MatrixError::Io {
        op: "create",
        path: vm.dir.clone(),
        source: e,
    })?;
    let qemu_log = vm.dir.join("qemu.log");
    let out = fs::File::create(&qemu_log).map_err(|e| MatrixError::Io {
        op: "create",
        path: qemu_log.clone(),
        source: e,
    })?;
    let err = out.try_clone().map_err(|e| MatrixError::Io {
        op: "dup",
        path: qemu_log.clone(),
        source: e,
    })?;
    let t = Instant::now();
    let mut child = command(vm)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| MatrixError::Tool {
            tool: QEMU.into(),
            detail: e.to_string(),
        })?;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) => {}
            Err(_) => break None,
        }
        if t.elapsed() > vm.timeout {
            timed_out = true;
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let read = |n: &str| fs::read_to_string(vm.dir.join(n)).unwrap_or_default();
    let report = guest::parse_report(&read("result.log"))
        .or_else(|| guest::parse_report(&read("console.log")));
    Ok(VmOutcome {
        exit_code: status.and_then(|s| s.code()),
        timed_out,
        report,
        console_log: vm.dir.join("console.log"),
        seconds: t.elapsed().as_secs_f64(),
    })
}
