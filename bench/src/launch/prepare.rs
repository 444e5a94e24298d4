//! Getting each contender ready, outside every timed window: the bench
//! store, the OCI bundles for runc and crun, `docker load` and `podman
//! load`, the pool's launchers; and the host facts (the cgroup attach cost).
//!
//! Everything lives under `WORKDIR/launch/`:
//!
//! ```text
//! store/                 skiff's bench store (the image imported from the archive)
//! oci/rootfs-<id>/       the image's merged rootfs, copied once, for runc and crun
//! oci/etc/               hostname, hosts, resolv.conf (skiff's own writer)
//! oci/<runtime>/bundle-N config.json of slot N (skiff's spec builder; own cgroup)
//! oci/<runtime>/state    the runtime's --root
//! podman/                podman's private storage (--root, --runroot, --tmpdir)
//! skiff-pool-N.log       the pool launchers' stderr (skiff-warm-N.log: the warm pool's)
//! ```

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use imagestore::oci_spec::image::ImageConfiguration;
use imagestore::{ImportOptions, Input, Store};
use runtime::cgroups::crun_needs_hybrid_workaround;
use runtime::error::error_chain;
use runtime::path_lookup::find_on_host;
use runtime::pool::{Launcher, Request};
use runtime::timing::ms_since;
use runtime::{Backend, JobSpec, Limits, NetworkMode};

use super::config::{Contender, LaunchConfig, WARM_STOCK};
use super::cpu::{BenchCgroup, BenchCgroups};
use super::exec::{self, Sample};
use crate::error::{Error, IoContext, Result, RunError, Unavailable};
use crate::results::launch::LaunchHost;
use crate::tools::{run_checked, tool_version};
use crate::units::size_arg;

/// The hostname of the runc and crun jobs.
const HOSTNAME: &str = "skiff-bench";

/// The image, imported into skiff's bench store.
#[derive(Debug, Clone)]
pub struct BenchImage {
    /// The archive it came from (also what `docker load` and `podman load` read).
    pub archive: PathBuf,
    /// The store root.
    pub store_root: PathBuf,
    /// The image id (`sha256:…`).
    pub id: String,
    /// Its config.
    pub config: ImageConfiguration,
    /// Its snapshot chain, top first (overlay's `lowerdir` order).
    pub lowerdirs: Vec<PathBuf>,
}

/// Import `archive` into `dir/store` (idempotent) and describe the image.
pub fn bench_image(dir: &Path, archive: &Path) -> Result<BenchImage> {
    let failed = |op: &'static str| {
        move |e| Error::BenchStore {
            op,
            path: archive.to_path_buf(),
            source: Box::new(e),
        }
    };
    let store_root = dir.join("store");
    let store = Store::open(&store_root).map_err(failed("open the bench store"))?;
    let report = store
        .import(
            &Input::Path(archive.to_path_buf()),
            &ImportOptions::default(),
        )
        .map_err(failed("import it"))?;
    let id = match report.images.as_slice() {
        [one] => one.id.to_string(),
        more => {
            return Err(Error::Image {
                path: archive.to_path_buf(),
                detail: format!("holds {} images, not one", more.len()),
            })
        }
    };
    let rec = store.resolve(&id).map_err(failed("resolve its image"))?;
    let config = store
        .image_config(&rec)
        .map_err(failed("read its image config"))?;
    let desc = store
        .mount_description(&rec)
        .map_err(failed("describe its mounts"))?;
    Ok(BenchImage {
        archive: archive.to_path_buf(),
        store_root,
        id,
        config,
        lowerdirs: desc.lowerdirs,
    })
}

/// A contender ready to launch.
#[derive(Debug)]
pub struct Prepared {
    /// Which.
    pub which: Contender,
    /// What one launch runs, for the report.
    pub command: String,
    /// Its version.
    pub version: Option<String>,
    pub(crate) how: How,
    /// A directory whose leftover mounts are detached at the end.
    teardown: Option<PathBuf>,
}

/// How a contender launches.
#[derive(Debug)]
pub(crate) enum How {
    /// A command per launch; one argv per slot (the runtimes' container ids
    /// and cgroups differ by slot; others have one).
    Process {
        argv: Vec<Vec<OsString>>,
        hide_unified: bool,
        skiff_json: bool,
    },
    /// Requests to `skiff launcher` processes, one per slot.
    Pool {
        spawn: Vec<OsString>,
        log_dir: PathBuf,
        launchers: Vec<Launcher>,
        request: Box<Request>,
        /// The bench cgroup the launchers start in (see [`super::cpu`]).
        cgroup: Option<BenchCgroup>,
        /// Warm sandboxes each launcher keeps (`None`: the plain pool).
        warm: Option<usize>,
    },
}

impl Prepared {
    /// Where its CPU time per launch comes from.
    pub fn cpu_source(&self) -> &'static str {
        match self.which {
            Contender::SkiffPool | Contender::SkiffWarm if self.cgroup().is_some() => {
                "the launchers' bench cgroup (cpuacct.usage, hierarchical: launcher, \
                 intermediate, init, job, cleanup, refills) from this request to the next"
            }
            Contender::SkiffPool | Contender::SkiffWarm => {
                "the launcher's CPU clock plus the job cgroup's CPU time"
            }
            Contender::Skiff => {
                "getrusage(RUSAGE_CHILDREN) of the launch: skiff run and every process it \
                 waited for (intermediate, init, job)"
            }
            Contender::Docker => "getrusage(RUSAGE_CHILDREN): the docker client only",
            Contender::Podman => {
                "getrusage(RUSAGE_CHILDREN): podman and what it waited for (not conmon)"
            }
            _ => "getrusage(RUSAGE_CHILDREN) of the launch",
        }
    }

    /// The bench cgroup of a pool contender.
    pub fn cgroup(&self) -> Option<&BenchCgroup> {
        match &self.how {
            How::Pool { cgroup, .. } => cgroup.as_ref(),
            How::Process { .. } => None,
        }
    }

    /// The warm stock of each launcher (`skiff-warm` only).
    pub fn warm_stock(&self) -> Option<usize> {
        match &self.how {
            How::Pool { warm, .. } => *warm,
            How::Process { .. } => None,
        }
    }

    /// The launchers' pids (the pool only).
    pub fn launcher_pids(&self) -> Vec<u32> {
        match &self.how {
            How::Pool { launchers, .. } => launchers.iter().map(Launcher::pid).collect(),
            How::Process { .. } => Vec::new(),
        }
    }

    /// Launch once, in slot `slot` (its own container id and cgroup for the
    /// runtimes; its own launcher for the pool).
    pub fn launch(&mut self, slot: usize) -> std::result::Result<Sample, RunError> {
        let which = self.which;
        match &mut self.how {
            How::Process {
                argv,
                hide_unified,
                skiff_json,
            } => {
                let a = &argv[slot.min(argv.len().saturating_sub(1))];
                exec::process(a, *hide_unified, *skiff_json)
            }
            How::Pool { .. } => {
                self.ensure_launchers(slot + 1)?;
                let How::Pool {
                    launchers,
                    request,
                    cgroup,
                    ..
                } = &mut self.how
                else {
                    return Err(RunError::NoLauncher(which.name()));
                };
                exec::pool(&mut launchers[slot], request, cgroup.as_ref())
            }
        }
    }

    /// For the pool: start launchers until there are `n`.
    pub(crate) fn ensure_launchers(&mut self, n: usize) -> std::result::Result<(), RunError> {
        let which = self.which.name();
        let How::Pool {
            spawn,
            log_dir,
            launchers,
            cgroup,
            ..
        } = &mut self.how
        else {
            return Ok(());
        };
        while launchers.len() < n {
            let log = log_dir.join(format!("{which}-{}.log", launchers.len()));
            let err = fs::File::create(&log).map_err(|source| RunError::Io {
                op: "create",
                path: log.clone(),
                source,
            })?;
            let mut cmd = Command::new(&spawn[0]);
            cmd.args(&spawn[1..]).stderr(Stdio::from(err));
            if let Some(cg) = cgroup.as_ref() {
                cg.enter_on_spawn(&mut cmd);
            }
            launchers.push(Launcher::spawn(cmd).map_err(|e| RunError::SpawnLauncher(Box::new(e)))?);
        }
        Ok(())
    }

    /// Stop launchers, detach leftover mounts; returns notes on anything odd.
    pub fn finish(&mut self) -> Vec<String> {
        let mut notes = Vec::new();
        if let How::Pool { launchers, .. } = &mut self.how {
            for l in launchers.drain(..) {
                match l.finish() {
                    Ok(s) if s.success() => {}
                    Ok(s) => notes.push(format!("a pool launcher exited with {s}")),
                    Err(e) => notes.push(format!("a pool launcher: {}", error_chain(&e))),
                }
            }
        }
        if let Some(dir) = &self.teardown {
            crate::trash::unmount_under(dir);
        }
        notes
    }
}

fn os(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

/// The job every skiff-driven contender runs.
fn job(cfg: &LaunchConfig, name: &str) -> JobSpec {
    JobSpec {
        name: name.to_string(),
        command: cfg.command.clone(),
        limits: Limits {
            memory_bytes: Some(cfg.memory_bytes),
            memory_swap_bytes: None,
            pids: Some(cfg.pids_limit),
            ..Limits::default()
        },
        network: NetworkMode::None,
        ..JobSpec::default()
    }
}

/// Make `c` ready (with one untimed trial launch), or say why it cannot run.
/// Pool contenders start their launchers in a cgroup of `cgroups` when
/// there are bench cgroups.
pub fn contender(
    c: Contender,
    cfg: &LaunchConfig,
    dir: &Path,
    image: &BenchImage,
    slots: usize,
    cgroups: Option<&mut BenchCgroups>,
) -> std::result::Result<Prepared, Unavailable> {
    let mem = size_arg(cfg.memory_bytes);
    let pids = cfg.pids_limit.to_string();
    let cmd_words = cfg.command.join(" ");
    let skiff_version = || {
        tool_version(&cfg.skiff_exe.to_string_lossy(), &["--version"])
            .or_else(|| Some(format!("skiff {}", env!("CARGO_PKG_VERSION"))))
    };
    let need = |tool: &str| -> std::result::Result<PathBuf, Unavailable> {
        find_on_host(tool).ok_or_else(|| Unavailable::NotInstalled(tool.to_string()))
    };
    let mut p = match c {
        Contender::Skiff => {
            if !cfg.skiff_exe.exists() && find_on_host(&cfg.skiff_exe.to_string_lossy()).is_none() {
                return Err(Unavailable::NoSkiff(cfg.skiff_exe.clone()));
            }
            let mut argv = vec![cfg.skiff_exe.clone().into_os_string(), "--root".into()];
            argv.push(image.store_root.clone().into_os_string());
            argv.extend(os(&[
                "run",
                "--rm",
                "--network",
                "none",
                "-m",
                &mem,
                "--pids-limit",
                &pids,
                "--json",
                &image.id,
            ]));
            argv.extend(cfg.command.iter().map(OsString::from));
            Prepared {
                which: c,
                command: format!(
                    "skiff run --rm --network none -m {mem} --pids-limit {pids} --json IMAGE {cmd_words}"
                ),
                version: skiff_version(),
                how: How::Process {
                    argv: vec![argv],
                    hide_unified: false,
                    skiff_json: true,
                },
                teardown: None,
            }
        }
        Contender::SkiffPool | Contender::SkiffWarm => {
            let mut spawn = vec![cfg.skiff_exe.clone().into_os_string(), "--root".into()];
            spawn.push(image.store_root.clone().into_os_string());
            spawn.push("launcher".into());
            let warm = (c == Contender::SkiffWarm).then_some(WARM_STOCK);
            let flags = match warm {
                Some(n) => {
                    let n = n.to_string();
                    spawn.extend(os(&["--warm", &n, "--warm-per-key", &n]));
                    format!(" --warm {n} --warm-per-key {n}")
                }
                None => String::new(),
            };
            Prepared {
                which: c,
                command: format!(
                    "one request to a running `skiff launcher{flags}` (same job: -m {mem}, \
                     pids {pids}, network none, {cmd_words}{})",
                    if warm.is_some() {
                        "; request warm policy prefer"
                    } else {
                        ""
                    }
                ),
                version: skiff_version(),
                how: How::Pool {
                    spawn,
                    log_dir: dir.to_path_buf(),
                    launchers: Vec::new(),
                    request: Box::new(Request {
                        image: image.id.clone(),
                        job: job(cfg, ""),
                        warm: warm.map(|_| runtime::warm::WarmPolicy::Prefer),
                        ..Request::default()
                    }),
                    cgroup: cgroups.and_then(|g| g.child(c.name()).ok()),
                    warm,
                },
                teardown: None,
            }
        }
        Contender::Runc | Contender::Crun => {
            let name = c.name();
            let path = need(name)?;
            let hide = c == Contender::Crun && crun_needs_hybrid_workaround();
            let argv = runtime_bundles(cfg, dir, image, &path, name, slots)?;
            Prepared {
                which: c,
                command: format!(
                    "{name} --root STATE run --bundle B ID{} (config.json from skiff's spec \
                     builder: -m {mem}, pids {pids}, network none; a copy of the image's rootfs)",
                    if hide {
                        "; in a private mount namespace with /dev/null bound over \
                         cgroup.controllers (crun's hybrid workaround, made in the forked child)"
                    } else {
                        ""
                    }
                ),
                version: tool_version(name, &["--version"]),
                how: How::Process {
                    argv,
                    hide_unified: hide,
                    skiff_json: false,
                },
                teardown: None,
            }
        }
        Contender::Podman => {
            need("podman")?;
            let pdir = dir.join("podman");
            for d in ["root", "runroot", "tmp"] {
                let d = pdir.join(d);
                fs::create_dir_all(&d).map_err(|source| Unavailable::Io {
                    op: "create",
                    path: d,
                    source,
                })?;
            }
            let mut base = os(&["podman", "--root"]);
            base.push(pdir.join("root").into_os_string());
            base.push("--runroot".into());
            base.push(pdir.join("runroot").into_os_string());
            base.push("--tmpdir".into());
            base.push(pdir.join("tmp").into_os_string());
            base.extend(os(&[
                "--storage-driver",
                "overlay",
                "--cgroup-manager=cgroupfs",
                "--events-backend=file",
            ]));
            let mut load = base.clone();
            load.extend(os(&["load", "-i"]));
            load.push(image.archive.clone().into_os_string());
            let out = run_quiet(&load).map_err(|source| Unavailable::Prepare {
                what: "podman load",
                source,
            })?;
            let name = loaded_name(&out).unwrap_or_else(|| image.id.clone());
            let mut run = base;
            run.extend(os(&[
                "run",
                "--rm",
                "--network",
                "none",
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
                "-m",
                &mem,
                "--memory-swap",
                &mem,
                "--pids-limit",
                &pids,
                &name,
            ]));
            run.extend(cfg.command.iter().map(OsString::from));
            let hide = crun_needs_hybrid_workaround();
            Prepared {
                which: c,
                command: format!(
                    "podman run --rm --network none --ulimit nofile=1024:1024 --ulimit \
                     nproc=1024:1024 -m {mem} --memory-swap {mem} --pids-limit {pids} IMAGE \
                     {cmd_words} (private storage root; --cgroup-manager=cgroupfs \
                     --events-backend=file{})",
                    if hide {
                        "; its crun gets the same hybrid workaround as crun"
                    } else {
                        ""
                    }
                ),
                version: tool_version("podman", &["--version"]),
                how: How::Process {
                    argv: vec![run],
                    hide_unified: hide,
                    skiff_json: false,
                },
                teardown: Some(pdir),
            }
        }
        Contender::Docker => {
            need("docker")?;
            let server = run_quiet(&os(&[
                "docker",
                "version",
                "--format",
                "{{.Server.Version}}",
            ]))
            .map_err(Unavailable::DockerEngine)?;
            let mut load = os(&["docker", "load", "-i"]);
            load.push(image.archive.clone().into_os_string());
            let out = run_quiet(&load).map_err(|source| Unavailable::Prepare {
                what: "docker load",
                source,
            })?;
            let name = loaded_name(&out).unwrap_or_else(|| image.id.clone());
            let mut run = os(&[
                "docker",
                "run",
                "--rm",
                "--network",
                "none",
                "-m",
                &mem,
                "--memory-swap",
                &mem,
                "--pids-limit",
                &pids,
                &name,
            ]);
            run.extend(cfg.command.iter().map(OsString::from));
            Prepared {
                which: c,
                command: format!(
                    "docker run --rm --network none -m {mem} --memory-swap {mem} --pids-limit \
                     {pids} IMAGE {cmd_words}"
                ),
                version: Some(format!("Docker Engine {}", server.trim())),
                how: How::Process {
                    argv: vec![run],
                    hide_unified: false,
                    skiff_json: false,
                },
                teardown: None,
            }
        }
        Contender::Floor => {
            let unshare = need("unshare")?;
            let mut argv = vec![unshare.into_os_string()];
            argv.extend(os(&[
                "-m",
                "-p",
                "-f",
                "-n",
                "-u",
                "-i",
                "--mount-proc",
                "true",
            ]));
            Prepared {
                which: c,
                command: "unshare -m -p -f -n -u -i --mount-proc true".into(),
                version: tool_version("unshare", &["--version"]),
                how: How::Process {
                    argv: vec![argv],
                    hide_unified: false,
                    skiff_json: false,
                },
                teardown: None,
            }
        }
        Contender::True => {
            let t = if Path::new("/bin/true").exists() {
                PathBuf::from("/bin/true")
            } else {
                need("true")?
            };
            Prepared {
                which: c,
                command: t.display().to_string(),
                version: None,
                how: How::Process {
                    argv: vec![vec![t.into_os_string()]],
                    hide_unified: false,
                    skiff_json: false,
                },
                teardown: None,
            }
        }
    };
    // One untimed trial, so that a contender that cannot work here is
    // skipped with its reason rather than failing in round 1.
    p.launch(0).map_err(Unavailable::Trial)?;
    Ok(p)
}

/// Run a preparation command; its stdout, or why it failed.
fn run_quiet(argv: &[OsString]) -> std::result::Result<String, RunError> {
    let out = run_checked(Command::new(&argv[0]).args(&argv[1..]))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The image name (or id) from `docker load` / `podman load` output.
pub fn loaded_name(out: &str) -> Option<String> {
    out.lines()
        .filter(|l| l.starts_with("Loaded image"))
        .filter_map(|l| l.rsplit_once(": ").map(|(_, n)| n.trim().to_string()))
        .find(|n| !n.is_empty())
}

/// Write the bundles of `runtime` (one per slot) and return the argv of each
/// slot's `RUNTIME --root STATE run --bundle B ID`.
fn runtime_bundles(
    cfg: &LaunchConfig,
    dir: &Path,
    image: &BenchImage,
    runtime_path: &Path,
    name: &str,
    slots: usize,
) -> std::result::Result<Vec<Vec<OsString>>, Unavailable> {
    let failed = |op: &'static str| {
        move |e| Unavailable::Bundle {
            op,
            runtime: name.to_string(),
            source: Box::new(e),
        }
    };
    let oci = dir.join("oci");
    let rootfs = rootfs_copy(&oci, image)?;
    let etc = oci.join("etc");
    fs::create_dir_all(&etc).map_err(io_failed("create", &etc))?;
    runtime::run::write_etc_files(&etc, HOSTNAME, NetworkMode::None)
        .map_err(failed("write the job's /etc files"))?;
    // Own group key: a skiff store's gc never sees these cgroups.
    let driver = runtime::cgroups::detect(&runtime::cgroups::group_key(&oci))
        .map_err(failed("detect the cgroup layout"))?;
    let backend = Backend::Binary(runtime_path.to_path_buf());
    let bounding = runtime::oci::caller_bounding_set();
    let rt_dir = oci.join(name);
    let state = rt_dir.join("state");
    if let Ok(entries) = fs::read_dir(&state) {
        // Containers left by an interrupted run.
        for e in entries.flatten() {
            let _ = Command::new(runtime_path)
                .arg("--root")
                .arg(&state)
                .args(["delete", "--force"])
                .arg(e.file_name())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = fs::remove_dir_all(&state);
    }
    fs::create_dir_all(&state).map_err(io_failed("create", &state))?;
    let root = runtime::safe_root::SafeRoot::open(&rootfs)
        .map_err(io_failed("open the rootfs", &rootfs))?;
    let mut argvs = Vec::new();
    for slot in 0..slots.max(1) {
        let id = format!("bench-{name}-{slot}");
        let mut job = job(cfg, &id);
        job.hostname = Some(HOSTNAME.into());
        let plan = runtime::run::plan_process(&job, &image.config, &root, &bounding)
            .map_err(failed("plan the job's process"))?;
        let resources = runtime::cgroups::resources(&job.limits)
            .map_err(failed("build the cgroup resources"))?;
        let cgroup = driver.job_path(&id);
        let cgroup_mount = driver
            .view(&id)
            .prepare(&rt_dir.join(format!("cgroupfs-{slot}")))
            .map_err(failed("prepare the job's cgroup view"))?;
        // A runtime binary's plan compiles nothing: the cache stays unwritten.
        let mut cache = runtime::seccomp::Cache::new(oci.join("seccomp"));
        let seccomp = runtime::seccomp::plan(
            job.seccomp,
            &backend,
            &plan.caps,
            job.no_new_privileges,
            &mut cache,
        )
        .map_err(failed("plan the seccomp filter"))?;
        let spec = runtime::oci::build_spec(
            &job,
            &plan,
            &runtime::oci::SpecPaths {
                rootfs: &rootfs,
                etc_dir: &etc,
                cgroups_path: &cgroup,
                cgroup_mount: &cgroup_mount,
                seccomp: &seccomp,
            },
            Some(resources),
        )
        .map_err(failed("build the OCI spec"))?;
        let bundle = rt_dir.join(format!("bundle-{slot}"));
        fs::create_dir_all(&bundle).map_err(io_failed("create", &bundle))?;
        let config = bundle.join("config.json");
        spec.save(&config).map_err(|source| Unavailable::SaveSpec {
            path: config.clone(),
            source,
        })?;
        let mut argv = vec![runtime_path.as_os_str().to_owned(), "--root".into()];
        argv.push(state.clone().into_os_string());
        argv.extend(os(&["run", "--bundle"]));
        argv.push(bundle.into_os_string());
        argv.push(id.into());
        argvs.push(argv);
    }
    Ok(argvs)
}

/// The image's merged root filesystem, copied once into `oci/rootfs-<id>`
/// (a single layer is copied as is; several are merged by a read-only
/// overlay mount in a private mount namespace).
fn rootfs_copy(oci: &Path, image: &BenchImage) -> std::result::Result<PathBuf, Unavailable> {
    let hex = image.id.trim_start_matches("sha256:");
    let dest = oci.join(format!("rootfs-{}", &hex[..hex.len().min(16)]));
    if dest.is_dir() {
        return Ok(dest);
    }
    fs::create_dir_all(oci).map_err(io_failed("create", oci))?;
    let tmp = oci.join(".rootfs.tmp");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir(&tmp).map_err(io_failed("create", &tmp))?;
    let status = match image.lowerdirs.as_slice() {
        [] => return Err(Unavailable::NoLayers),
        [one] => Command::new("cp")
            .arg("-a")
            .arg(one.join("."))
            .arg(&tmp)
            .status(),
        many => {
            let mnt = oci.join(".rootfs.mnt");
            fs::create_dir_all(&mnt).map_err(io_failed("create", &mnt))?;
            let lowers: Vec<String> = many.iter().map(|p| p.display().to_string()).collect();
            Command::new("unshare")
                .args(["-m", "--propagation", "private", "sh", "-c"])
                .arg(r#"mount -t overlay overlay -o "ro,lowerdir=$1" "$2" && cp -a "$2/." "$3""#)
                .arg("sh")
                .arg(lowers.join(":"))
                .arg(&mnt)
                .arg(&tmp)
                .status()
        }
    };
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => return Err(Unavailable::CopyRootfsFailed(s)),
        Err(e) => return Err(Unavailable::CopyRootfs(e)),
    }
    fs::rename(&tmp, &dest).map_err(io_failed("rename into place", &dest))?;
    Ok(dest)
}

/// An `io::Error` of `op` on `path`, as why a contender cannot run.
fn io_failed(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Unavailable {
    let path = path.to_path_buf();
    move |source| Unavailable::Io { op, path, source }
}

/// cgroup mounts, and the attach cost measured on this host now.
pub fn host_facts(dir: &Path, probes: usize) -> LaunchHost {
    let cgroup_mounts: Vec<String> = fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter(|l| matches!(l.split_whitespace().nth(2), Some("cgroup" | "cgroup2")))
        .map(str::to_string)
        .collect();
    let favordynmods_in_mounts = cgroup_mounts.iter().any(|l| {
        l.split_whitespace()
            .nth(3)
            .is_some_and(|o| o.split(',').any(|x| x == "favordynmods"))
    });
    let (idle_attach_ms, idle_attach_error) = match attach_probe(dir, probes) {
        Ok(v) => (v, None),
        Err(e) => (Vec::new(), Some(error_chain(&e))),
    };
    LaunchHost {
        cgroup_mounts,
        favordynmods_in_mounts,
        idle_attach_median_ms: crate::stats::Summary::of(&idle_attach_ms).map(|s| s.median),
        idle_attach_ms,
        idle_attach_error,
        load_before: String::new(),
        load_after: String::new(),
        notes: Vec::new(),
    }
}

/// Move a sleeping child into a fresh cgroup (pids on v1, the unified
/// hierarchy on v2) after 250 ms of quiet, `n` times, timing each write to
/// `cgroup.procs`: the attach cost that a launch pays once (HOST-FACTS.md).
fn attach_probe(dir: &Path, n: usize) -> Result<Vec<f64>> {
    use runtime::cgroups::CgroupVersion;
    let key_dir = dir.join("attach");
    let driver =
        runtime::cgroups::detect(&runtime::cgroups::group_key(&key_dir)).map_err(|source| {
            Error::Cgroups {
                path: key_dir.clone(),
                source: Box::new(source),
            }
        })?;
    let mount = match driver.version() {
        CgroupVersion::V1 => PathBuf::from("/sys/fs/cgroup/pids"),
        CgroupVersion::V2 => PathBuf::from("/sys/fs/cgroup"),
    };
    let rel = driver.job_path("attach-probe");
    let cg = mount.join(rel.strip_prefix("/").unwrap_or(&rel));
    // Remember which directories this creates, to remove exactly those.
    let mut created = Vec::new();
    let mut p = cg.as_path();
    while !p.exists() {
        created.push(p.to_path_buf());
        match p.parent() {
            Some(q) => p = q,
            None => break,
        }
    }
    fs::create_dir_all(&cg).ctx("create", &cg)?;
    let mut out = Vec::new();
    let mut result = Ok(());
    for _ in 0..n {
        let mut child = match Command::new("sleep").arg("30").stdin(Stdio::null()).spawn() {
            Ok(c) => c,
            Err(e) => {
                result = Err(Error::io("run", "sleep", e));
                break;
            }
        };
        std::thread::sleep(Duration::from_millis(250));
        let t = Instant::now();
        let w = fs::write(cg.join("cgroup.procs"), child.id().to_string());
        let took = ms_since(t);
        let _ = child.kill();
        let _ = child.wait();
        if let Err(e) = w {
            result = Err(Error::io("attach to", &cg, e));
            break;
        }
        out.push(took);
    }
    // The child is dead: the cgroup empties as it is reaped.
    for d in &created {
        for _ in 0..100 {
            if fs::remove_dir(d).is_ok() || !d.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    result.map(|()| out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_loaded_name_from_load_output() {
        assert_eq!(
            loaded_name("Loaded image: skiff-vendor/busybox:latest\n").as_deref(),
            Some("skiff-vendor/busybox:latest")
        );
        assert_eq!(
            loaded_name("Getting image source signatures\nLoaded image(s): localhost/x:1\n")
                .as_deref(),
            Some("localhost/x:1")
        );
        assert_eq!(
            loaded_name("Loaded image ID: sha256:abc\n").as_deref(),
            Some("sha256:abc")
        );
        assert_eq!(loaded_name("nothing\n"), None);
    }
}
