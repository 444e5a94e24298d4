//! Where things are (the repository, the vendored images, the `skiff`
//! binary), a fresh store per test, programs on `PATH`, and static C probes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::privilege::skip_or_fail;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// This support module's directory (the C probes' sources live here).
pub fn support_dir() -> PathBuf {
    repo().join("tests/support")
}

/// A vendored image archive by file name (`busybox.tar`).
pub fn vendor(name: &str) -> PathBuf {
    repo().join("vendor-images").join(name)
}

/// A vendored archive by image name: plain `.tar`, or else `.tar.gz`.
pub fn vendor_archive(name: &str) -> PathBuf {
    let plain = vendor(&format!("{name}.tar"));
    if plain.exists() {
        plain
    } else {
        vendor(&format!("{name}.tar.gz"))
    }
}

/// The skiff binary under test.
pub fn skiff_bin() -> &'static str {
    env!("CARGO_BIN_EXE_skiff")
}

/// Whether an executable named `program` is in a `PATH` directory.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// A fresh directory for one test under `SKIFF_TEST_TMP` (default
/// `/var/tmp`), removed on drop.
pub fn test_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(std::env::var("SKIFF_TEST_TMP").unwrap_or_else(|_| "/var/tmp".into()))
        .expect("tempdir")
}

/// `cc FLAGS -o TARGET_TMPDIR/DIR/BIN tests/support/SOURCE`; the binary, or
/// `None` after [`skip_or_fail`] when it cannot be built (no C compiler).
pub fn build_c(dir: &str, source: &str, bin: &str, flags: &[&str], what: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(dir);
    std::fs::create_dir_all(&dir).expect("probe dir");
    let bin = dir.join(bin);
    let out = Command::new("cc")
        .args(flags)
        .arg("-o")
        .arg(&bin)
        .arg(support_dir().join(source))
        .output();
    match out {
        Ok(o) if o.status.success() => Some(bin),
        other => {
            skip_or_fail(&format!("cannot build {what} with cc: {other:?}"));
            None
        }
    }
}

/// `skiff --root ROOT`.
pub fn skiff_on(root: &Path) -> Command {
    let mut c = Command::new(skiff_bin());
    c.arg("--root").arg(root);
    c
}

/// A test's private store and scratch space, removed on drop; `skiff`
/// commands take the store with `--root`.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Drop for Env {
    fn drop(&mut self) {
        // Jobs run from this store leave its `skiff/<store key>` cgroups
        // (kept between jobs); `gc` and the rmdir end them with the store.
        if self.root().join("run").exists() {
            let _ = self.quiet().arg("gc").status();
            super::run::forget_store_cgroups(&self.root());
        }
    }
}

impl Env {
    pub fn new() -> Env {
        Env::with_prefix("skiff-test-")
    }

    /// With the test directory's name starting with `prefix`.
    pub fn with_prefix(prefix: &str) -> Env {
        Env {
            dir: test_dir(prefix),
        }
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
        skiff_on(&self.root())
    }

    /// [`Env::skiff`] with stdout and stderr discarded (to spawn and kill).
    pub fn quiet(&self) -> Command {
        let mut c = self.skiff();
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    }

    /// `skiff image verify --json EXTRA…`: its output and report (stdout
    /// must be JSON; `label` starts the message when it is not).
    pub fn verify(&self, extra: &[&str], label: &str) -> (Output, serde_json::Value) {
        let out = self.run(&[&["image", "verify", "--json"], extra].concat());
        let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{label}verify printed bad JSON ({e}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out, report)
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

/// `docker load` of `archive` into a running Docker engine (the oracle for
/// Docker semantics), or why not.
pub fn docker_load(archive: &Path) -> Result<(), String> {
    let ok = Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        return Err("no running Docker engine".into());
    }
    let load = Command::new("docker")
        .args(["load", "-q", "-i"])
        .arg(archive)
        .output()
        .map_err(|e| format!("docker load: {e}"))?;
    if !load.status.success() {
        return Err(format!(
            "docker load: {}",
            String::from_utf8_lossy(&load.stderr)
        ));
    }
    Ok(())
}

/// The names in a directory (none when it cannot be read).
pub fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A number in skiff's JSON output, which must be there.
pub fn num(v: &serde_json::Value, key: &str) -> f64 {
    v.get(key)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_else(|| panic!("{key} is missing or not a number in {v}"))
}
