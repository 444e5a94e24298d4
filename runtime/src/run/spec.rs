//! Phase 3, spec: Docker's rules for the job's process, read from the image
//! through a safe root; the command looked up (127/126 without launching);
//! the job's `/etc` files; `config.json`; the job record for `gc`.

use std::fs;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use crate::cgroups;
use crate::error::{Error, IoContext, Result};
use crate::exec::{lookup_command, LookupError, SkiffExecutor};
use crate::image_process::{merge_env, process_args};
use crate::job::{JobSpec, NetworkMode};
use crate::oci::{self, ProcessPlan, SpecPaths};
use crate::safe_root::SafeRoot;
use crate::sandbox::executor::{AnyExecutor, WarmExecutor};
use crate::seccomp;
use crate::state::JobRecord;
use crate::user::{add_groups, resolve_user};

use super::{JobCtx, Runner};

/// What the launch phase needs.
#[derive(Debug)]
pub(crate) struct Ready {
    /// skiff's in-container executor (with the plan's precompiled filter,
    /// if any; libcontainer only): the job's, or a warm sandbox's.
    pub(crate) executor: AnyExecutor,
    /// The job record, completed with the init pid at create.
    pub(crate) record: JobRecord,
    /// `scratch/bundle`, holding `config.json`.
    pub(crate) bundle: PathBuf,
    /// Docker's rules applied (a warm sandbox keeps the user and cwd).
    pub(crate) plan: ProcessPlan,
}

/// The spec phase's outcome.
#[derive(Debug)]
pub(crate) enum Prepared {
    /// Ready to launch.
    Ready(Box<Ready>),
    /// The command cannot run (127 / 126), decided without launching.
    NotRunnable(LookupError),
}

/// Docker's `/etc/hosts` for a job: the host's with `--network host`, else
/// the loopback entries only (with `--network none` Docker adds no line for
/// the hostname: there is no address to give it).
fn hosts_file(network: NetworkMode) -> String {
    if network == NetworkMode::Host {
        if let Ok(h) = fs::read_to_string("/etc/hosts") {
            return h;
        }
    }
    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n".to_string()
}

/// The per-job part of Docker's process rules: argv from the image's
/// entrypoint and cmd and the job's overrides, the hostname (default: the
/// first 12 characters of the job's name), and the environment with
/// `HOSTNAME` and `HOME` (`home`: the resolved user's). A warm sandbox
/// applies the same at handoff.
pub(crate) fn job_process(
    job: &JobSpec,
    cfg: &oci_spec::image::Config,
    home: &str,
) -> Result<(Vec<String>, Vec<String>, String)> {
    let hostname = job
        .hostname
        .clone()
        .unwrap_or_else(|| job.name.chars().take(12).collect());
    let env = merge_env(
        cfg.env().as_deref().unwrap_or(&[]),
        &job.env,
        &hostname,
        home,
    );
    let args = process_args(
        cfg.entrypoint().as_deref(),
        cfg.cmd().as_deref(),
        job.entrypoint.as_deref(),
        &job.command,
    )?;
    Ok((args, env, hostname))
}

/// Docker's rules for a job's process, applied to its image's config: the
/// user (resolved in the image's own `/etc/passwd` and `/etc/group`, read
/// through `root`), hostname (default: the first 12 characters of
/// `job.name`), environment, argv, working directory (created in the rootfs
/// when missing) and capabilities (never beyond `bounding`). Every backend's
/// `config.json` is built from this plan by [`oci::build_spec`].
pub fn plan_process(
    job: &JobSpec,
    config: &oci_spec::image::ImageConfiguration,
    root: &SafeRoot,
    bounding: &[oci_spec::runtime::Capability],
) -> Result<ProcessPlan> {
    let cfg = config.config().clone().unwrap_or_default();
    let read = |p: &str| -> Result<Option<String>> {
        Ok(root
            .read_small(p, 1 << 20)
            .ctx("read image file", p)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    };
    let user_spec = job
        .user
        .clone()
        .or_else(|| cfg.user().clone())
        .unwrap_or_default();
    let group_file = read("/etc/group")?;
    let mut user = resolve_user(
        &user_spec,
        read("/etc/passwd")?.as_deref(),
        group_file.as_deref(),
    )?;
    add_groups(&mut user, &job.group_add, group_file.as_deref())?;
    let (args, env, hostname) = job_process(job, &cfg, &user.home)?;
    let cwd = job
        .workdir
        .clone()
        .or_else(|| cfg.working_dir().clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_string());
    if !cwd.starts_with('/') {
        return Err(Error::InvalidOption {
            what: "working directory",
            value: cwd,
            detail: "must be an absolute path".into(),
        });
    }
    root.mkdir_all(&cwd).ctx("create working directory", &cwd)?;
    let resolved = root.resolve(&cwd).ctx("resolve working directory", &cwd)?;
    if is_proc_magic_link(&resolved) {
        // Such a path leads wherever a descriptor of the init points: the
        // class of CVE-2024-21626. Docker refuses it too.
        return Err(Error::InvalidOption {
            what: "working directory",
            value: cwd,
            detail: format!("{resolved} is a magic link of /proc, not a directory of the image"),
        });
    }
    let caps = oci::capabilities(&job.cap_add, &job.cap_drop, bounding)?;
    Ok(ProcessPlan {
        args,
        env,
        cwd,
        user,
        hostname,
        caps,
    })
}

/// Whether `path` (absolute, symlinks resolved) names or passes through a
/// per-process magic link of `/proc`: `/proc/{self,thread-self,PID}/`
/// followed by `fd`, `cwd`, `root`, `exe`, `map_files` or `task`.
pub fn is_proc_magic_link(path: &str) -> bool {
    let comps: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    match comps.as_slice() {
        ["proc", who, what, ..] => {
            (*who == "self" || *who == "thread-self" || who.bytes().all(|b| b.is_ascii_digit()))
                && matches!(*what, "fd" | "cwd" | "root" | "exe" | "map_files" | "task")
        }
        _ => false,
    }
}

/// Write a job's `hostname`, `hosts` and `resolv.conf` (the host's) into
/// `etc`, from where [`oci::build_spec`] bind-mounts them over the image's.
pub fn write_etc_files(etc: &Path, hostname: &str, network: NetworkMode) -> Result<()> {
    fs::write(etc.join("hostname"), format!("{hostname}\n")).ctx("write", etc.join("hostname"))?;
    fs::write(etc.join("hosts"), hosts_file(network)).ctx("write", etc.join("hosts"))?;
    let resolv = fs::read("/etc/resolv.conf").unwrap_or_default();
    fs::write(etc.join("resolv.conf"), resolv).ctx("write", etc.join("resolv.conf"))
}

/// Whether `cmd` lies under one of the job's volumes (not looked up in
/// the image: the volume hides that part of it).
pub(crate) fn in_volume(job: &JobSpec, cmd: &str) -> bool {
    job.volumes
        .iter()
        .any(|v| cmd.starts_with(&format!("{}/", v.target.trim_end_matches('/'))))
}

/// The spec phase. `warm_channel`: for a warm sandbox, its end of the job
/// channel; the command is then not looked up (it comes at handoff).
pub(crate) fn spec(
    runner: &mut Runner,
    ctx: &JobCtx<'_>,
    config: &oci_spec::image::ImageConfiguration,
    rootfs: &Path,
    warm_channel: Option<RawFd>,
) -> Result<Prepared> {
    let job = ctx.job;
    let root = SafeRoot::open(rootfs).ctx("open", rootfs)?;
    let plan = plan_process(job, config, &root, &runner.bounding)?;
    if warm_channel.is_none() && !in_volume(job, &plan.args[0]) {
        if let Err(e) = lookup_command(&root, &plan.args[0], &plan.env, &plan.cwd) {
            return Ok(Prepared::NotRunnable(e));
        }
    }
    let etc = ctx.sub("etc");
    write_etc_files(&etc, &plan.hostname, job.network)?;
    let seccomp = seccomp::plan(
        job.seccomp,
        ctx.backend,
        &plan.caps,
        job.no_new_privileges,
        &mut runner.seccomp,
    )?;
    let cgroup_path = runner.cgroups.job_path(&job.name);
    let cgroup_mount = runner
        .cgroups
        .view(&job.name)
        .prepare(&ctx.sub("cgroupfs"))?;
    let spec = oci::build_spec(
        job,
        &plan,
        &SpecPaths {
            rootfs,
            etc_dir: &etc,
            cgroups_path: &cgroup_path,
            cgroup_mount: &cgroup_mount,
            seccomp: &seccomp,
        },
        Some(cgroups::resources(&job.limits)?),
    )?;
    let bundle = ctx.sub("bundle");
    let config_json = bundle.join("config.json");
    spec.save(&config_json).map_err(|source| Error::SaveSpec {
        path: config_json.clone(),
        source,
    })?;
    let record = JobRecord {
        name: job.name.clone(),
        launcher_pid: std::process::id() as i32,
        init_pid: None,
        init_start_time: None,
        cgroup_path,
    };
    ctx.dir.write_record(&record)?;
    let executor = match warm_channel {
        Some(fd) => AnyExecutor::Warm(WarmExecutor::new(fd, &seccomp)),
        None => AnyExecutor::Cold(SkiffExecutor::new(&seccomp)),
    };
    Ok(Prepared::Ready(Box::new(Ready {
        executor,
        record,
        bundle,
        plan,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_is_proc_magic_link() {
        for p in [
            "/proc/self/fd/5",
            "/proc/1/cwd",
            "/proc/thread-self/root/x",
            "/proc//self/./fd",
        ] {
            assert!(is_proc_magic_link(p), "{p}");
        }
        for p in [
            "/proc",
            "/proc/self",
            "/proc/sys/kernel",
            "/data/proc/self/fd/5",
            "/",
        ] {
            assert!(!is_proc_magic_link(p), "{p}");
        }
    }
}
