//! A warm sandbox's cgroup at handoff: the job's limits written into a
//! cgroup created without any, and the accounting counters taken back to
//! zero (or baselined) so that the job's result holds its own figures only.
//!
//! The values are those libcgroups 0.7 writes for the same OCI resources
//! (see [`super::resources`]), so a warm job's cgroup files read the same as
//! a cold job's: v1 `memory.limit_in_bytes` before `memory.memsw.limit_in_bytes`
//! (the fresh cgroup is unlimited, so the limit only goes down), quota and
//! period from `--cpus`, `cpu.shares`, `pids.max`; v2 `memory.max` and
//! `memory.swap.max` (memory + swap minus memory), `cpu.max`, `cpu.weight`
//! from the shares as libcgroups converts them, `pids.max`.

use std::fs;
use std::io::{Read, Seek, Write};
use std::path::Path;

use super::{cg_err, read_key, CgroupStats};
use crate::error::Result;
use crate::job::Limits;

/// Counters read at handoff, subtracted from the ones read at the end.
#[derive(Debug, Default)]
pub struct AccountingBase {
    /// CPU time before the job, µs (v2: `cpu.stat usage_usec`; v1: 0 after a reset).
    pub cpu_usec: u64,
    /// OOM kills before the job.
    pub oom_kills: u64,
    /// v2: `memory.peak` opened and reset (kernels ≥ 6.12): its later reads
    /// through this descriptor give the peak since the reset.
    pub peak_fd: Option<fs::File>,
    /// v2 on older kernels: the peak cannot be reset and includes the
    /// sandbox's set-up (an upper bound).
    pub peak_is_upper_bound: bool,
}

fn write(path: &Path, value: impl std::fmt::Display) -> Result<()> {
    fs::write(path, value.to_string()).map_err(|e| cg_err("write", path, e))
}

/// Write `limits` into a v1 job's cgroup (`dir(controller)` names each
/// hierarchy's directory).
pub fn apply_v1(dir: &dyn Fn(&str) -> std::path::PathBuf, limits: &Limits) -> Result<()> {
    if let Some(m) = limits.memory_bytes {
        let mem = dir("memory");
        write(&mem.join("memory.limit_in_bytes"), m)?;
        let swap = limits.memory_swap_bytes.unwrap_or(m as i64);
        let memsw = mem.join("memory.memsw.limit_in_bytes");
        // Without swap accounting the file is absent, as libcgroups skips it.
        if memsw.exists() {
            write(&memsw, swap)?;
        }
    }
    if let Some((quota, period)) = limits.cpu_quota_period() {
        let cpu = dir("cpu");
        write(&cpu.join("cpu.cfs_period_us"), period)?;
        write(&cpu.join("cpu.cfs_quota_us"), quota)?;
    }
    if let Some(s) = limits.cpu_shares {
        write(&dir("cpu").join("cpu.shares"), s)?;
    }
    if let Some(p) = limits.pids {
        let v = if p > 0 { p.to_string() } else { "max".into() };
        write(&dir("pids").join("pids.max"), v)?;
    }
    Ok(())
}

/// libcgroups' conversion of v1 shares to a v2 weight (the same floating
/// point steps, so the same rounding).
pub fn shares_to_weight(shares: u64) -> u64 {
    const MAX_WEIGHT: u64 = 10_000;
    match shares {
        0 => 0,
        s if s <= 2 => 1,
        s if s >= 262_144 => MAX_WEIGHT,
        s => {
            let l = (s as f64).log2();
            let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            (10f64.powf(exponent).ceil() as u64).clamp(1, MAX_WEIGHT)
        }
    }
}

/// Write `limits` into a v2 job's cgroup `dir`.
pub fn apply_v2(dir: &Path, limits: &Limits) -> Result<()> {
    if let Some(m) = limits.memory_bytes {
        let swap = limits.memory_swap_bytes.unwrap_or(m as i64);
        let swap_max = if swap == -1 {
            "max".to_string()
        } else {
            (swap - m as i64).max(0).to_string()
        };
        let p = dir.join("memory.swap.max");
        if p.exists() {
            write(&p, swap_max)?;
        }
        write(&dir.join("memory.max"), m)?;
    }
    if let Some((quota, period)) = limits.cpu_quota_period() {
        write(&dir.join("cpu.max"), format!("{quota} {period}"))?;
    }
    if let Some(s) = limits.cpu_shares {
        write(&dir.join("cpu.weight"), shares_to_weight(s))?;
    }
    if let Some(p) = limits.pids {
        let v = if p > 0 { p.to_string() } else { "max".into() };
        write(&dir.join("pids.max"), v)?;
    }
    Ok(())
}

/// v1: reset the peak and the CPU counter (both accept a write of 0) and
/// baseline the OOM count.
pub fn reset_v1(memory: &Path, cpuacct: &Path) -> Result<AccountingBase> {
    write(&memory.join("memory.max_usage_in_bytes"), 0)?;
    write(&cpuacct.join("cpuacct.usage"), 0)?;
    Ok(AccountingBase {
        oom_kills: read_key(&memory.join("memory.oom_control"), "oom_kill").unwrap_or(0),
        ..AccountingBase::default()
    })
}

/// v2: baseline CPU time and the OOM count; reset `memory.peak` through a
/// descriptor kept for the final read where the kernel allows it.
pub fn reset_v2(dir: &Path) -> Result<AccountingBase> {
    let peak = dir.join("memory.peak");
    let peak_fd = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&peak)
        .ok()
        .and_then(|mut f| f.write_all(b"0\n").ok().map(|()| f));
    Ok(AccountingBase {
        cpu_usec: read_key(&dir.join("cpu.stat"), "usage_usec").unwrap_or(0),
        oom_kills: read_key(&dir.join("memory.events"), "oom_kill").unwrap_or(0),
        peak_is_upper_bound: peak_fd.is_none(),
        peak_fd,
    })
}

/// The peak through the descriptor reset at handoff.
pub fn read_peak_fd(f: &mut fs::File) -> Option<u64> {
    let mut s = String::new();
    f.rewind().ok()?;
    f.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// The job's figures: `now` minus `base`.
pub fn since(now: CgroupStats, base: &mut AccountingBase) -> CgroupStats {
    let peak = match base.peak_fd.as_mut() {
        Some(f) => read_peak_fd(f).or(now.peak_memory_bytes),
        None => now.peak_memory_bytes,
    };
    CgroupStats {
        peak_memory_bytes: peak,
        cpu_usec: now.cpu_usec.map(|c| c.saturating_sub(base.cpu_usec)),
        oom_kills: now.oom_kills.saturating_sub(base.oom_kills),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_shares_to_weight_matches_libcgroups() {
        // The ends and the middle of libcgroups 0.7's (and runc's) mapping:
        // 2 → 1, 1024 (the default) → 100, 262144 → 10000, monotonic.
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert!((100..=101).contains(&shares_to_weight(1024)));
        assert_eq!(shares_to_weight(262_144), 10_000);
        let w: Vec<u64> = [3, 100, 512, 1024, 4096, 100_000]
            .map(shares_to_weight)
            .to_vec();
        assert!(w.windows(2).all(|p| p[0] <= p[1]), "{w:?}");
    }

    #[test]
    fn test_apply_v2_writes_files() {
        let d = tempfile::tempdir().expect("tmp");
        for f in [
            "memory.swap.max",
            "memory.max",
            "cpu.max",
            "cpu.weight",
            "pids.max",
        ] {
            fs::write(d.path().join(f), "max").expect("seed");
        }
        let limits = Limits {
            memory_bytes: Some(64 << 20),
            memory_swap_bytes: None,
            cpus: Some(0.5),
            cpu_shares: Some(512),
            pids: Some(24),
        };
        apply_v2(d.path(), &limits).expect("apply");
        let r = |f: &str| fs::read_to_string(d.path().join(f)).expect("read");
        assert_eq!(r("memory.max"), (64u64 << 20).to_string());
        assert_eq!(r("memory.swap.max"), "0");
        assert_eq!(r("cpu.max"), "50000 100000");
        assert_eq!(r("cpu.weight"), shares_to_weight(512).to_string());
        assert_eq!(r("pids.max"), "24");
    }

    #[test]
    fn test_since_subtracts_the_baseline() {
        let mut base = AccountingBase {
            cpu_usec: 100,
            oom_kills: 1,
            ..AccountingBase::default()
        };
        let s = since(
            CgroupStats {
                peak_memory_bytes: Some(7),
                cpu_usec: Some(350),
                oom_kills: 1,
            },
            &mut base,
        );
        assert_eq!(s.cpu_usec, Some(250));
        assert_eq!(s.oom_kills, 0);
        assert_eq!(s.peak_memory_bytes, Some(7));
    }
}
