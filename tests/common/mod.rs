//! Shared helpers for skiff's end-to-end tests: a fresh store root per test,
//! a ready `skiff` command, and the privileged-prerequisite policy.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A vendored image archive.
pub fn vendor(name: &str) -> PathBuf {
    repo().join("vendor-images").join(name)
}

/// Whether CI demands that privileged prerequisites are present.
pub fn require_privileged() -> bool {
    std::env::var("SKIFF_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1")
}

/// Skip (return false) or fail when a prerequisite is missing.
pub fn prerequisite(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if require_privileged() {
        panic!("prerequisite missing: {what} (SKIFF_REQUIRE_PRIVILEGED=1)");
    }
    eprintln!("SKIPPED: prerequisite missing: {what}");
    false
}

/// Root is needed for chown, mknod and trusted xattrs.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A test's private store and scratch space, removed on drop.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("skiff-test-")
            .tempdir_in(std::env::var("SKIFF_TEST_TMP").unwrap_or_else(|_| "/var/tmp".into()))
            .expect("tempdir");
        Env { dir }
    }

    /// The store root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// A scratch path.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `skiff --root ROOT ARGS…`
    pub fn skiff(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_skiff"));
        c.arg("--root").arg(self.root());
        c
    }

    /// Run skiff and return its output, whatever the status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.skiff().args(args).output().expect("spawn skiff")
    }

    /// Run skiff, asserting success; return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "skiff {args:?} failed with {}:\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run skiff with `--json`, asserting success; parse stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--json");
        let out = self.ok(&all);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("skiff {args:?} printed bad JSON ({e}): {out}"))
    }

    /// Count entries in a store subdirectory.
    pub fn count(&self, sub: &str) -> usize {
        std::fs::read_dir(self.root().join(sub))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

/// Unmounts on drop, even when the test fails.
pub struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Mount a read-only overlay of `lowerdirs` (top first) at `target`.
pub fn mount_overlay(lowerdirs: &[PathBuf], target: &Path) -> nix::Result<MountGuard> {
    std::fs::create_dir_all(target).expect("mkdir");
    let lower: Vec<String> = lowerdirs.iter().map(|p| p.display().to_string()).collect();
    let data = if lower.len() == 1 {
        // overlayfs needs two lowers without an upper; repeat is not allowed,
        // so add an empty one.
        let empty = target.with_extension("empty");
        std::fs::create_dir_all(&empty).expect("mkdir");
        format!("lowerdir={}:{}", lower[0], empty.display())
    } else {
        format!("lowerdir={}", lower.join(":"))
    };
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(data.as_str()),
    )?;
    Ok(MountGuard(target.to_path_buf()))
}
