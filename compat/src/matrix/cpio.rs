//! A minimal `cpio -H newc` writer: what the kernel unpacks as an initramfs.
//!
//! Entries are written in the order given; directories must come before
//! their contents. Every entry is owned by root; modes are given by the caller.

use std::io::{self, Write};

/// One archive entry.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A directory.
    Dir { path: String, mode: u32 },
    /// A regular file with its contents.
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    /// A symbolic link.
    Symlink { path: String, target: String },
    /// A character device node.
    CharDev {
        path: String,
        mode: u32,
        major: u32,
        minor: u32,
    },
}

impl Entry {
    fn path(&self) -> &str {
        match self {
            Entry::Dir { path, .. }
            | Entry::File { path, .. }
            | Entry::Symlink { path, .. }
            | Entry::CharDev { path, .. } => path,
        }
    }
}

fn pad4(w: &mut impl Write, len: usize) -> io::Result<()> {
    let pad = (4 - len % 4) % 4;
    w.write_all(&[0u8; 3][..pad])
}

#[allow(clippy::too_many_arguments)]
fn header(
    w: &mut impl Write,
    ino: u32,
    mode: u32,
    nlink: u32,
    filesize: usize,
    rdev: (u32, u32),
    name: &str,
) -> io::Result<()> {
    // The name is stored without its leading '/', NUL-terminated.
    let name = name.trim_start_matches('/');
    let namesize = name.len() + 1;
    write!(
        w,
        "070701{ino:08X}{mode:08X}{uid:08X}{gid:08X}{nlink:08X}{mtime:08X}{filesize:08X}\
         {devmajor:08X}{devminor:08X}{rmajor:08X}{rminor:08X}{namesize:08X}{check:08X}",
        uid = 0,
        gid = 0,
        mtime = 0,
        devmajor = 0,
        devminor = 0,
        rmajor = rdev.0,
        rminor = rdev.1,
        check = 0,
    )?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    pad4(w, 110 + namesize)
}

/// Write `entries` and the trailer.
pub fn write(w: &mut impl Write, entries: &[Entry]) -> io::Result<()> {
    for (i, e) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        match e {
            Entry::Dir { path, mode } => {
                header(w, ino, libc::S_IFDIR | mode, 2, 0, (0, 0), path)?;
            }
            Entry::File { path, mode, data } => {
                header(w, ino, libc::S_IFREG | mode, 1, data.len(), (0, 0), path)?;
                w.write_all(data)?;
                pad4(w, data.len())?;
            }
            Entry::Symlink { path, target } => {
                header(w, ino, libc::S_IFLNK | 0o777, 1, target.len(), (0, 0), path)?;
                w.write_all(target.as_bytes())?;
                pad4(w, target.len())?;
            }
            Entry::CharDev {
                path,
                mode,
                major,
                minor,
            } => {
                header(w, ino, libc::S_IFCHR | mode, 1, 0, (*major, *minor), path)?;
            }
        }
        debug_assert!(!e.path().is_empty());
    }
    header(w, 0, 0, 1, 0, (0, 0), "TRAILER!!!")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cpio_newc_layout() {
        let mut buf = Vec::new();
        write(
            &mut buf,
            &[
                Entry::Dir {
                    path: "/bin".into(),
                    mode: 0o755,
                },
                Entry::File {
                    path: "/bin/x".into(),
                    mode: 0o755,
                    data: b"hello".to_vec(),
                },
            ],
        )
        .expect("write");
        // Every header starts on a 4-byte boundary with the newc magic.
        assert!(buf.starts_with(b"070701"));
        let s = String::from_utf8_lossy(&buf);
        assert!(s.contains("bin\0"));
        let file_hdr = s
            .find("070701")
            .and_then(|_| s[6..].find("070701"))
            .expect("2nd")
            + 6;
        assert_eq!(file_hdr % 4, 0);
        // filesize field of the file entry: offset 6 + 6*8.
        assert_eq!(&s[file_hdr + 54..file_hdr + 62], "00000005");
        assert!(s.contains("hello"));
        assert!(s.contains("TRAILER!!!\0"));
        assert_eq!(buf.len() % 4, 0);
    }

    #[test]
    fn test_cpio_readable_by_cpio_tool() {
        if std::process::Command::new("cpio")
            .arg("--version")
            .output()
            .is_err()
        {
            return;
        }
        let dir = tempfile::tempdir().expect("tmp");
        let arch = dir.path().join("a.cpio");
        let mut f = std::fs::File::create(&arch).expect("create");
        write(
            &mut f,
            &[
                Entry::Dir {
                    path: "d".into(),
                    mode: 0o755,
                },
                Entry::File {
                    path: "d/f".into(),
                    mode: 0o644,
                    data: b"abc".to_vec(),
                },
                Entry::Symlink {
                    path: "d/l".into(),
                    target: "f".into(),
                },
            ],
        )
        .expect("write");
        drop(f);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "cd {} && cpio -idm < a.cpio 2>&1 && cat d/l",
                dir.path().display()
            ))
            .output()
            .expect("cpio");
        assert!(
            String::from_utf8_lossy(&out.stdout).ends_with("abc"),
            "{out:?}"
        );
    }
}
