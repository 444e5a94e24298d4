//! The guest's initramfs, built by skiff: the skiff binary (debug info
//! stripped) and the runtime binaries with the shared libraries `ldd`
//! names, a static busybox, the vendored images, the kernel modules skiff
//! needs (dependencies first), and `/init`.
//!
//! `/init` is a busybox script: the initramfs root cannot be `pivot_root`ed
//! away from, so it copies itself into a tmpfs and `switch_root`s there,
//! into `skiff matrix-guest` ([`super::guest`]) as pid 1.

use std::collections::BTreeSet;
use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::cpio::{self, Entry};
use super::MatrixError;

/// The init script.
pub const INIT: &str = r#"#!/bin/busybox sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t devtmpfs dev /dev 2>/dev/null
$B mkdir -p /newroot
$B mount -t tmpfs -o mode=0755 tmpfs /newroot
for d in bin lib lib64 usr etc images modules; do
  [ -e /$d ] && $B cp -a /$d /newroot/
done
$B mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/tmp /newroot/run /newroot/var/lib
$B umount /dev 2>/dev/null
$B umount /proc
exec $B switch_root /newroot /bin/skiff matrix-guest
"#;

/// What goes in.
#[derive(Debug, Clone)]
pub struct Contents {
    /// The skiff binary (already stripped: [`copy_stripped`]).
    pub skiff: PathBuf,
    /// Other binaries (OCI runtimes), installed as `/bin/<name>`.
    pub binaries: Vec<PathBuf>,
    /// A static busybox.
    pub busybox: PathBuf,
    /// Image archives, installed in `/images`.
    pub images: Vec<PathBuf>,
    /// Kernel modules (name, bytes), loaded in this order, in `/modules`.
    pub modules: Vec<(String, Vec<u8>)>,
}

/// The shared libraries `ldd` names for `bin` (with the loader).
pub fn shared_libs(bin: &Path) -> Result<Vec<PathBuf>, MatrixError> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .map_err(|e| MatrixError::Tool {
            tool: "ldd".into(),
            detail: e.to_string(),
        })?;
    Ok(parse_ldd(&String::from_utf8_lossy(&out.stdout)))
}

/// Library paths from `ldd` output.
pub fn parse_ldd(text: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for l in text.lines() {
        let l = l.trim();
        let path = match l.split_once("=>") {
            Some((_, r)) => r.trim().split(' ').next().unwrap_or(""),
            None => l.split(' ').next().unwrap_or(""),
        };
        if path.starts_with('/') {
            out.push(PathBuf::from(path));
        }
    }
    out
}

struct Builder {
    dirs: BTreeSet<String>,
    entries: Vec<Entry>,
}

impl Builder {
    fn dir(&mut self, path: &str) {
        let mut cur = String::new();
        for comp in path.trim_matches('/').split('/').filter(|c| !c.is_empty()) {
            cur.push('/');
            cur.push_str(comp);
            if self.dirs.insert(cur.clone()) {
                self.entries.push(Entry::Dir {
                    path: cur.clone(),
                    mode: 0o755,
                });
            }
        }
    }

    fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) {
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.entries.push(Entry::File {
            path: path.to_string(),
            mode,
            data,
        });
    }

    fn symlink(&mut self, path: &str, target: &str) {
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.entries.push(Entry::Symlink {
            path: path.to_string(),
            target: target.to_string(),
        });
    }
}

fn read(p: &Path) -> Result<Vec<u8>, MatrixError> {
    fs::read(p).map_err(|e| MatrixError::Io {
        op: "read",
        path: p.to_path_buf(),
        source: e,
    })
}

/// Copy `bin` to `to` without debug info (`strip --strip-debug`), or as
/// is when `strip` is missing.
pub fn copy_stripped(bin: &Path, to: &Path) -> Result<(), MatrixError> {
    let ok = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(to)
        .arg(bin)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        fs::copy(bin, to).map_err(|e| MatrixError::Io {
            op: "copy",
            path: bin.to_path_buf(),
            source: e,
        })?;
    }
    Ok(())
}

/// Write the initramfs for `c` to `out`.
pub fn build(c: &Contents, out: &Path) -> Result<(), MatrixError> {
    let mut b = Builder {
        dirs: BTreeSet::new(),
        entries: Vec::new(),
    };
    for d in [
        "/dev", "/proc", "/sys", "/tmp", "/etc", "/images", "/modules",
    ] {
        b.dir(d);
    }
    b.entries.push(Entry::CharDev {
        path: "/dev/console".into(),
        mode: 0o600,
        major: 5,
        minor: 1,
    });
    b.file("/init", 0o755, INIT.as_bytes().to_vec());
    b.file("/bin/busybox", 0o755, read(&c.busybox)?);
    b.symlink("/bin/sh", "busybox");
    b.file("/bin/skiff", 0o755, read(&c.skiff)?);
    let mut libs = BTreeSet::new();
    for bin in std::iter::once(&c.skiff).chain(c.binaries.iter()) {
        libs.extend(shared_libs(bin)?);
    }
    for bin in &c.binaries {
        let name = bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        b.file(&format!("/bin/{name}"), 0o755, read(bin)?);
    }
    for lib in &libs {
        // Follow symlinks: the library's real bytes under the name ldd gives.
        b.file(&lib.to_string_lossy(), 0o755, read(lib)?);
    }
    for img in &c.images {
        let name = img
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        b.file(&format!("/images/{name}"), 0o644, read(img)?);
    }
    let mut order = String::new();
    for (i, (name, data)) in c.modules.iter().enumerate() {
        let file = format!("{i:02}-{name}.ko");
        b.file(&format!("/modules/{file}"), 0o644, data.clone());
        order.push_str(&file);
        order.push('\n');
    }
    b.file("/modules/order", 0o644, order.into_bytes());
    b.file(
        "/etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
    );
    b.file("/etc/group", 0o644, b"root:x:0:\n".to_vec());
    let f = fs::File::create(out).map_err(|e| MatrixError::Io {
        op: "create",
        path: out.to_path_buf(),
        source: e,
    })?;
    let mut w = BufWriter::new(f);
    cpio::write(&mut w, &b.entries)
        .and_then(|()| std::io::Write::flush(&mut w))
        .map_err(|e| MatrixError::Io {
            op: "write",
            path: out.to_path_buf(),
            source: e,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_ldd() {
        let text = "\tlinux-vdso.so.1 (0x00007f)\n\tlibseccomp.so.2 => /lib/x86_64-linux-gnu/libseccomp.so.2 (0x7f)\n\t/lib64/ld-linux-x86-64.so.2 (0x7f)\n\tnot a dynamic executable\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libseccomp.so.2"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
    }

    #[test]
    fn test_builder_makes_parents_once() {
        let mut b = Builder {
            dirs: BTreeSet::new(),
            entries: Vec::new(),
        };
        b.file("/a/b/c", 0o644, Vec::new());
        b.file("/a/b/d", 0o644, Vec::new());
        let dirs: Vec<_> = b
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Dir { path, .. } => Some(path.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(dirs, vec!["/a", "/a/b"]);
    }
}
