//! The tree a snapshot unpacked to, recorded at import for layers whose
//! blob is not kept (plain layers: the snapshot holds the same bytes), so
//! that `verify` can still check the snapshot: `meta/snapshots/<chain>.tree`,
//! one line per path, `KIND SIZE PATH` (D, F, L, P or W for directory,
//! regular file, symlink, fifo, whiteout; the path's bytes outside `!`–`~`
//! and `%` written `%XX`).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use std::collections::BTreeMap;

/// What one path of a snapshot must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    Dir,
    File(u64),
    Symlink,
    Fifo,
    Whiteout,
}

/// A snapshot's paths (components) and what each must be.
pub(crate) type Tree = BTreeMap<Vec<OsString>, Expect>;

/// The tree of `dir` as the applier left it; a symlink is never followed.
pub(crate) fn of_dir(dir: &Path) -> io::Result<Tree> {
    let mut tree = Tree::new();
    let mut stack: Vec<Vec<OsString>> = vec![Vec::new()];
    while let Some(rel) = stack.pop() {
        let mut full = dir.to_path_buf();
        full.extend(&rel);
        for entry in fs::read_dir(&full)? {
            let entry = entry?;
            let m = entry.metadata()?;
            let t = m.file_type();
            let mut path = rel.clone();
            path.push(entry.file_name());
            let e = if t.is_dir() {
                stack.push(path.clone());
                Expect::Dir
            } else if t.is_file() {
                Expect::File(m.len())
            } else if t.is_symlink() {
                Expect::Symlink
            } else if t.is_fifo() {
                Expect::Fifo
            } else if t.is_char_device() && m.rdev() == 0 {
                Expect::Whiteout
            } else {
                continue;
            };
            tree.insert(path, e);
        }
    }
    Ok(tree)
}

/// `tree` in the file format.
pub(crate) fn encode(tree: &Tree) -> Vec<u8> {
    let mut out = String::new();
    for (path, e) in tree {
        let (k, size) = match e {
            Expect::Dir => ('D', 0),
            Expect::File(n) => ('F', *n),
            Expect::Symlink => ('L', 0),
            Expect::Fifo => ('P', 0),
            Expect::Whiteout => ('W', 0),
        };
        let _ = write!(out, "{k} {size} ");
        for (i, c) in path.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            for &b in c.as_bytes() {
                if b.is_ascii_graphic() && b != b'%' {
                    out.push(b as char);
                } else {
                    let _ = write!(out, "%{b:02X}");
                }
            }
        }
        out.push('\n');
    }
    out.into_bytes()
}

/// A tree file read back; what is wrong with it otherwise.
pub(crate) fn decode(data: &[u8]) -> Result<Tree, String> {
    let text = std::str::from_utf8(data).map_err(|e| format!("not text: {e}"))?;
    let mut tree = Tree::new();
    for (n, line) in text.lines().enumerate() {
        let bad = |what: &str| format!("line {}: {what}", n + 1);
        let mut parts = line.splitn(3, ' ');
        let (Some(k), Some(size), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("not KIND SIZE PATH"));
        };
        let size: u64 = size.parse().map_err(|_| bad("bad size"))?;
        let e = match k {
            "D" => Expect::Dir,
            "F" => Expect::File(size),
            "L" => Expect::Symlink,
            "P" => Expect::Fifo,
            "W" => Expect::Whiteout,
            _ => return Err(bad("unknown kind")),
        };
        let mut comps = Vec::new();
        for c in path.split('/') {
            let bytes = unescape(c).ok_or_else(|| bad("bad escape"))?;
            if bytes.is_empty() || bytes == b"." || bytes == b".." {
                return Err(bad("path component not a plain name"));
            }
            comps.push(OsString::from_vec(bytes));
        }
        tree.insert(comps, e);
    }
    Ok(tree)
}

fn unescape(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_tree_file_round_trips_odd_names() {
        let mut t = Tree::new();
        let p = |parts: &[&[u8]]| -> Vec<OsString> {
            parts
                .iter()
                .map(|b| OsString::from_vec(b.to_vec()))
                .collect()
        };
        t.insert(p(&[b"d"]), Expect::Dir);
        t.insert(p(&[b"d", b"a file%"]), Expect::File(42));
        t.insert(p(&[b"d", b"\xff\n"]), Expect::Symlink);
        t.insert(p(&[b"w"]), Expect::Whiteout);
        t.insert(p(&[b"f"]), Expect::Fifo);
        assert_eq!(decode(&encode(&t)).expect("decode"), t);
    }

    #[test]
    fn test_tree_file_refuses_escaping_paths() {
        for bad in [
            "F 1 a/../b\n",
            "D 0 a//b\n",
            "X 0 a\n",
            "F x a\n",
            "F 1 %zz\n",
        ] {
            assert!(decode(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
