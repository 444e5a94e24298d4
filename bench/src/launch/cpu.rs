//! CPU per job, broken down by process, for the skiff contenders.
//!
//! Pool launchers (`skiff-pool`, `skiff-warm`) start inside a cgroup of the
//! benchmark's own, in the cgroup-v1 `cpuacct` hierarchy:
//! `<caller's deepest v1 cgroup>/skiff-bench-<pid>/<contender>`. The
//! launcher is moved there in its forked child, before `exec`, so it detects
//! that path as its own and places its jobs' cgroups below it (the runtime's
//! v1 driver takes the caller's deepest path, see
//! `runtime/src/cgroups/v1.rs`). `cpuacct.usage` is hierarchical, so the
//! bench cgroup's usage counts everything the launcher causes: itself, the
//! libcontainer intermediate, the container's init and job, skiff's
//! cleanup, and the warm pool's refills. Per job, that total splits into
//! the launcher's own CPU clock, the job cgroup's time (`JobResult.cpu_usec`)
//! and the rest (processes outside the job cgroup: the intermediate before
//! it joins it; for a warm hit, the sandbox's set-up before the handoff
//! reset its accounting).
//!
//! [`BenchCgroups`] removes the whole `skiff-bench-<pid>` tree, in every
//! hierarchy the launchers' jobs touched, when dropped (also on failure).
//! On cgroup v2 (and without cpuacct) there is no bench cgroup: the
//! breakdown then has the launcher's clock and the job cgroup only.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
pub use crate::results::launch::{CpuBreakdown, CpuPart};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Sums over jobs, turned into a [`CpuBreakdown`] by [`CpuSums::breakdown`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSums {
    /// Jobs.
    pub jobs: usize,
    /// Everything (the bench cgroup's usage, or the children's rusage).
    pub total_ms: Option<f64>,
    /// The skiff process itself (the launcher, or `skiff run`).
    pub own_ms: f64,
    /// The job cgroups (`JobResult.cpu_usec`).
    pub job_ms: f64,
}

impl CpuSums {
    /// Means per job; `pool` names the first part `launcher` (else
    /// `skiff-process`). Without a total the parts are what is known and
    /// the total is their sum.
    pub fn breakdown(&self, pool: bool, total_source: &str) -> Option<CpuBreakdown> {
        if self.jobs == 0 {
            return None;
        }
        let n = self.jobs as f64;
        let own = self.own_ms.max(0.0) / n;
        let job = self.job_ms.max(0.0) / n;
        let mut parts = vec![
            CpuPart {
                name: if pool { "launcher" } else { "skiff-process" }.into(),
                ms: own,
                what: if pool {
                    "the skiff launcher process (its CPU clock): request, lookup, \
                     libcontainer create and start as seen from the caller, handoff, \
                     wait, cleanup, and for the warm pool the teardown and the refills"
                } else {
                    "the `skiff run` process itself (its CPU clock, read before it is \
                     reaped): start-up, re-exec, store, libcontainer's main side, cleanup"
                }
                .into(),
            },
            CpuPart {
                name: "job-cgroup".into(),
                ms: job,
                what: "the job's cgroup as the job result reports it (cold: the \
                       intermediate after joining it, the init's set-up and the job; \
                       warm hit: the job from the handoff on)"
                    .into(),
            },
        ];
        let total = match self.total_ms {
            Some(t) => {
                let t = t.max(0.0) / n;
                // Clock reads race by a few µs: never a negative remainder.
                let other = (t - own - job).max(0.0);
                parts.push(CpuPart {
                    name: "other".into(),
                    ms: other,
                    what: "every other process the launch caused, outside the job \
                           cgroup: the libcontainer intermediate before it joins the \
                           job's cgroup; for a warm hit the sandbox's init set-up \
                           (before the handoff reset its cgroup's accounting)"
                        .into(),
                });
                own + job + other
            }
            None => own + job,
        };
        Some(CpuBreakdown {
            jobs: self.jobs,
            total_ms: total,
            total_source: if self.total_ms.is_some() {
                total_source.to_string()
            } else {
                "no total here: the sum of the parts known".to_string()
            },
            parts,
        })
    }
}

/// The benchmark's cgroups: `<deepest>/skiff-bench-<pid>` in the v1
/// `cpuacct` hierarchy, one child per pool contender.
#[derive(Debug)]
pub struct BenchCgroups {
    /// `skiff-bench-<pid>`'s path relative to each hierarchy's root.
    rel: PathBuf,
    /// Directories this created in `cpuacct` (deepest last), for removal.
    created: Vec<PathBuf>,
}

/// One contender's cgroup.
#[derive(Debug, Clone)]
pub struct BenchCgroup {
    /// Its directory in `cpuacct`.
    pub dir: PathBuf,
    /// `cgroup.procs` as a C string, for the forked child.
    procs: CString,
}

impl BenchCgroups {
    /// Make the top cgroup, or say why not (cgroup v2, no cpuacct).
    pub fn new() -> Result<BenchCgroups> {
        let acct = Path::new(CGROUP_ROOT).join("cpuacct");
        if !acct.join("cpuacct.usage").is_file() {
            return Err(Error::Usage(
                "no cgroup-v1 cpuacct hierarchy (cgroup v2?): the CPU breakdown has no total"
                    .into(),
            ));
        }
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let rel = deepest_v1(&own).join(format!("skiff-bench-{}", std::process::id()));
        let dir = acct.join(&rel);
        let mut created = Vec::new();
        let mut p = dir.as_path();
        while !p.exists() {
            created.push(p.to_path_buf());
            match p.parent() {
                Some(q) => p = q,
                None => break,
            }
        }
        created.reverse();
        let me = BenchCgroups { rel, created };
        fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
        Ok(me)
    }

    /// The cgroup of contender `name` (created).
    pub fn child(&mut self, name: &str) -> Result<BenchCgroup> {
        let dir = Path::new(CGROUP_ROOT)
            .join("cpuacct")
            .join(&self.rel)
            .join(name);
        if !dir.exists() {
            fs::create_dir(&dir).map_err(|e| Error::io("create", &dir, e))?;
            self.created.push(dir.clone());
        }
        let procs = CString::new(dir.join("cgroup.procs").as_os_str().as_bytes())
            .map_err(|_| Error::Usage(format!("odd cgroup path {}", dir.display())))?;
        Ok(BenchCgroup { dir, procs })
    }

    /// Remove every directory under `skiff-bench-<pid>` in every hierarchy
    /// (the jobs' cgroups land there in all of them), then the ones this
    /// created. Returns what could not be removed.
    pub fn remove(&mut self) -> Vec<PathBuf> {
        let mut left = Vec::new();
        let Ok(hier) = fs::read_dir(CGROUP_ROOT) else {
            return left;
        };
        let mut roots: Vec<PathBuf> = hier
            .flatten()
            .map(|e| e.path().join(&self.rel))
            .filter(|p| p.is_dir())
            .collect();
        roots.sort();
        for r in roots {
            remove_tree(&r, &mut left);
        }
        // Ancestors made in cpuacct (the caller's path, when it was not
        // there): other skiff processes of the caller may have put their
        // own cgroups in them since, so they go only when empty.
        for d in self.created.iter().rev() {
            let _ = fs::remove_dir(d);
        }
        self.created.clear();
        left.sort();
        left.dedup();
        left
    }
}

impl Drop for BenchCgroups {
    fn drop(&mut self) {
        if !self.created.is_empty() {
            let left = self.remove();
            for d in left {
                eprintln!("skiff bench: could not remove cgroup {}", d.display());
            }
        }
    }
}

/// Remove `dir` and everything below it, deepest first, waiting a little
/// for exiting tasks.
fn remove_tree(dir: &Path, left: &mut Vec<PathBuf>) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path(), left);
            }
        }
    }
    let t = Instant::now();
    while fs::remove_dir(dir).is_err() && dir.exists() {
        if t.elapsed() > Duration::from_secs(2) {
            left.push(dir.to_path_buf());
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The caller's deepest v1 cgroup path (named hierarchies and v2 left
/// out), as the runtime's v1 driver picks it.
pub fn deepest_v1(self_cgroup: &str) -> PathBuf {
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
    PathBuf::from(deepest.trim_start_matches('/'))
}

impl BenchCgroup {
    /// Its usage so far, in milliseconds (ns precision).
    pub fn usage_ms(&self) -> Option<f64> {
        fs::read_to_string(self.dir.join("cpuacct.usage"))
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
            .map(|ns| ns as f64 / 1e6)
    }

    /// Make `cmd`'s process start in this cgroup (moved in the forked
    /// child, before `exec`).
    pub fn enter_on_spawn(&self, cmd: &mut Command) {
        let procs = self.procs.clone();
        // SAFETY: between fork and exec the closure makes only
        // async-signal-safe calls (open, write, close) on a C string made
        // before the fork; it allocates nothing and takes no locks.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                if n != 1 {
                    return Err(err);
                }
                Ok(())
            });
        }
    }
}

/// Wait until `read` (a CPU counter in ms) stops growing: less than 0.2 ms
/// over 100 ms, at most `max`. For the warm pool's refills after a batch.
pub fn settle(read: &dyn Fn() -> Option<f64>, max: Duration) {
    let t = Instant::now();
    let mut last = read();
    while t.elapsed() < max {
        std::thread::sleep(Duration::from_millis(100));
        let now = read();
        match (last, now) {
            (Some(a), Some(b)) if b - a < 0.2 => return,
            (None, None) => return,
            _ => last = now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_deepest_v1_skips_named_and_v2() {
        let text = "9:name=systemd:/a/very/long/named/path\n4:memory:/process_api/abc\n\
                    2:cpuacct:/\n0::/much/longer/unified/path/here\n";
        assert_eq!(deepest_v1(text), PathBuf::from("process_api/abc"));
        assert_eq!(deepest_v1("1:cpu:/\n"), PathBuf::from(""));
    }

    #[test]
    fn test_breakdown_parts_add_up() {
        let s = CpuSums {
            jobs: 4,
            total_ms: Some(40.0),
            own_ms: 20.0,
            job_ms: 8.0,
        };
        let b = s.breakdown(true, "cgroup").expect("breakdown");
        assert_eq!(b.parts.len(), 3);
        assert_eq!(b.parts[0].name, "launcher");
        assert!((b.parts[2].ms - 3.0).abs() < 1e-9);
        let sum: f64 = b.parts.iter().map(|p| p.ms).sum();
        assert!((sum - b.total_ms).abs() < 1e-9);
        let none = CpuSums {
            jobs: 2,
            total_ms: None,
            own_ms: 2.0,
            job_ms: 2.0,
        }
        .breakdown(false, "x")
        .expect("breakdown");
        assert_eq!(none.parts.len(), 2);
        assert_eq!(none.total_ms, 2.0);
        assert!(CpuSums::default().breakdown(true, "x").is_none());
    }
}
