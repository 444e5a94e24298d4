//! The external image corpus: real archives written by other tools.
//!
//! Driven by `SKIFF_IMAGE_CORPUS` (the corpus directory, whose README lists
//! each case and what must happen). Without it this test says it was
//! skipped and why. With it, every positive case is imported with the
//! `skiff` binary into a fresh store and checked (images, references,
//! platform warnings, files in the snapshots, whiteouts in overlayfs form,
//! `image ls`), and every negative case must be refused with a non-zero exit
//! and a message naming the problem. All cases run; failures are reported
//! together at the end.

mod support;

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use support::env::Env;
use support::privilege::{is_root, prerequisite};

type Check = Result<(), String>;

/// A named corpus case.
type Case<'a> = (&'a str, &'a dyn Fn(&Path) -> Check);

/// Fail the current case with a message.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Print on the real stderr, so the message shows even when the test
/// harness captures output.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        a => a,
    }
}

/// A fresh store root and the `skiff` binary pointed at it.
struct Skiff {
    env: Env,
    root: PathBuf,
}

impl Skiff {
    fn new() -> Skiff {
        let env = Env::with_prefix("skiff-corpus-");
        let root = env.root();
        Skiff { env, root }
    }

    fn command(&self) -> Command {
        let mut c = self.env.skiff();
        c.env_remove("SKIFF_ROOT");
        c
    }

    fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("spawn skiff")
    }

    /// Run and parse stdout as JSON, requiring exit 0.
    fn json<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<Value, String> {
        let out = self.run(args);
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        ensure!(
            out.status.success(),
            "skiff {shown:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "skiff {shown:?} printed bad JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// `image import PATH [EXTRA…] --json`, which must succeed.
    fn import(&self, path: &Path, extra: &[&str]) -> Result<Value, String> {
        let mut args: Vec<&OsStr> = vec!["image".as_ref(), "import".as_ref(), path.as_os_str()];
        args.extend(extra.iter().map(OsStr::new));
        args.push("--json".as_ref());
        let report = self.json(&args)?;
        self.check_clean_tmp()?;
        self.check_listed(&report)?;
        Ok(report)
    }

    /// `image import PATH [EXTRA…]`, which must be refused; returns stderr.
    fn refused(&self, path: &Path, extra: &[&str]) -> Result<String, String> {
        let mut args: Vec<&OsStr> = vec!["image".as_ref(), "import".as_ref(), path.as_os_str()];
        args.extend(extra.iter().map(OsStr::new));
        let out = self.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        ensure!(
            !out.status.success(),
            "import of {} succeeded but must be refused: {}",
            path.display(),
            String::from_utf8_lossy(&out.stdout)
        );
        ensure!(
            stderr.starts_with("skiff: error:"),
            "refusal of {} printed no error: {stderr:?}",
            path.display()
        );
        self.check_clean_tmp()?;
        let ls = self.ls()?;
        ensure!(ls.is_empty(), "a refused import left images: {ls:?}");
        Ok(stderr)
    }

    fn ls(&self) -> Result<Vec<Value>, String> {
        let v = self.json(&["image", "ls", "--json"])?;
        v.as_array()
            .cloned()
            .ok_or_else(|| format!("image ls --json is not a list: {v}"))
    }

    fn inspect(&self, reference: &str) -> Result<Value, String> {
        self.json(&["image", "inspect", reference, "--json"])
    }

    /// An image's snapshot directories, top first.
    fn lowerdirs(&self, reference: &str) -> Result<Vec<PathBuf>, String> {
        let v = self.inspect(reference)?;
        let dirs: Vec<PathBuf> = v["rootfs"]["lowerdirs"]
            .as_array()
            .ok_or_else(|| format!("inspect {reference}: no rootfs.lowerdirs: {v}"))?
            .iter()
            .filter_map(|d| d.as_str().map(PathBuf::from))
            .collect();
        for d in &dirs {
            ensure!(
                d.starts_with(&self.root) && d.is_dir(),
                "lowerdir {} is not a directory in the store",
                d.display()
            );
        }
        Ok(dirs)
    }

    /// Where `path` is found in the image, resolved as overlayfs would:
    /// component by component, topmost layer first; a whiteout hides a
    /// name and everything below it, an opaque directory hides the layers
    /// under it. `None` when absent. Symlinks are not followed.
    fn lookup(&self, reference: &str, path: &str) -> Result<Option<PathBuf>, String> {
        let dirs = self.lowerdirs(reference)?;
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let mut layers: Vec<&PathBuf> = dirs.iter().collect();
        let mut prefix = PathBuf::new();
        for (i, c) in comps.iter().enumerate() {
            prefix.push(c);
            let last = i + 1 == comps.len();
            let mut next = Vec::new();
            for d in layers {
                let p = d.join(&prefix);
                let Ok(m) = fs::symlink_metadata(&p) else {
                    continue;
                };
                if is_whiteout(&m) {
                    break;
                }
                if last {
                    return Ok(Some(p));
                }
                if !m.is_dir() {
                    return Ok(None);
                }
                next.push(d);
                if is_opaque(&p) {
                    break;
                }
            }
            if next.is_empty() {
                return Ok(None);
            }
            layers = next;
        }
        Ok(None)
    }

    fn check_clean_tmp(&self) -> Check {
        let left: Vec<PathBuf> = fs::read_dir(self.root.join("tmp"))
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        ensure!(left.is_empty(), "leftovers in the store's tmp/: {left:?}");
        Ok(())
    }

    /// Every image and reference an import reports is in `image ls`.
    fn check_listed(&self, report: &Value) -> Check {
        let ls = self.ls()?;
        for img in images(report) {
            let id = img["id"].as_str().unwrap_or_default();
            ensure!(
                ls.iter().any(|r| r["id"] == id),
                "image {id} is not in image ls: {ls:?}"
            );
            for r in refs(img) {
                ensure!(
                    ls.iter()
                        .any(|row| row["id"] == id && row["reference"] == r.as_str()),
                    "reference {r} of {id} is not in image ls: {ls:?}"
                );
            }
        }
        Ok(())
    }
}

fn images(report: &Value) -> Vec<&Value> {
    report["images"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn refs(img: &Value) -> Vec<String> {
    img["refs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn warnings(report: &Value) -> Vec<String> {
    report["warnings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|w| w.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The one image in a report.
fn single(report: &Value) -> Result<&Value, String> {
    let imgs = images(report);
    ensure!(imgs.len() == 1, "expected one image: {report}");
    Ok(imgs[0])
}

/// The image in a report that carries a reference.
fn with_ref<'a>(report: &'a Value, reference: &str) -> Result<&'a Value, String> {
    images(report)
        .into_iter()
        .find(|i| refs(i).iter().any(|r| r == reference))
        .ok_or_else(|| format!("no image tagged {reference}: {report}"))
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

/// Whether a directory carries overlayfs's opaque xattr.
fn is_opaque(p: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    let mut buf = [0u8; 4];
    // SAFETY: both strings are NUL-terminated and live across the call, and
    // the size passed is the buffer's length.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n == 1 && buf[0] == b'y'
}

fn check_whiteout(dir: &Path, path: &str) -> Check {
    let p = dir.join(path);
    let m = fs::symlink_metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    ensure!(
        is_whiteout(&m),
        "{} is not a 0/0 character device (whiteout)",
        p.display()
    );
    Ok(())
}

fn check_file(p: Option<PathBuf>, what: &str) -> Result<PathBuf, String> {
    let p = p.ok_or_else(|| format!("{what} is not in the image"))?;
    let m = fs::symlink_metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    ensure!(
        m.is_file(),
        "{what} ({}) is not a regular file",
        p.display()
    );
    Ok(p)
}

fn mentions(stderr: &str, needles: &[&str]) -> Check {
    for n in needles {
        ensure!(
            stderr.contains(n),
            "message does not mention {n:?}: {stderr}"
        );
    }
    Ok(())
}

/// Read one member of a tar archive on disk.
fn tar_member(archive: &Path, name: &str) -> Result<Vec<u8>, String> {
    let f = fs::File::open(archive).map_err(|e| format!("{}: {e}", archive.display()))?;
    let mut a = tar::Archive::new(f);
    for e in a.entries().map_err(|e| e.to_string())? {
        let mut e = e.map_err(|e| e.to_string())?;
        if e.path_bytes().as_ref() == name.as_bytes() {
            let mut out = Vec::new();
            e.read_to_end(&mut out).map_err(|e| e.to_string())?;
            return Ok(out);
        }
    }
    Err(format!("{name} is not in {}", archive.display()))
}

// ---------------------------------------------------------------------------
// docker-legacy/

fn case_ggcr_test_image_1(c: &Path) -> Check {
    let s = Skiff::new();
    let r = s.import(&c.join("docker-legacy/ggcr-test_image_1.tar"), &[])?;
    let img = single(&r)?;
    ensure!(
        refs(img) == ["docker.io/bazel/v1/tarball:test_image_1"],
        "refs: {img}"
    );
    ensure!(img["layers"] == 1, "layers: {img}");
    check_file(s.lookup("bazel/v1/tarball:test_image_1", "foo")?, "/foo")?;
    check_file(s.lookup("bazel/v1/tarball:test_image_1", "bar")?, "/bar")?;
    Ok(())
}

fn case_ggcr_test_bundle(c: &Path) -> Check {
    let s = Skiff::new();
    let r = s.import(&c.join("docker-legacy/ggcr-test_bundle.tar"), &[])?;
    ensure!(images(&r).len() == 2, "expected two images: {r}");
    let one = with_ref(&r, "docker.io/library/test_image_1:latest")?;
    let two = with_ref(&r, "docker.io/library/test_image_2:latest")?;
    ensure!(one["id"] != two["id"], "both tags on one image: {r}");
    check_file(s.lookup("test_image_1", "foo")?, "test_image_1 /foo")?;
    check_file(s.lookup("test_image_2", "baz")?, "test_image_2 /baz")?;
    ensure!(
        s.lookup("test_image_2", "foo")?.is_none(),
        "test_image_2 has test_image_1's /foo"
    );
    Ok(())
}

fn case_ggcr_test_link(c: &Path) -> Check {
    let s = Skiff::new();
    let r = s.import(&c.join("docker-legacy/ggcr-test_link.tar"), &[])?;
    ensure!(images(&r).len() == 2, "expected two images: {r}");
    let one = with_ref(&r, "docker.io/bazel/v1/tarball:test_image_1")?;
    let three = with_ref(&r, "docker.io/bazel/v1/tarball:test_image_3")?;
    ensure!(one["layers"] == 1 && three["layers"] == 2, "layers: {r}");
    // The symlinked layer.tar is the same layer: one shared snapshot.
    ensure!(
        r["layers_unpacked"] == 2 && r["layers_reused"] == 0,
        "expected 2 distinct layers unpacked: {r}"
    );
    let l1 = s.lowerdirs("bazel/v1/tarball:test_image_1")?;
    let l3 = s.lowerdirs("bazel/v1/tarball:test_image_3")?;
    ensure!(
        l3.last() == l1.last(),
        "the linked layer is not shared: {l1:?} vs {l3:?}"
    );
    check_file(s.lookup("bazel/v1/tarball:test_image_3", "foo")?, "/foo")?;
    check_file(s.lookup("bazel/v1/tarball:test_image_3", "test")?, "/test")?;
    Ok(())
}

fn case_ggcr_whiteout_image(c: &Path) -> Check {
    let s = Skiff::new();
    let r = s.import(&c.join("docker-legacy/ggcr-whiteout_image.tar"), &[])?;
    let img = single(&r)?;
    let name = "docker.io/bazel/pkg/v1/mutate:whiteout_image";
    ensure!(refs(img) == [name], "refs: {img}");
    ensure!(img["layers"] == 3, "layers: {img}");
    let dirs = s.lowerdirs(name)?; // top first
    check_file(Some(dirs[2].join("foo.txt")), "foo.txt in the bottom layer")?;
    check_whiteout(&dirs[1], "foo.txt")?;
    ensure!(
        fs::read_dir(&dirs[0]).map(|d| d.count()).unwrap_or(1) == 0,
        "the empty third layer is not empty"
    );
    ensure!(
        s.lookup(name, "foo.txt")?.is_none(),
        "foo.txt is not whited out"
    );
    check_file(s.lookup(name, "bar.txt")?, "/bar.txt")?;
    Ok(())
}

fn case_ggcr_overwritten_file(c: &Path) -> Check {
    let s = Skiff::new();
    let r = s.import(&c.join("docker-legacy/ggcr-overwritten_file.tar"), &[])?;
    let img = single(&r)?;
    let name = "docker.io/bazel/pkg/v1/mutate:overwritten_file";
    ensure!(refs(img) == [name], "refs: {img}");
    let p = s
        .lookup(name, "foo.txt")?
        .ok_or("foo.txt is not in the image")?;
    let link = fs::read_link(&p).map_err(|e| format!("foo.txt is not a symlink: {e}"))?;
    ensure!(
        link == Path::new("bar.txt"),
        "foo.txt -> {}",
        link.display()
    );
    Ok(())
}

fn case_ggcr_whiteout_dir(c: &Path) -> Check {
    let s = Skiff::new();
    let r = s.import(&c.join("docker-legacy/ggcr-whiteout_dir.tar"), &[])?;
    let img = single(&r)?;
    let name = "localhost:5000/whiteout:latest";
    ensure!(refs(img) == [name], "refs: {img}");
    ensure!(img["layers"] == 4, "layers: {img}");
    let dirs = s.lowerdirs(name)?; // top first: a/baz, .wh.a, b/bar, a/foo
    check_file(Some(dirs[3].join("a/foo")), "a/foo in the bottom layer")?;
    check_whiteout(&dirs[1], "a")?;
    check_file(Some(dirs[0].join("a/baz")), "a/baz in the top layer")?;
    check_file(Some(dirs[2].join("b/bar")), "b/bar")?;
    Ok(())
}

fn case_cimage_almostempty(c: &Path) -> Check {
    let s = Skiff::new();
    let r = s.import(&c.join("docker-legacy/cimage-almostempty.tar"), &[])?;
    let img = single(&r)?;
    ensure!(
        refs(img) == ["docker.io/library/emptyimage:latest"],
        "refs: {img}"
    );
    let p = check_file(s.lookup("emptyimage", "emptyfile")?, "/emptyfile")?;
    ensure!(
        fs::metadata(&p).map(|m| m.len()).ok() == Some(0),
        "emptyfile is not empty"
    );
    Ok(())
}

fn case_dive_docker_image(c: &Path) -> Check {
    let s = Skiff::new();
    let r = s.import(&c.join("docker-legacy/dive-test-docker-image.tar"), &[])?;
    let img = single(&r)?;
    let name = "docker.io/library/dive-test:latest";
    ensure!(refs(img) == [name], "refs: {img}");
    ensure!(img["layers"] == 14, "layers: {img}");
    ensure!(img["platform"] == "linux/amd64", "platform: {img}");
    let v = s.inspect(name)?;
    let cmd = v["config"]["config"]["Cmd"].to_string();
    ensure!(cmd.contains("sh"), "Cmd is {cmd}");
    let dirs = s.lowerdirs(name)?;
    ensure!(dirs.len() == 14, "lowerdirs: {dirs:?}");
    let bottom = &dirs[13];
    // busybox hardlinks: one inode.
    let ino = |p: &str| fs::metadata(bottom.join(p)).map(|m| m.ino()).ok();
    ensure!(
        ino("bin/[").is_some()
            && ino("bin/[") == ino("bin/sh")
            && ino("bin/sh") == ino("bin/busybox"),
        "bin/[, bin/sh and bin/busybox are not one inode"
    );
    check_file(s.lookup(name, "bin/busybox")?, "/bin/busybox")?;
    // A file whiteout (layer 8) and a directory whiteout (layer 10).
    check_whiteout(&dirs[14 - 8], "root/example/somefile3.txt")?;
    check_whiteout(&dirs[14 - 10], "root/example")?;
    ensure!(
        s.lookup(name, "root/example/somefile1.txt")?.is_none(),
        "root/example is not whited out"
    );
    // chmod-only layer: somefile1.txt 0644 in layer 4, 0444 in layer 5.
    let mode = |d: &Path, p: &str| {
        fs::symlink_metadata(d.join(p))
            .map(|m| m.permissions().mode() & 0o7777)
            .ok()
    };
    ensure!(
        mode(&dirs[14 - 4], "root/example/somefile1.txt") == Some(0o644)
            && mode(&dirs[14 - 5], "root/example/somefile1.txt") == Some(0o444),
        "chmod-only layer not kept"
    );
    ensure!(
        mode(&dirs[0], "root/saved.txt") == Some(0o755),
        "top layer's root/saved.txt mode"
    );
    ensure!(mode(bottom, "tmp") == Some(0o1777), "/tmp is not 1777");
    Ok(())
}

fn case_trivy_alpine(c: &Path) -> Check {
    let s = Skiff::new();
    let path = c.join("docker-legacy/trivy-alpine-310.tar.gz");
    let r = s.import(&path, &[])?;
    let img = single(&r)?;
    ensure!(
        refs(img) == ["docker.io/library/alpine:3.10"],
        "refs: {img}"
    );
    ensure!(
        r["format"].as_str().unwrap_or_default().contains("gzip"),
        "format: {r}"
    );
    let busybox = check_file(s.lookup("alpine:3.10", "bin/busybox")?, "/bin/busybox")?;
    let m = fs::metadata(&busybox).map_err(|e| e.to_string())?;
    ensure!(
        m.permissions().mode() & 0o111 != 0,
        "busybox is not executable"
    );
    let sh = s
        .lookup("alpine:3.10", "bin/sh")?
        .ok_or("/bin/sh is missing")?;
    let target = fs::read_link(&sh).map_err(|e| format!("/bin/sh is not a symlink: {e}"))?;
    ensure!(
        target == Path::new("/bin/busybox"),
        "/bin/sh -> {}",
        target.display()
    );
    check_file(
        s.lookup("alpine:3.10", "etc/alpine-release")?,
        "/etc/alpine-release",
    )?;
    let v = s.inspect("alpine:3.10")?;
    ensure!(
        v["config"]["config"]["Cmd"] == serde_json::json!(["/bin/sh"]),
        "Cmd: {}",
        v["config"]["config"]["Cmd"]
    );

    // The same archive from stdin, into another store.
    let s2 = Skiff::new();
    let f = fs::File::open(&path).map_err(|e| e.to_string())?;
    let out = s2
        .command()
        .args(["image", "import", "-", "--json"])
        .stdin(f)
        .output()
        .map_err(|e| e.to_string())?;
    ensure!(
        out.status.success(),
        "import from stdin failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r2: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    ensure!(
        single(&r2)?["id"] == img["id"],
        "stdin import differs: {r2}"
    );
    s2.check_clean_tmp()?;
    Ok(())
}

fn case_ggcr_no_manifest(c: &Path) -> Check {
    let s = Skiff::new();
    let err = s.refused(&c.join("docker-legacy/ggcr-no_manifest.tar"), &[])?;
    mentions(
        &err,
        &["ggcr-no_manifest.tar", "manifest.json", "repositories"],
    )
}

fn case_ggcr_null_manifest(c: &Path) -> Check {
    let s = Skiff::new();
    let err = s.refused(&c.join("docker-legacy/ggcr-null_manifest.tar"), &[])?;
    mentions(&err, &["ggcr-null_manifest.tar", "manifest.json", "null"])
}

// ---------------------------------------------------------------------------
// docker25-oci/

fn case_oras_containerd_store(c: &Path) -> Check {
    let path = c.join("docker25-oci/oras-hello-world-containerd-store.tar");
    // The digests of the manifest list's children, by platform.
    let index: Value =
        serde_json::from_slice(&tar_member(&path, "index.json")?).map_err(|e| e.to_string())?;
    let list_digest = index["manifests"][0]["digest"]
        .as_str()
        .ok_or("no manifest list in index.json")?;
    let list: Value = serde_json::from_slice(&tar_member(
        &path,
        &format!("blobs/sha256/{}", &list_digest[7..]),
    )?)
    .map_err(|e| e.to_string())?;
    let child = |arch: &str| {
        list["manifests"]
            .as_array()
            .and_then(|m| {
                m.iter().find(|d| {
                    d["platform"]["os"] == "linux"
                        && d["platform"]["architecture"] == arch
                        && d["platform"]["variant"].as_str().unwrap_or("v8") == "v8"
                })
            })
            .and_then(|d| d["digest"].as_str().map(String::from))
    };
    let arm64 = child("arm64").ok_or("no linux/arm64 entry in the manifest list")?;

    // The host's platform by default (only linux/amd64 is present).
    let s = Skiff::new();
    if host_arch() == "amd64" {
        let r = s.import(&path, &[])?;
        let img = single(&r)?;
        ensure!(img["platform"] == "linux/amd64", "platform: {img}");
        ensure!(
            refs(img)
                .iter()
                .any(|r| r == "docker.io/library/hello-world:latest"),
            "refs: {img}"
        );
        ensure!(warnings(&r).is_empty(), "warnings: {r}");
        check_file(s.lookup("hello-world", "hello")?, "/hello")?;
    } else {
        let err = s.refused(&path, &[])?;
        mentions(&err, &["missing"])?;
    }

    // Explicitly linux/amd64.
    let s = Skiff::new();
    let r = s.import(&path, &["--platform", "linux/amd64"])?;
    ensure!(single(&r)?["platform"] == "linux/amd64", "platform: {r}");

    // An absent platform: a clear error naming the missing manifest.
    let s = Skiff::new();
    let err = s.refused(&path, &["--platform", "linux/arm64"])?;
    mentions(&err, &[&arm64, "linux/arm64", "missing"])?;

    // A platform the list does not have at all.
    let s = Skiff::new();
    let err = s.refused(&path, &["--platform", "linux/riscv128"])?;
    mentions(&err, &["linux/riscv128", "linux/amd64"])?;
    Ok(())
}

// ---------------------------------------------------------------------------
// oci-archive/

fn case_dive_oci(c: &Path, file: &str) -> Check {
    let path = c.join("oci-archive").join(file);
    let s = Skiff::new();
    let r = s.import(&path, &[])?;
    let img = single(&r)?;
    ensure!(img["platform"] == "linux/arm64", "platform: {img}");
    ensure!(img["layers"] == 1, "layers: {img}");
    let id = img["id"].as_str().unwrap_or_default().to_string();
    let w = warnings(&r);
    ensure!(
        w.iter()
            .any(|w| w.contains("linux/arm64") && w.contains(&id)),
        "no platform warning naming the image: {w:?}"
    );
    let readme = check_file(s.lookup(&id, "README.md")?, "/README.md")?;
    let len = fs::metadata(&readme).map(|m| m.len()).unwrap_or(0);
    ensure!(len == 11189, "README.md is {len} bytes");

    // Asking for the archive's own platform: no warning.
    let s = Skiff::new();
    let r = s.import(&path, &["--platform", "linux/arm64"])?;
    ensure!(
        !warnings(&r).iter().any(|w| w.contains("linux/arm64")),
        "platform warning although asked for: {r}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// oci-layout/

fn layout_refs(s: &Skiff, r: &Value, name: &str, tags: &[&str]) -> Check {
    let img = single(r)?;
    let mut got = refs(img);
    got.sort();
    let want: Vec<String> = tags
        .iter()
        .map(|t| format!("docker.io/library/{name}:{t}"))
        .collect();
    ensure!(got == want, "refs {got:?}, expected {want:?}");
    check_file(s.lookup(&want[0], "foo")?, "/foo")?;
    Ok(())
}

fn case_ggcr_test_index(c: &Path) -> Check {
    let s = Skiff::new();
    let r = s.import(&c.join("oci-layout/ggcr-test_index"), &[])?;
    layout_refs(&s, &r, "ggcr-test_index", &["1", "3", "4"])?;
    let w = warnings(&r);
    ensure!(
        w.iter()
            .any(|w| w.contains("skipped") && w.contains("application/vnd.oci.descriptor.v1+json")),
        "the \"other\" entry was not reported as skipped: {w:?}"
    );
    Ok(())
}

fn case_ggcr_test_gc_index(c: &Path) -> Check {
    let s = Skiff::new();
    let r = s.import(&c.join("oci-layout/ggcr-test_gc_index"), &[])?;
    layout_refs(&s, &r, "ggcr-test_gc_index", &["1", "3", "4"])?;
    ensure!(
        r["layers_unpacked"] == 1,
        "shared image unpacked twice: {r}"
    );
    Ok(())
}

fn case_ggcr_test_index_one_image(c: &Path) -> Check {
    let s = Skiff::new();
    let r = s.import(&c.join("oci-layout/ggcr-test_index_one_image"), &[])?;
    let img = single(&r)?;
    ensure!(img["platform"] == "linux/amd64", "platform: {img}");
    let id = img["id"].as_str().unwrap_or_default().to_string();
    ensure!(s.lowerdirs(&id)?.len() == 1, "expected one layer");
    Ok(())
}

fn case_ggcr_test_index_media_type(c: &Path) -> Check {
    let s = Skiff::new();
    let r = s.import(&c.join("oci-layout/ggcr-test_index_media_type"), &[])?;
    let img = single(&r)?;
    let id = img["id"].as_str().unwrap_or_default().to_string();
    let v = s.inspect(&id)?;
    ensure!(
        v["layers"][0]["media_type"] == "application/tar+gzip",
        "layer media type: {}",
        v["layers"]
    );
    check_file(s.lookup(&id, "foo")?, "/foo")?;
    Ok(())
}

fn case_trivy_test(c: &Path) -> Check {
    let s = Skiff::new();
    let r = s.import(&c.join("oci-layout/trivy-test.oci"), &[])?;
    let img = single(&r)?;
    ensure!(refs(img).is_empty(), "refs without ref.name: {img}");
    let id = img["id"].as_str().unwrap_or_default().to_string();
    check_file(s.lookup(&id, "hello")?, "/hello")?;
    Ok(())
}

fn case_trivy_test_image_tag(c: &Path) -> Check {
    let s = Skiff::new();
    let r = s.import(&c.join("oci-layout/trivy-test_image_tag.oci"), &[])?;
    let img = single(&r)?;
    ensure!(
        refs(img) == ["docker.io/library/trivy-test_image_tag:0.0.1"],
        "refs: {img}"
    );
    check_file(s.lookup("trivy-test_image_tag:0.0.1", "hello")?, "/hello")?;
    Ok(())
}

fn case_trivy_bad_index_json(c: &Path) -> Check {
    let s = Skiff::new();
    let err = s.refused(&c.join("oci-layout/trivy-neg-bad_index_json.oci"), &[])?;
    mentions(&err, &["index.json", "not valid"])
}

fn case_trivy_no_valid_manifests(c: &Path) -> Check {
    let s = Skiff::new();
    let err = s.refused(&c.join("oci-layout/trivy-neg-no_valid_manifests.oci"), &[])?;
    mentions(
        &err,
        &[
            "trivy-neg-no_valid_manifests.oci",
            "index.json",
            "manifests",
        ],
    )
}

fn case_regclient_external(c: &Path) -> Check {
    let s = Skiff::new();
    let err = s.refused(&c.join("oci-layout/regclient-external"), &[])?;
    mentions(
        &err,
        &["regclient-external", "no runnable image", "artifact"],
    )
}

// ---------------------------------------------------------------------------

/// Every case, all imported into one store: `image ls` lists them all.
fn case_all_in_one_store(c: &Path) -> Check {
    let s = Skiff::new();
    let mut want_refs = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for rel in POSITIVE {
        let r = s.import(&c.join(rel), &[])?;
        for img in images(&r) {
            ids.insert(img["id"].as_str().unwrap_or_default().to_string());
            want_refs.extend(refs(img));
        }
    }
    let ls = s.ls()?;
    let listed: std::collections::HashSet<String> = ls
        .iter()
        .filter_map(|r| r["id"].as_str().map(String::from))
        .collect();
    ensure!(listed == ids, "image ls ids {listed:?} != imported {ids:?}");
    for r in &want_refs {
        ensure!(
            ls.iter().any(|row| row["reference"] == r.as_str()),
            "{r} is not listed"
        );
    }
    // Importing everything again writes no layer data.
    for rel in POSITIVE {
        let r = s.import(&c.join(rel), &[])?;
        ensure!(r["layers_unpacked"] == 0, "{rel} unpacked again: {r}");
    }
    Ok(())
}

const POSITIVE: &[&str] = &[
    "docker-legacy/ggcr-test_image_1.tar",
    "docker-legacy/ggcr-test_bundle.tar",
    "docker-legacy/ggcr-test_link.tar",
    "docker-legacy/ggcr-whiteout_image.tar",
    "docker-legacy/ggcr-overwritten_file.tar",
    "docker-legacy/ggcr-whiteout_dir.tar",
    "docker-legacy/cimage-almostempty.tar",
    "docker-legacy/dive-test-docker-image.tar",
    "docker-legacy/trivy-alpine-310.tar.gz",
    "docker25-oci/oras-hello-world-containerd-store.tar",
    "oci-archive/dive-test-oci-gzip-image.tar",
    "oci-archive/dive-test-oci-zstd-image.tar",
    "oci-archive/dive-test-oci-uncompressed-image.tar",
    "oci-archive/dive-test-oci-estargz-image.tar",
    "oci-layout/ggcr-test_index",
    "oci-layout/ggcr-test_gc_index",
    "oci-layout/ggcr-test_index_one_image",
    "oci-layout/ggcr-test_index_media_type",
    "oci-layout/trivy-test.oci",
    "oci-layout/trivy-test_image_tag.oci",
];

#[test]
fn test_image_corpus() {
    let Some(corpus) = std::env::var_os("SKIFF_IMAGE_CORPUS") else {
        say(
            "SKIPPED test_image_corpus: SKIFF_IMAGE_CORPUS is not set. Point it at the \
             external image corpus (e.g. SKIFF_IMAGE_CORPUS=../shared/image-corpus) to \
             import its positive cases and check its negative cases are refused.",
        );
        return;
    };
    let c = PathBuf::from(corpus);
    assert!(
        c.join("README.md").is_file(),
        "SKIFF_IMAGE_CORPUS={} holds no README.md: not the image corpus",
        c.display()
    );
    if !prerequisite(
        is_root(),
        "root for test_image_corpus (imports keep owners and create whiteout devices)",
    ) {
        return;
    }
    let cases: &[Case] = &[
        (
            "docker-legacy/ggcr-test_image_1.tar",
            &case_ggcr_test_image_1,
        ),
        ("docker-legacy/ggcr-test_bundle.tar", &case_ggcr_test_bundle),
        ("docker-legacy/ggcr-test_link.tar", &case_ggcr_test_link),
        (
            "docker-legacy/ggcr-whiteout_image.tar",
            &case_ggcr_whiteout_image,
        ),
        (
            "docker-legacy/ggcr-overwritten_file.tar",
            &case_ggcr_overwritten_file,
        ),
        (
            "docker-legacy/ggcr-whiteout_dir.tar",
            &case_ggcr_whiteout_dir,
        ),
        (
            "docker-legacy/cimage-almostempty.tar",
            &case_cimage_almostempty,
        ),
        (
            "docker-legacy/dive-test-docker-image.tar",
            &case_dive_docker_image,
        ),
        ("docker-legacy/trivy-alpine-310.tar.gz", &case_trivy_alpine),
        ("docker-legacy/ggcr-no_manifest.tar", &case_ggcr_no_manifest),
        (
            "docker-legacy/ggcr-null_manifest.tar",
            &case_ggcr_null_manifest,
        ),
        (
            "docker25-oci/oras-hello-world-containerd-store.tar",
            &case_oras_containerd_store,
        ),
        ("oci-archive/dive-test-oci-gzip-image.tar", &|c| {
            case_dive_oci(c, "dive-test-oci-gzip-image.tar")
        }),
        ("oci-archive/dive-test-oci-zstd-image.tar", &|c| {
            case_dive_oci(c, "dive-test-oci-zstd-image.tar")
        }),
        ("oci-archive/dive-test-oci-uncompressed-image.tar", &|c| {
            case_dive_oci(c, "dive-test-oci-uncompressed-image.tar")
        }),
        ("oci-archive/dive-test-oci-estargz-image.tar", &|c| {
            case_dive_oci(c, "dive-test-oci-estargz-image.tar")
        }),
        ("oci-layout/ggcr-test_index", &case_ggcr_test_index),
        ("oci-layout/ggcr-test_gc_index", &case_ggcr_test_gc_index),
        (
            "oci-layout/ggcr-test_index_one_image",
            &case_ggcr_test_index_one_image,
        ),
        (
            "oci-layout/ggcr-test_index_media_type",
            &case_ggcr_test_index_media_type,
        ),
        ("oci-layout/trivy-test.oci", &case_trivy_test),
        (
            "oci-layout/trivy-test_image_tag.oci",
            &case_trivy_test_image_tag,
        ),
        (
            "oci-layout/trivy-neg-bad_index_json.oci",
            &case_trivy_bad_index_json,
        ),
        (
            "oci-layout/trivy-neg-no_valid_manifests.oci",
            &case_trivy_no_valid_manifests,
        ),
        ("oci-layout/regclient-external", &case_regclient_external),
        ("all positive cases in one store", &case_all_in_one_store),
    ];
    let mut failures = Vec::new();
    for (name, case) in cases {
        match case(&c) {
            Ok(()) => println!("ok    {name}"),
            Err(e) => {
                println!("FAIL  {name}: {e}");
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    // Every file in the corpus is covered by a case above.
    for dir in ["docker-legacy", "docker25-oci", "oci-archive", "oci-layout"] {
        for e in fs::read_dir(c.join(dir)).expect("list corpus") {
            let rel = format!(
                "{dir}/{}",
                e.expect("list corpus").file_name().to_string_lossy()
            );
            if !cases.iter().any(|(n, _)| *n == rel) {
                failures.push(format!("{rel}: no test case covers this corpus entry"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} corpus case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
