//! Micro-benchmarks of the hot pieces of a skiff launch (`cargo bench -p
//! skiff-bench`):
//!
//! - `spec`: the OCI spec of a job from an image config (Docker's rules in
//!   `runtime::run::plan_process`, then `runtime::oci::build_spec` with the
//!   limits), as the libcontainer path builds it (seccomp compiled once,
//!   elsewhere) and as a runtime binary gets it (the seccomp profile inside);
//! - `overlay_options`: the overlay mount option string, 1 and 64 layers;
//! - `apply_layer`: unpacking an in-memory layer tar with `.wh.` whiteouts
//!   and an opaque directory into a fresh directory (whiteouts need root for
//!   the 0/0 device and the `trusted.` xattr; without root the tar has none);
//! - `cgroup` (root and cgroup v1 only, skipped otherwise): a job cgroup
//!   created in every v1 hierarchy, configured by libcgroups (as
//!   libcontainer does) and removed by skiff's driver; and one task attach
//!   (a write to `cgroup.procs`) back to back.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use imagestore::oci_spec::image::ImageConfiguration;
use imagestore::MountDescription;
use runtime::cgroups::{self, CgroupDriver, CgroupVersion, JobCgroupMount};
use runtime::oci::{self, SpecPaths};
use runtime::safe_root::SafeRoot;
use runtime::seccomp::{self, SeccompPlan};
use runtime::{Backend, JobSpec, Limits, NetworkMode};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The vendored busybox image's config, or one like it.
fn image_config() -> ImageConfiguration {
    let archive = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vendor-images/busybox.tar");
    let from_archive = || -> Option<ImageConfiguration> {
        let mut a = tar::Archive::new(std::fs::File::open(&archive).ok()?);
        for e in a.entries().ok()? {
            let mut e = e.ok()?;
            let p = e.path().ok()?.to_string_lossy().into_owned();
            if p.ends_with(".json") && !p.contains('/') && p != "manifest.json" {
                return ImageConfiguration::from_reader(&mut e).ok();
            }
        }
        None
    };
    from_archive().unwrap_or_else(|| {
        let json = r#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"],"WorkingDir":""},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        ImageConfiguration::from_reader(json.as_bytes()).expect("inline image config")
    })
}

fn job() -> JobSpec {
    JobSpec {
        name: "bench-job-0001".into(),
        command: vec!["/bin/true".into()],
        limits: Limits {
            memory_bytes: Some(64 << 20),
            memory_swap_bytes: None,
            pids: Some(64),
            ..Limits::default()
        },
        network: NetworkMode::None,
        ..JobSpec::default()
    }
}

fn bench_spec(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).expect("mkdir");
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
    )
    .expect("passwd");
    std::fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n",
    )
    .expect("group");
    let etc = tmp.path().join("etc");
    let config = image_config();
    let job = job();
    let bounding = oci::caller_bounding_set();
    let cgroup = PathBuf::from("/process_api/x/skiff/0000/bench-job-0001");
    let mut cache = seccomp::Cache::new(tmp.path().join("seccomp"));
    let mut g = c.benchmark_group("spec");
    for (name, backend) in [
        (
            "libcontainer (seccomp installed by the executor)",
            Backend::Libcontainer,
        ),
        (
            "runtime binary (seccomp profile in the spec)",
            Backend::Binary(PathBuf::from("runc")),
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let root = SafeRoot::open(&rootfs).expect("open rootfs");
                let plan =
                    runtime::run::plan_process(&job, &config, &root, &bounding).expect("plan");
                let resources = cgroups::resources(&job.limits).expect("resources");
                let seccomp = seccomp::plan(
                    job.seccomp,
                    &backend,
                    &plan.caps,
                    job.no_new_privileges,
                    &mut cache,
                )
                .expect("seccomp plan");
                oci::build_spec(
                    &job,
                    &plan,
                    &SpecPaths {
                        rootfs: &rootfs,
                        etc_dir: &etc,
                        cgroups_path: &cgroup,
                        cgroup_mount: &JobCgroupMount::Namespace,
                        seccomp: &seccomp,
                    },
                    Some(resources),
                )
                .expect("spec")
            })
        });
    }
    let root = SafeRoot::open(&rootfs).expect("open rootfs");
    let plan = runtime::run::plan_process(&job, &config, &root, &bounding).expect("plan");
    let spec = oci::build_spec(
        &job,
        &plan,
        &SpecPaths {
            rootfs: &rootfs,
            etc_dir: &etc,
            cgroups_path: &cgroup,
            cgroup_mount: &JobCgroupMount::Namespace,
            seccomp: &SeccompPlan::None,
        },
        Some(cgroups::resources(&job.limits).expect("resources")),
    )
    .expect("spec");
    g.bench_function("config.json serialisation", |b| {
        b.iter(|| serde_json::to_vec(&spec).expect("json"))
    });
    g.finish();
}

fn bench_overlay_options(c: &mut Criterion) {
    let mut g = c.benchmark_group("overlay_options");
    for layers in [1usize, 64] {
        let desc = MountDescription {
            lowerdirs: (0..layers)
                .map(|i| PathBuf::from(format!("/var/lib/skiff/snapshots/{i:064x}")))
                .collect(),
        };
        let upper = Path::new("/var/lib/skiff/run/job/scratch/upper");
        let work = Path::new("/var/lib/skiff/run/job/scratch/work");
        g.bench_function(format!("{layers} layers"), |b| {
            b.iter(|| runtime::mounts::overlay_options(&desc, upper, work, true).expect("options"))
        });
    }
    g.finish();
}

/// A layer: 4 directories of 25 files of 1 KiB, a symlink and a hardlink,
/// and (with `whiteouts`) 10 `.wh.` whiteouts plus an opaque directory.
fn layer_tar(whiteouts: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, typ: tar::EntryType, data: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(typ);
        h.set_mode(if typ == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            h.set_link_name(l).expect("link name");
        }
        b.append_data(&mut h, path, data).expect("append");
    };
    let content = vec![b'x'; 1024];
    for d in 0..4 {
        add(&format!("d{d}/"), tar::EntryType::Directory, &[], None);
        for f in 0..25 {
            add(
                &format!("d{d}/f{f}"),
                tar::EntryType::Regular,
                &content,
                None,
            );
        }
    }
    add("d0/link", tar::EntryType::Symlink, &[], Some("f0"));
    add("d1/hard", tar::EntryType::Link, &[], Some("d1/f0"));
    if whiteouts {
        for w in 0..10 {
            add(
                &format!("d2/.wh.gone{w}"),
                tar::EntryType::Regular,
                &[],
                None,
            );
        }
        add("d3/.wh..wh..opq", tar::EntryType::Regular, &[], None);
    }
    b.into_inner().expect("tar")
}

fn bench_apply_layer(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let probe = tmp.path().join("probe");
    std::fs::create_dir(&probe).expect("mkdir");
    let whiteouts = imagestore::apply::apply_layer(Cursor::new(layer_tar(true)), &probe)
        .is_ok_and(|r| r.whiteouts == 11);
    if !whiteouts {
        eprintln!(
            "apply_layer: whiteouts need root (mknod, trusted. xattrs); benchmarking without them"
        );
    }
    let data = layer_tar(whiteouts);
    // 4 directories, 100 files, a symlink, a hardlink (+ 11 whiteout entries).
    let name = if whiteouts {
        "117 entries: 100 files of 1 KiB, 10 whiteouts, an opaque dir"
    } else {
        "106 entries: 100 files of 1 KiB, no whiteouts"
    };
    let mut n = 0u64;
    let mut g = c.benchmark_group("apply_layer");
    g.bench_function(name, |b| {
        b.iter_batched(
            || {
                n += 1;
                let d = tmp.path().join(format!("s{n}"));
                std::fs::create_dir(&d).expect("mkdir");
                d
            },
            |d| {
                imagestore::apply::apply_layer(Cursor::new(&data), &d).expect("apply");
                d
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// A child that sleeps until killed.
struct Sleeper(Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn v1_hierarchies() -> Vec<PathBuf> {
    [
        "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
    ]
    .iter()
    .map(|c| Path::new("/sys/fs/cgroup").join(c))
    .filter(|p| p.join("cgroup.procs").exists())
    .collect()
}

fn bench_cgroup(c: &mut Criterion) {
    if !is_root() {
        eprintln!("cgroup: skipped (needs root)");
        return;
    }
    let driver: Box<dyn CgroupDriver> =
        match cgroups::detect(&cgroups::group_key(Path::new("/skiff-criterion"))) {
            Ok(d) if d.version() == CgroupVersion::V1 => d,
            Ok(_) => {
                eprintln!("cgroup: skipped (the benchmark drives cgroup v1; this host is v2)");
                return;
            }
            Err(e) => {
                eprintln!("cgroup: skipped ({e})");
                return;
            }
        };
    let hierarchies = v1_hierarchies();
    let resources = cgroups::resources(&job().limits).expect("resources");
    let rel = |p: &Path| p.strip_prefix("/").unwrap_or(p).to_path_buf();
    let mut g = c.benchmark_group("cgroup");
    g.sample_size(30).measurement_time(Duration::from_secs(4));
    let mut n = 0u64;
    g.bench_function(
        "create in every v1 hierarchy + libcgroups apply (mem, pids, devices) + remove",
        |b| {
            b.iter(|| {
                n += 1;
                let name = format!("crit-{n}");
                let path = driver.job_path(&name);
                for h in &hierarchies {
                    std::fs::create_dir_all(h.join(rel(&path))).expect("create cgroup");
                }
                let m = libcgroups::v1::manager::Manager::new(&path).expect("manager");
                libcgroups::common::CgroupManager::apply(
                    &m,
                    &libcgroups::common::ControllerOpt {
                        resources: &resources,
                        disable_oom_killer: false,
                        oom_score_adj: None,
                        freezer_state: None,
                    },
                )
                .expect("apply");
                driver.remove(&name).expect("remove");
            })
        },
    );

    // One attach: move a sleeping task between two cgroups of the pids
    // hierarchy, back to back (the idle case is `skiff bench launch`'s probe).
    let pids = Path::new("/sys/fs/cgroup/pids");
    if pids.join("cgroup.procs").exists() {
        let sleeper = Sleeper(
            Command::new("sleep")
                .arg("3600")
                .stdin(Stdio::null())
                .spawn()
                .expect("sleep"),
        );
        let dirs: Vec<PathBuf> = ["crit-attach-a", "crit-attach-b"]
            .iter()
            .map(|n| pids.join(rel(&driver.job_path(n))))
            .collect();
        for d in &dirs {
            std::fs::create_dir_all(d).expect("create cgroup");
        }
        let pid = sleeper.0.id().to_string();
        let mut i = 0usize;
        g.bench_function("attach one task (back to back)", |b| {
            b.iter(|| {
                i += 1;
                std::fs::write(dirs[i % 2].join("cgroup.procs"), &pid).expect("attach");
            })
        });
        drop(sleeper);
        for name in ["crit-attach-a", "crit-attach-b"] {
            let _ = driver.remove(name);
        }
        for d in &dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
    g.finish();
}

/// criterion draws its HTML report with plotters, whose text needs a
/// registered font in this workspace (the `ab_glyph` feature): register
/// one, or go without plots.
fn config() -> Criterion {
    match bench::plot::ensure_font() {
        Ok(()) => Criterion::default(),
        Err(e) => {
            eprintln!("criterion plots disabled: {e}");
            Criterion::default().without_plots()
        }
    }
}

criterion_group!(
    name = benches;
    config = config();
    targets = bench_spec, bench_overlay_options, bench_apply_layer, bench_cgroup
);
criterion_main!(benches);
