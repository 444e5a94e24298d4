//! Debian kernels for the matrix's virtual machines: found with apt,
//! downloaded once into a cache, unpacked, and turned into what QEMU boots
//! fast (an uncompressed `vmlinux`) plus the modules skiff needs.
//!
//! Cache layout (`/var/cache/skiff/kernels` by default):
//!
//! ```text
//! <package>/            e.g. linux-image-6.1.0-56-amd64
//!   <package>_<ver>.deb the package as apt downloaded it
//!   tree/               dpkg-deb -x of it
//!   vmlinux             the kernel, decompressed from tree/boot/vmlinuz-*
//!   release             the kernel release (e.g. 6.1.0-56-amd64)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::MatrixError;

/// The default kernel cache.
pub const DEFAULT_CACHE: &str = "/var/cache/skiff/kernels";

/// A kernel ready to boot.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The Debian package.
    pub package: String,
    /// The kernel release (`uname -r` in the guest).
    pub release: String,
    /// The uncompressed kernel image.
    pub vmlinux: PathBuf,
    /// `lib/modules/<release>` in the unpacked package.
    pub modules: PathBuf,
}

fn run(cmd: &mut Command, what: &str) -> Result<Vec<u8>, MatrixError> {
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| MatrixError::Tool {
            tool: what.to_string(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(MatrixError::Tool {
            tool: what.to_string(),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(out.stdout)
}

/// The `linux-image-…` packages that Debian's `linux-image-amd64`
/// metapackage points at, per version, from `apt-cache show` text.
pub fn packages_from_apt_show(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for para in text.split("\n\n") {
        let mut version = None;
        let mut dep = None;
        for l in para.lines() {
            if let Some(v) = l.strip_prefix("Version: ") {
                version = Some(v.trim().to_string());
            }
            if let Some(d) = l.strip_prefix("Depends: ") {
                dep = d
                    .split(',')
                    .map(|s| s.trim().split(' ').next().unwrap_or(""))
                    .find(|p| p.starts_with("linux-image-"))
                    .map(str::to_string);
            }
        }
        if let (Some(v), Some(d)) = (version, dep) {
            out.push((v, d));
        }
    }
    out
}

fn dpkg_newer(a: &str, b: &str) -> bool {
    Command::new("dpkg")
        .args(["--compare-versions", a, "gt", b])
        .status()
        .is_ok_and(|s| s.success())
}

/// The newest package of a series (`6.1`, `6.12`) that apt knows.
pub fn resolve_package(series: &str) -> Result<String, MatrixError> {
    let text = run(
        Command::new("apt-cache").args(["show", "linux-image-amd64"]),
        "apt-cache show linux-image-amd64",
    )?;
    let prefix = format!("linux-image-{series}.");
    let mut best: Option<(String, String)> = None;
    for (v, p) in packages_from_apt_show(&String::from_utf8_lossy(&text)) {
        if !p.starts_with(&prefix) {
            continue;
        }
        if best.as_ref().is_none_or(|(bv, _)| dpkg_newer(&v, bv)) {
            best = Some((v, p));
        }
    }
    best.map(|(_, p)| p).ok_or_else(|| MatrixError::KernelNotFound {
        series: series.to_string(),
        detail: "apt-cache show linux-image-amd64 lists no such kernel (for 6.12, bookworm-backports must be in apt's sources; then apt-get update)".into(),
    })
}

/// A cached package of this series, newest name first (when apt cannot say).
fn cached_package(cache: &Path, series: &str) -> Option<String> {
    let prefix = format!("linux-image-{series}.");
    let mut names: Vec<String> = fs::read_dir(cache)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix) && cache.join(n).join("release").exists())
        .collect();
    names.sort();
    names.pop()
}

/// Find (in the cache, or with apt) and prepare the newest kernel of
/// `series`. Progress goes to `log`.
pub fn prepare(cache: &Path, series: &str, log: &mut dyn Write) -> Result<Kernel, MatrixError> {
    let package = match resolve_package(series) {
        Ok(p) => p,
        Err(e) => match cached_package(cache, series) {
            Some(p) => {
                let _ = writeln!(log, "apt cannot resolve {series} ({e}); using cached {p}");
                p
            }
            None => return Err(e),
        },
    };
    let dir = cache.join(&package);
    let io = |op: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| MatrixError::Io {
            op,
            path: p,
            source: e,
        }
    };
    if let (Ok(release), true) = (
        fs::read_to_string(dir.join("release")),
        dir.join("vmlinux").exists(),
    ) {
        let release = release.trim().to_string();
        return Ok(Kernel {
            modules: dir.join("tree/lib/modules").join(&release),
            vmlinux: dir.join("vmlinux"),
            package,
            release,
        });
    }
    fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    let has_deb = |d: &Path| -> Option<PathBuf> {
        fs::read_dir(d)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
    };
    let deb = match has_deb(&dir) {
        Some(d) => d,
        None => {
            let _ = writeln!(log, "downloading {package} with apt-get download");
            run(
                Command::new("apt-get")
                    .args(["download", "-q", &package])
                    .current_dir(&dir),
                "apt-get download",
            )?;
            has_deb(&dir).ok_or_else(|| MatrixError::Tool {
                tool: "apt-get download".into(),
                detail: format!("no .deb appeared in {}", dir.display()),
            })?
        }
    };
    let tree = dir.join("tree");
    if tree.exists() {
        fs::remove_dir_all(&tree).map_err(io("remove", &tree))?;
    }
    run(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree),
        "dpkg-deb -x",
    )?;
    let boot = tree.join("boot");
    let vmlinuz = fs::read_dir(&boot)
        .map_err(io("read", &boot))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or_else(|| MatrixError::Tool {
            tool: "dpkg-deb -x".into(),
            detail: format!("no boot/vmlinuz-* in {package}"),
        })?;
    let release = vmlinuz
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .trim_start_matches("vmlinuz-")
                .to_string()
        })
        .unwrap_or_default();
    let image = fs::read(&vmlinuz).map_err(io("read", &vmlinuz))?;
    let elf = extract_vmlinux(&image).ok_or_else(|| MatrixError::Tool {
        tool: "vmlinux extraction".into(),
        detail: format!(
            "no xz, zstd or gzip payload in {} decompresses to an ELF",
            vmlinuz.display()
        ),
    })?;
    let vmlinux = dir.join("vmlinux");
    fs::write(&vmlinux, elf).map_err(io("write", &vmlinux))?;
    fs::write(dir.join("release"), &release).map_err(io("write", &dir))?;
    let _ = writeln!(log, "prepared {package} ({release})");
    Ok(Kernel {
        modules: tree.join("lib/modules").join(&release),
        vmlinux,
        package,
        release,
    })
}

/// Decompress the kernel inside a bzImage: try each compressed payload
/// (xz, zstd, gzip) until one decompresses to an ELF, as the kernel's
/// `scripts/extract-vmlinux` does.
pub fn extract_vmlinux(bzimage: &[u8]) -> Option<Vec<u8>> {
    const FORMATS: &[(&[u8], &str)] = &[
        (b"\xfd7zXZ\x00", "xz"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"\x1f\x8b\x08", "gzip"),
    ];
    for (magic, tool) in FORMATS {
        let mut from = 0;
        while let Some(off) = find(&bzimage[from..], magic).map(|o| o + from) {
            if let Some(out) = decompress(tool, &bzimage[off..]) {
                if out.starts_with(b"\x7fELF") {
                    return Some(out);
                }
            }
            from = off + 1;
        }
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Run `tool -dc` on `data`; trailing garbage makes it fail, so any output
/// is returned whatever its status.
pub fn decompress(tool: &str, data: &[u8]) -> Option<Vec<u8>> {
    let mut child = Command::new(tool)
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let data = data.to_vec();
    // A thread feeds stdin while we read stdout (no deadlock on big pipes).
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().ok()?;
    let _ = feeder.join();
    (!out.stdout.is_empty()).then_some(out.stdout)
}

/// The `depends=` of a module file (`.ko`, or already decompressed bytes).
pub fn module_depends(ko: &[u8]) -> Vec<String> {
    let Some(pos) = find(ko, b"depends=") else {
        return Vec::new();
    };
    let rest = &ko[pos + 8..];
    let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn module_name(p: &Path) -> Option<String> {
    let n = p.file_name()?.to_string_lossy().into_owned();
    let stem = n.split(".ko").next()?.to_string();
    (n.contains(".ko")).then(|| stem.replace('-', "_"))
}

fn walk(dir: &Path, out: &mut BTreeMap<String, PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.filter_map(|e| e.ok()) {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if let Some(n) = module_name(&p) {
            out.insert(n, p);
        }
    }
}

/// Read a module file, decompressing `.ko.xz` and `.ko.zst`.
pub fn read_module(p: &Path) -> Option<Vec<u8>> {
    let data = fs::read(p).ok()?;
    let name = p.to_string_lossy();
    if name.ends_with(".xz") {
        decompress("xz", &data)
    } else if name.ends_with(".zst") {
        decompress("zstd", &data)
    } else {
        Some(data)
    }
}

/// The modules `wanted` and their dependencies, dependencies first, each
/// as (name, decompressed bytes). Modules built into the kernel are not
/// in the tree and are skipped.
pub fn modules_with_deps(
    modules_dir: &Path,
    wanted: &[&str],
) -> Result<Vec<(String, Vec<u8>)>, MatrixError> {
    let mut index = BTreeMap::new();
    walk(&modules_dir.join("kernel"), &mut index);
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    fn visit(
        name: &str,
        index: &BTreeMap<String, PathBuf>,
        done: &mut BTreeSet<String>,
        out: &mut Vec<(String, Vec<u8>)>,
        depth: u32,
    ) -> Result<(), MatrixError> {
        let name = name.replace('-', "_");
        if done.contains(&name) || depth > 32 {
            return Ok(());
        }
        done.insert(name.clone());
        let Some(path) = index.get(&name) else {
            return Ok(()); // built in
        };
        let data = read_module(path).ok_or_else(|| MatrixError::Tool {
            tool: "module decompression".into(),
            detail: format!("cannot read {}", path.display()),
        })?;
        for dep in module_depends(&data) {
            visit(&dep, index, done, out, depth + 1)?;
        }
        out.push((name, data));
        Ok(())
    }
    for w in wanted {
        visit(w, &index, &mut done, &mut out, 0)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_packages_from_apt_show() {
        let text = "Package: linux-image-amd64\nVersion: 6.12.95-1~bpo12+1\nDepends: linux-image-6.12.95+deb12-amd64 (= 6.12.95-1~bpo12+1)\n\n\
                    Package: linux-image-amd64\nVersion: 6.1.192-2\nDepends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)\n";
        let p = packages_from_apt_show(text);
        assert_eq!(
            p,
            vec![
                (
                    "6.12.95-1~bpo12+1".to_string(),
                    "linux-image-6.12.95+deb12-amd64".to_string()
                ),
                (
                    "6.1.192-2".to_string(),
                    "linux-image-6.1.0-56-amd64".to_string()
                ),
            ]
        );
        // "6.1." does not match 6.12's package.
        assert!(!p[0].1.starts_with("linux-image-6.1."));
    }

    #[test]
    fn test_module_depends_and_name() {
        let ko = b"\x7fELF....license=GPL\0depends=netfs,fscache\0name=9p\0";
        assert_eq!(module_depends(ko), vec!["netfs", "fscache"]);
        assert!(module_depends(b"depends=\0").is_empty());
        assert_eq!(
            module_name(Path::new("/x/overlay.ko.xz")),
            Some("overlay".into())
        );
        assert_eq!(
            module_name(Path::new("/x/9pnet-virtio.ko")),
            Some("9pnet_virtio".into())
        );
        assert_eq!(module_name(Path::new("/x/README")), None);
    }

    #[test]
    fn test_extract_vmlinux_from_xz_payload() {
        if Command::new("xz").arg("--version").output().is_err() {
            return;
        }
        let mut elf = b"\x7fELF".to_vec();
        elf.extend(std::iter::repeat_n(7u8, 5000));
        let mut xz = Command::new("xz")
            .args(["-c", "--check=crc32"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("xz");
        xz.stdin
            .take()
            .expect("stdin")
            .write_all(&elf)
            .expect("write");
        let packed = xz.wait_with_output().expect("xz").stdout;
        let mut image = b"MZ header bytes, setup code".to_vec();
        image.extend(&packed);
        image.extend(b"trailing garbage");
        assert_eq!(extract_vmlinux(&image), Some(elf));
    }
}
