//! Container escapes (issue 8, sections 1, 1b and 1c): every way in is
//! tried on every backend, and each test fails if a job can read a marker
//! planted on the host, write a canary on the host, see its cwd outside its
//! root, change a host directory, or write the skiff binary.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use compat::conformance::Launch;
use runtime::JobSpec;
use support::env::build_c;
use support::run;
use support::run::{backends, backends_and_warm, env, stdout, vendor_archive, Env, BUSYBOX};
use support::tar::{derive, layer, Entry};

/// Host files a job must never reach: a marker with a secret, and a canary
/// directory that must stay empty.
struct Plant {
    dir: tempfile::TempDir,
    secret: String,
}

/// Enough `..` to reach `/` from any directory of the host.
const UP: &str = "../../../../../../../../../../../../../../../../../../../../../..";

impl Plant {
    fn new() -> Plant {
        let dir = tempfile::Builder::new()
            .prefix("skiff-escape-")
            .tempdir_in("/tmp")
            .expect("plant dir");
        let secret = format!("host-secret-{}", std::process::id());
        std::fs::write(dir.path().join("marker"), &secret).expect("marker");
        std::fs::create_dir(dir.path().join("canary")).expect("canary dir");
        Plant { dir, secret }
    }

    /// The host path without its leading `/`.
    fn rel(&self, name: &str) -> String {
        format!("{}/{name}", self.dir.path().display())
            .trim_start_matches('/')
            .to_string()
    }

    /// A shell script that tries every way out from its cwd.
    fn probe_script(&self) -> String {
        format!(
            "readlink /proc/self/cwd; cat {UP}/{m} 2>/dev/null; cat ../../../../../../../../{m} 2>/dev/null; \
             echo x > {UP}/{c}/w1 2>/dev/null; echo x > ../../../../../../../../{c}/w2 2>/dev/null; true",
            m = self.rel("marker"),
            c = self.rel("canary"),
        )
    }

    /// Why the job escaped, if it did.
    fn escaped(&self, e: &Env, out_text: &str) -> Option<String> {
        if out_text.contains(&self.secret) {
            return Some(format!("read the host marker: {out_text}"));
        }
        let canaries: Vec<_> = std::fs::read_dir(self.dir.path().join("canary"))
            .expect("canary")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        if !canaries.is_empty() {
            return Some(format!("wrote on the host: {canaries:?}"));
        }
        let root = std::fs::canonicalize(e.root.path()).expect("canon");
        if out_text.contains(&root.display().to_string()) || out_text.contains("/scratch/") {
            return Some(format!("cwd outside its root: {out_text}"));
        }
        None
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", stdout(out), String::from_utf8_lossy(&out.stderr))
}

fn import(e: &Env, archive: &Path) {
    let out = e.skiff(&["image", "import", archive.to_str().expect("utf8")]);
    assert!(out.status.success(), "import: {}", text(&out));
}

/// Import busybox plus `entries`, with `edit` applied to its config.
fn hostile(e: &Env, tag: &str, entries: &[Entry], edit: impl Fn(&mut serde_json::Value)) {
    let path = e
        .root
        .path()
        .join(format!("{}.tar", tag.replace([':', '/'], "_")));
    let extra = (!entries.is_empty()).then(|| layer(entries));
    derive(&vendor_archive("busybox"), tag, extra, edit, &path);
    import(e, &path);
}

#[test]
fn test_escape_workdir_flag_proc_self_fd() {
    let Some(e) = env() else { return };
    let plant = Plant::new();
    let script = plant.probe_script();
    for rt in backends_and_warm() {
        for n in 3..=64 {
            let wd = format!("/proc/self/fd/{n}");
            let out = e.run(rt, &["-w", &wd, BUSYBOX, "sh", "-c", &script]);
            if let Some(why) = plant.escaped(&e, &text(&out)) {
                panic!("{rt:?} -w {wd}: {why}");
            }
            assert!(!out.status.success(), "{rt:?} -w {wd} ran: {}", text(&out));
        }
    }
    assert!(e.state_dirs().is_empty(), "{:?}", e.state_dirs());
}

#[test]
fn test_escape_image_workdir_proc_self_fd() {
    let Some(e) = env() else { return };
    let plant = Plant::new();
    let script = plant.probe_script();
    for n in 3..=12 {
        let tag = format!("hostile/workdir-fd:{n}");
        hostile(&e, &tag, &[], |c| {
            c["WorkingDir"] = format!("/proc/self/fd/{n}").into();
        });
        for rt in backends_and_warm() {
            let out = e.run(rt, &[&tag, "sh", "-c", &script]);
            if let Some(why) = plant.escaped(&e, &text(&out)) {
                panic!("{rt:?} image WorkingDir fd {n}: {why}");
            }
            assert!(!out.status.success(), "{rt:?} fd {n} ran: {}", text(&out));
        }
    }
}

#[test]
fn test_escape_image_workdir_symlinks() {
    let Some(e) = env() else { return };
    let plant = Plant::new();
    let script = plant.probe_script();
    let mut entries: Vec<Entry> = (3..=12)
        .map(|n| Entry::Symlink(format!("wd{n}"), format!("/proc/self/fd/{n}")))
        .collect();
    // The image also holds those paths as directories, so that a lookup
    // inside the rootfs (before /proc is mounted) succeeds.
    for d in ["proc", "proc/self", "proc/self/fd"] {
        entries.push(Entry::Dir(d.into()));
    }
    entries.extend((3..=12).map(|n| Entry::Dir(format!("proc/self/fd/{n}"))));
    entries.push(Entry::Symlink("wdroot".into(), "/".into()));
    entries.push(Entry::Symlink("wdrel".into(), "../../../..".into()));
    hostile(&e, "hostile/workdir-links:1", &entries, |c| {
        c["WorkingDir"] = "/wd5".into();
    });
    hostile(&e, "hostile/workdir-links:root", &entries, |c| {
        c["WorkingDir"] = "/wdroot".into();
    });
    for rt in backends_and_warm() {
        // The image's own WORKDIR, a symlink to a leaked descriptor.
        let out = e.run(rt, &["hostile/workdir-links:1", "sh", "-c", &script]);
        if let Some(why) = plant.escaped(&e, &text(&out)) {
            panic!("{rt:?} WORKDIR /wd5: {why}");
        }
        assert!(!out.status.success(), "{rt:?} /wd5 ran: {}", text(&out));
        for n in 3..=12 {
            let wd = format!("/wd{n}");
            let out = e.run(
                rt,
                &["-w", &wd, "hostile/workdir-links:1", "sh", "-c", &script],
            );
            if let Some(why) = plant.escaped(&e, &text(&out)) {
                panic!("{rt:?} -w {wd}: {why}");
            }
            assert!(!out.status.success(), "{rt:?} -w {wd} ran: {}", text(&out));
        }
        // Symlinks to `/`, absolute or relative, are the container's root.
        for args in [
            vec!["hostile/workdir-links:root", "sh", "-c", &script],
            vec![
                "-w",
                "/wdrel",
                "hostile/workdir-links:1",
                "sh",
                "-c",
                &script,
            ],
        ] {
            let out = e.run(rt, &args);
            if let Some(why) = plant.escaped(&e, &text(&out)) {
                panic!("{rt:?} {args:?}: {why}");
            }
            assert!(out.status.success(), "{rt:?} {args:?}: {}", text(&out));
            assert_eq!(stdout(&out).lines().next(), Some("/"), "{rt:?} {args:?}");
        }
    }
}

#[test]
fn test_escape_launcher_request_workdir() {
    let Some(e) = env() else { return };
    let plant = Plant::new();
    let script = plant.probe_script();
    for rt in backends() {
        let mut launcher = e.launcher();
        launcher.set_runtime(rt.map(str::to_string));
        for n in 3..=16 {
            let job = JobSpec {
                workdir: Some(format!("/proc/self/fd/{n}")),
                command: vec!["sh".into(), "-c".into(), script.clone()],
                ..Default::default()
            };
            let outcome = launcher.launch(BUSYBOX, &job).expect("launcher reply");
            let all = format!("{}{}", outcome.stdout, outcome.stderr);
            if let Some(why) = plant.escaped(&e, &all) {
                panic!("{rt:?} launcher workdir fd {n}: {why}");
            }
            assert_ne!(
                outcome.result.exit_code, 0,
                "{rt:?} launcher workdir fd {n} ran: {all}"
            );
        }
    }
}

/// Names, types and contents of every entry under `dir`.
fn snapshot_tree(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut ents: Vec<_> = std::fs::read_dir(&d).expect("list").flatten().collect();
        ents.sort_by_key(|e| e.file_name());
        for ent in ents {
            let p = ent.path();
            let ft = ent.file_type().expect("type");
            let what = if ft.is_symlink() {
                format!("link {:?}", std::fs::read_link(&p).expect("readlink"))
            } else if ft.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else {
                format!("file {:?}", std::fs::read(&p).expect("read"))
            };
            out.push((p, what));
        }
    }
    out
}

#[test]
fn test_escape_mount_targets_as_symlinks_leave_host_untouched() {
    let Some(e) = env() else { return };
    let plant = Plant::new();
    let host = plant.dir.path().join("canary");
    std::fs::write(host.join("ptmx"), "host file named ptmx").expect("plant ptmx");
    std::fs::write(host.join("keep"), "keep").expect("plant keep");
    let before = snapshot_tree(plant.dir.path());
    let host_rel = host
        .display()
        .to_string()
        .trim_start_matches('/')
        .to_string();
    // The image also holds the symlink's target as a directory, so that a
    // lookup inside the rootfs would succeed too.
    let mut dirs: Vec<Entry> = Vec::new();
    let mut acc = String::new();
    for comp in host_rel.split('/') {
        acc = if acc.is_empty() {
            comp.to_string()
        } else {
            format!("{acc}/{comp}")
        };
        dirs.push(Entry::Dir(acc.clone()));
    }
    let mut images = Vec::new();
    for (i, target) in ["dev", "dev/pts", "dev/shm", "dev/mqueue", "proc", "sys"]
        .iter()
        .enumerate()
    {
        for (kind, link) in [
            ("abs", format!("/{host_rel}")),
            ("rel", format!("{UP}/{host_rel}")),
        ] {
            let mut entries = dirs.clone();
            if target.contains('/') {
                entries.push(Entry::Dir("dev".into()));
            }
            entries.push(Entry::Symlink(target.to_string(), link));
            let tag = format!("hostile/mount-target-{i}:{kind}");
            hostile(&e, &tag, &entries, |_| {});
            images.push((tag, target.to_string()));
        }
    }
    for (tag, target) in &images {
        for rt in backends() {
            let mut variants: Vec<Vec<&str>> = vec![vec![tag.as_str(), "ls", "/dev"]];
            if rt.is_none() {
                variants.push(vec!["--read-only", tag.as_str(), "ls", "/dev"]);
            }
            for args in variants {
                let out = e.run(rt, &args);
                let after = snapshot_tree(plant.dir.path());
                assert_eq!(
                    before,
                    after,
                    "{rt:?} {args:?} ({target} is a symlink) changed the host directory: {}",
                    text(&out)
                );
            }
        }
    }
    assert!(e.state_dirs().is_empty(), "{:?}", e.state_dirs());
}

/// The exe_writer probe, built static into a private directory.
fn exe_writer() -> Option<PathBuf> {
    static BIN: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    BIN.get_or_init(build_exe_writer).clone()
}

fn build_exe_writer() -> Option<PathBuf> {
    build_c(
        "exe-writer",
        "exe_writer.c",
        "exe_writer",
        &[
            "-static",
            "-nostdlib",
            "-fno-pie",
            "-no-pie",
            "-fno-stack-protector",
            "-O",
        ],
        "exe_writer.c",
    )
}

/// Pids of the probe's shell (its script names GAVE-UP).
fn probe_pids() -> Vec<i32> {
    let mut v = Vec::new();
    for ent in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = ent.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(ent.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains("echo GAVE-UP") {
            v.push(pid);
        }
    }
    v
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A private copy of the skiff binary (a failed protection must not break
/// the binary the other tests use).
fn skiff_copy(e: &Env) -> PathBuf {
    let copy = e.root.path().join("skiff-copy");
    std::fs::copy(run::skiff_bin(), &copy).expect("copy skiff");
    copy
}

fn exe_image(e: &Env) -> Option<()> {
    let writer = std::fs::read(exe_writer()?).expect("read exe_writer");
    let entries = vec![
        Entry::Dir("lib64".into()),
        Entry::File("lib64/ld-linux-x86-64.so.2".into(), writer, 0o755),
        Entry::Dir("proc".into()),
        Entry::Dir("proc/self".into()),
        Entry::File("proc/self/exe".into(), b"#!/bin/sh\n".to_vec(), 0o755),
    ];
    hostile(e, "hostile/self-exe:1", &entries, |c| {
        c["Entrypoint"] = serde_json::json!(["/proc/self/exe"]);
        c["Cmd"] = serde_json::Value::Null;
    });
    Some(())
}

fn assert_binary_kept_and_job_gone(copy: &Path, original: &[u8], what: &str) {
    // Unprotected, the probe writes within 50 ms of the kill; it tries for
    // 10 s. Its death with the launcher is checked too.
    wait_for(
        &format!("the job to die with its {what}"),
        Duration::from_secs(8),
        || probe_pids().is_empty(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let now = std::fs::read(copy).expect("read copy");
    assert!(
        now == original,
        "after its {what} was killed, a job rewrote the skiff binary"
    );
}

/// Wait for the probe, kill its launcher with `kill`, then check the binary
/// and that the job died too; `skiff gc` cleans up after the killed launcher.
fn kill_mid_job_and_check(e: &Env, copy: &Path, what: &str, kill: impl FnOnce()) {
    let original = std::fs::read(copy).expect("read copy");
    wait_for("the probe to start", Duration::from_secs(20), || {
        !probe_pids().is_empty()
    });
    kill();
    assert_binary_kept_and_job_gone(copy, &original, what);
    let gc = Command::new(copy)
        .env("SKIFF_ROOT", e.root.path())
        .arg("gc")
        .output()
        .expect("gc");
    assert!(gc.status.success(), "gc: {}", text(&gc));
}

/// Both ways a launcher dies mid-job, one after the other (the probe is
/// found by its command line, so two at once would see each other's).
#[test]
fn test_escape_proc_self_exe_after_the_launcher_is_killed() {
    let Some(e) = env() else { return };
    if exe_image(&e).is_none() {
        return;
    }
    let copy = skiff_copy(&e);
    assert!(
        probe_pids().is_empty(),
        "a probe from an earlier run is still alive"
    );

    let mut child = Command::new(&copy)
        .env("SKIFF_ROOT", e.root.path())
        .args(["run", "hostile/self-exe:1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start skiff run");
    kill_mid_job_and_check(&e, &copy, "skiff run", || {
        child.kill().expect("SIGKILL skiff run");
        let _ = child.wait();
    });

    let mut cmd = Command::new(&copy);
    cmd.env("SKIFF_ROOT", e.root.path())
        .arg("launcher")
        .stderr(Stdio::null());
    let mut launcher = runtime::pool::Launcher::spawn(cmd).expect("launcher");
    let pid = launcher.pid() as i32;
    let t = std::thread::spawn(move || {
        let _ = launcher.launch("hostile/self-exe:1", &JobSpec::default());
    });
    kill_mid_job_and_check(&e, &copy, "launcher", || {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL)
            .expect("SIGKILL launcher");
        let _ = t.join();
    });
}

/// A caller that leaks a descriptor of a host directory into `skiff run`
/// (fd 9 here, not close-on-exec): the job's init inherits it too, so a
/// working directory through it must still be refused.
#[test]
fn test_escape_workdir_through_a_descriptor_the_caller_leaked() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let Some(e) = env() else { return };
    let plant = Plant::new();
    let script = plant.probe_script();
    let leaked = std::fs::File::open(plant.dir.path().join("canary")).expect("open host dir");
    let raw = leaked.as_raw_fd();
    for rt in backends_and_warm() {
        let mut c = e.cmd();
        c.arg("run").args(run::runtime_args(rt));
        c.args(["-w", "/proc/self/fd/9", BUSYBOX, "sh", "-c", &script]);
        // SAFETY: dup2 in the forked child before exec; async-signal-safe.
        unsafe {
            c.pre_exec(move || {
                if libc::dup2(raw, 9) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = c.output().expect("run skiff");
        if let Some(why) = plant.escaped(&e, &text(&out)) {
            panic!("{rt:?} -w /proc/self/fd/9 (leaked by the caller): {why}");
        }
        assert!(!out.status.success(), "{rt:?} ran: {}", text(&out));
    }
}
