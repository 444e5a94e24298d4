//! One timed launch: a command run to completion, or one request to a pool
//! launcher answered.

use std::collections::BTreeMap;
use std::ffi::{CStr, OsString};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runtime::pool::{Launcher, Reply, Request};
use runtime::timing::{ms, ms_since};
use runtime::warm::WarmUse;
use runtime::{JobResult, Phases};

use super::config::Contender;
use crate::error::RunError;
use crate::results::launch::{PhaseBreakdown, PhaseMedian};
use crate::tools::tail;

/// skiff's launch phases, in order, as `Phases` names them (without `_ms`).
pub const PHASES: [&str; 7] = [
    "lookup", "rootfs", "spec", "create", "start", "wait", "cleanup",
];

/// The last segment of a skiff launch: the time the benchmark saw that the
/// runner did not (for `skiff run`: process start, store open, cgroup
/// detection, gc, the private mount namespace, exit; for the pool: the
/// request and reply on the pipes).
pub fn outside_phase(c: Contender) -> &'static str {
    match c {
        Contender::SkiffPool | Contender::SkiffWarm => "request+reply",
        _ => "process+setup",
    }
}

/// One launch's measurements.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Wall-clock milliseconds.
    pub wall_ms: f64,
    /// CPU milliseconds, when known.
    pub cpu_ms: Option<f64>,
    /// skiff only: [`PHASES`] then the outside part, in milliseconds.
    pub phases: Vec<f64>,
    /// skiff only: the job cgroup's CPU milliseconds (`JobResult.cpu_usec`).
    pub job_cpu_ms: Option<f64>,
    /// `skiff run` only: the skiff process's own CPU milliseconds.
    pub own_cpu_ms: Option<f64>,
    /// The pool only: the launcher's CPU clock and its bench cgroup's usage
    /// (milliseconds since they started) when the request was sent. A job's
    /// CPU is the difference to the next request's mark, so that the work
    /// after the reply (teardown, refill) counts.
    pub mark: Option<Mark>,
    /// skiff only: whether a warm sandbox ran it.
    pub warm: Option<WarmUse>,
}

/// CPU counters of a pool contender at one instant (milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Mark {
    /// The launcher's CPU clock.
    pub launcher_ms: f64,
    /// The contender's bench cgroup's `cpuacct.usage`.
    pub cgroup_ms: Option<f64>,
}

impl Mark {
    /// Read `launcher`'s clock and the cgroup usage now.
    pub fn now(launcher_pid: u32, cgroup: Option<&super::cpu::BenchCgroup>) -> Mark {
        Mark {
            launcher_ms: process_cpu(launcher_pid).map(ms).unwrap_or(0.0),
            cgroup_ms: cgroup.and_then(|c| c.usage_ms()),
        }
    }
}

fn children_cpu() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    getrusage(UsageWho::RUSAGE_CHILDREN)
        .map(|u| tv(u.user_time()) + tv(u.system_time()))
        .unwrap_or_default()
}

/// CPU time of this process's waited-for children so far, in milliseconds.
pub fn children_cpu_ms() -> f64 {
    ms(children_cpu())
}

/// [`runtime::cgroups::CRUN_HYBRID_CONTROLLERS`] as a C string, for the
/// forked child (which may not allocate); a test checks they are the same.
const CRUN_HYBRID_CONTROLLERS_C: &CStr = c"/sys/fs/cgroup/unified/cgroup.controllers";

/// crun 1.8 refuses hybrid cgroup hosts whose
/// [`runtime::cgroups::CRUN_HYBRID_CONTROLLERS`] is not empty. In the forked
/// child, before `exec`: a private mount namespace in which `/dev/null`
/// (empty) is bound over that file (HOST-FACTS.md), so the host is unchanged.
fn hide_unified_controllers(cmd: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec and makes
    // only async-signal-safe system calls (unshare, mount) on static C
    // strings; it allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let none = std::ptr::null::<libc::c_char>();
            if libc::mount(
                none,
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::mount(
                c"/dev/null".as_ptr(),
                CRUN_HYBRID_CONTROLLERS_C.as_ptr(),
                none,
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The command for `argv` with the benchmark's stdio: no input, output
/// captured (skiff's JSON result; error messages).
pub fn command(argv: &[OsString], hide_unified: bool) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if hide_unified {
        hide_unified_controllers(&mut cmd);
    }
    cmd
}

/// Run `argv` to completion, timed; it must exit 0. With `skiff_json`, the
/// last stdout line is `skiff run --json`'s result, whose phases are kept,
/// and the process's own CPU time is read before it is reaped.
pub fn process(
    argv: &[OsString],
    hide_unified: bool,
    skiff_json: bool,
) -> Result<Sample, RunError> {
    let mut cmd = command(argv, hide_unified);
    let program = || argv[0].to_string_lossy().into_owned();
    let cpu0 = children_cpu();
    let t = Instant::now();
    let (out, own) = if skiff_json {
        let child = cmd.spawn().map_err(|source| RunError::Spawn {
            program: program(),
            source,
        })?;
        output_reading_cpu(child).map_err(|source| RunError::Wait {
            program: program(),
            source,
        })?
    } else {
        let out = cmd.output().map_err(|source| RunError::Spawn {
            program: program(),
            source,
        })?;
        (out, None)
    };
    let wall_ms = ms_since(t);
    let cpu_ms = ms(children_cpu().saturating_sub(cpu0));
    if !out.status.success() {
        return Err(RunError::Exit {
            program: program(),
            status: out.status,
            stderr: tail(&out.stderr),
        });
    }
    let mut sample = Sample {
        wall_ms,
        cpu_ms: Some(cpu_ms),
        own_cpu_ms: own.map(ms),
        ..Sample::default()
    };
    if skiff_json {
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let r: JobResult = serde_json::from_str(line).map_err(|source| RunError::NoResult {
            line: line.to_string(),
            source,
        })?;
        if r.exit_code != 0 {
            return Err(RunError::JobExit(r.exit_code));
        }
        sample.phases = phase_list(&r.phases, wall_ms - r.wall_ms);
        sample.job_cpu_ms = r.cpu_usec.map(|u| u as f64 / 1e3);
        sample.warm = r.warm;
    }
    Ok(sample)
}

/// `Child::wait_with_output`, but the child's own CPU time (its CPU clock)
/// is read once it has exited and before it is reaped (`waitid` with
/// `WNOWAIT`): the time of the process itself, without its children.
fn output_reading_cpu(
    mut child: std::process::Child,
) -> std::io::Result<(std::process::Output, Option<Duration>)> {
    use std::io::Read as _;
    let mut stderr = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_end(&mut buf);
        }
        buf
    });
    let mut stdout = Vec::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_end(&mut stdout)?;
    }
    let pid = child.id();
    let waited = nix::sys::wait::waitid(
        nix::sys::wait::Id::Pid(nix::unistd::Pid::from_raw(pid as i32)),
        nix::sys::wait::WaitPidFlag::WEXITED | nix::sys::wait::WaitPidFlag::WNOWAIT,
    );
    let own = waited.ok().and_then(|_| process_cpu(pid));
    let status = child.wait()?;
    let stderr = err_reader.join().unwrap_or_default();
    Ok((
        std::process::Output {
            status,
            stdout,
            stderr,
        },
        own,
    ))
}

/// CPU time of process `pid` (all its threads, not its children), from its
/// CPU-time clock.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let clock = nix::time::clock_getcpuclockid(nix::unistd::Pid::from_raw(pid as i32)).ok()?;
    let ts = nix::time::clock_gettime(clock).ok()?;
    Some(Duration::new(
        ts.tv_sec().max(0) as u64,
        ts.tv_nsec().max(0) as u32,
    ))
}

/// One request to a pool launcher, timed from sending it to reading the
/// reply. CPU time: the launcher's own during the request (its CPU clock)
/// plus the job cgroup's (the container's processes); and the [`Mark`] at
/// the start, from which the caller computes the whole job's CPU.
pub fn pool(
    l: &mut Launcher,
    req: &Request,
    cgroup: Option<&super::cpu::BenchCgroup>,
) -> Result<Sample, RunError> {
    let mark = Mark::now(l.pid(), cgroup);
    let t = Instant::now();
    let reply = l.request(req).map_err(|e| RunError::Request(Box::new(e)))?;
    let wall_ms = ms_since(t);
    let c1 = process_cpu(l.pid());
    match reply {
        Reply::Ok(r) if r.exit_code == 0 => {
            let launcher = c1.map(|b| (ms(b) - mark.launcher_ms).max(0.0));
            let job_cpu_ms = r.cpu_usec.map(|u| u as f64 / 1e3);
            let cpu_ms = launcher.map(|l| l + job_cpu_ms.unwrap_or(0.0));
            Ok(Sample {
                wall_ms,
                cpu_ms,
                phases: phase_list(&r.phases, wall_ms - r.wall_ms),
                job_cpu_ms,
                own_cpu_ms: None,
                mark: Some(mark),
                warm: r.warm,
            })
        }
        Reply::Ok(r) => Err(RunError::JobExit(r.exit_code)),
        Reply::Error(e) => Err(RunError::Refused(e)),
    }
}

fn phase_list(p: &Phases, outside_ms: f64) -> Vec<f64> {
    vec![
        p.lookup_ms,
        p.rootfs_ms,
        p.spec_ms,
        p.create_ms,
        p.start_ms,
        p.wait_ms,
        p.cleanup_ms,
        outside_ms.max(0.0),
    ]
}

/// The per-phase medians of a skiff contender (`None` for the others).
pub fn breakdown(
    which: Contender,
    phases: &BTreeMap<usize, Vec<f64>>,
    wall_median_ms: f64,
) -> Option<PhaseBreakdown> {
    if phases.is_empty() {
        return None;
    }
    let names = PHASES.iter().copied().chain([outside_phase(which)]);
    let phases = names
        .enumerate()
        .filter_map(|(i, name)| {
            let v = phases.get(&i)?;
            crate::stats::Summary::of(v).map(|s| PhaseMedian {
                name: name.into(),
                median_ms: s.median,
            })
        })
        .collect();
    Some(PhaseBreakdown {
        contender: which.name().into(),
        phases,
        wall_median_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_breakdown_names_and_medians() {
        let mut m = BTreeMap::new();
        for i in 0..8 {
            m.insert(i, vec![i as f64, i as f64 + 2.0, i as f64 + 1.0]);
        }
        let b = breakdown(Contender::SkiffPool, &m, 30.0).expect("breakdown");
        assert_eq!(b.phases.len(), 8);
        assert_eq!(b.phases[0].name, "lookup");
        assert_eq!(b.phases[3].median_ms, 4.0);
        assert_eq!(b.phases[7].name, "request+reply");
        assert!(breakdown(Contender::Runc, &BTreeMap::new(), 1.0).is_none());
    }

    #[test]
    fn test_process_times_and_fails() {
        let ok = process(&["true".into()], false, false).expect("true runs");
        assert!(ok.wall_ms > 0.0);
        assert!(ok.phases.is_empty());
        let err = process(&["false".into()], false, false)
            .expect_err("false fails")
            .to_string();
        assert!(err.contains("false"), "{err}");
    }

    #[test]
    fn test_crun_hybrid_path_is_the_runtime_one() {
        assert_eq!(
            CRUN_HYBRID_CONTROLLERS_C.to_str(),
            Ok(runtime::cgroups::CRUN_HYBRID_CONTROLLERS)
        );
    }
}
