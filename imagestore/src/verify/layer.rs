//! Check one snapshot directory against the layer blob it was unpacked from:
//! one pass over the blob (decompressed, hashed to its diff_id, tar headers
//! walked), then one `lstat` per path the layer leaves behind.
//!
//! The expected tree is what the applier (`apply.rs`) makes of the layer:
//! later entries replace earlier ones (a directory replaced by a file loses
//! its children), `.wh.NAME` becomes a 0/0 character device, hardlinks share
//! their target's type and size, device nodes other than 0/0 are skipped.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::apply::clean_path;
use crate::compression::Compression;
use crate::digest::{Digest, HashingReader};
use crate::snapshot::SnapshotInfo;

/// Why a snapshot does not match its layer.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotCheckError {
    /// The layer blob could not be read or decompressed, or its tar is bad.
    #[error("reading its layer blob {blob}")]
    ReadBlob {
        blob: Digest,
        #[source]
        source: io::Error,
    },
    /// The decompressed blob does not hash to the recorded diff_id.
    #[error("its blob {blob} decompresses to {actual}, not the recorded diff_id {expected}")]
    DiffId {
        blob: Digest,
        expected: Digest,
        actual: Digest,
    },
    /// A path of the layer is absent or different in the directory.
    #[error("{path}: {detail}{}", more_paths(*more))]
    Content {
        path: String,
        detail: String,
        more: usize,
    },
}

fn more_paths(n: usize) -> String {
    match n {
        0 => String::new(),
        n => format!(" (and {n} more paths differ)"),
    }
}

use crate::snapshot_tree::{Expect, Tree};

/// Check `dir` against the layer in `blob` as `info` records it.
pub(super) fn check(
    blob: &Path,
    info: &SnapshotInfo,
    dir: &Path,
) -> Result<(), SnapshotCheckError> {
    let read_err = |source| SnapshotCheckError::ReadBlob {
        blob: info.blob.clone(),
        source,
    };
    let file = File::open(blob).map_err(read_err)?;
    let (_, decoder) =
        Compression::decoder(BufReader::with_capacity(256 * 1024, file)).map_err(read_err)?;
    let mut diff = HashingReader::new(decoder);
    let tree = expected_tree(&mut diff).map_err(read_err)?;
    diff.drain().map_err(read_err)?;
    let (actual, _, _) = diff.finish();
    if actual != info.diff_id {
        return Err(SnapshotCheckError::DiffId {
            blob: info.blob.clone(),
            expected: info.diff_id.clone(),
            actual,
        });
    }
    compare(&tree, dir)
}

fn remove_below(tree: &mut Tree, path: &[OsString]) {
    let below: Vec<Vec<OsString>> = tree
        .range(path.to_vec()..)
        .take_while(|(k, _)| k.starts_with(path))
        .filter(|(k, _)| k.len() > path.len())
        .map(|(k, _)| k.clone())
        .collect();
    for k in below {
        tree.remove(&k);
    }
}

fn set(tree: &mut Tree, path: Vec<OsString>, e: Expect) {
    if e != Expect::Dir || tree.get(&path) != Some(&Expect::Dir) {
        remove_below(tree, &path);
    }
    // Parents the applier created on the way are directories.
    for i in 1..path.len() {
        tree.entry(path[..i].to_vec()).or_insert(Expect::Dir);
    }
    tree.insert(path, e);
}

fn expected_tree<R: Read>(reader: R) -> io::Result<Tree> {
    let mut tree = Tree::new();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let entry = entry?;
        let comps = clean_path(&entry.path_bytes());
        let Some(base) = comps.last() else {
            continue;
        };
        let header = entry.header();
        let kind = header.entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            continue;
        }
        let b = base.as_bytes();
        if b.starts_with(b".wh.") {
            if b.starts_with(b".wh..wh.") {
                continue;
            }
            let mut target = comps.clone();
            let name = OsString::from(std::ffi::OsStr::from_bytes(&b[4..]));
            if let Some(last) = target.last_mut() {
                *last = name;
            }
            set(&mut tree, target, Expect::Whiteout);
            continue;
        }
        let e = match kind {
            tar::EntryType::Directory => Expect::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous => Expect::File(entry.size()),
            tar::EntryType::Symlink => Expect::Symlink,
            tar::EntryType::Fifo => Expect::Fifo,
            // As the applier reads them: an unreadable number counts as 0.
            tar::EntryType::Char
                if header.device_major().ok().flatten().unwrap_or(0) == 0
                    && header.device_minor().ok().flatten().unwrap_or(0) == 0 =>
            {
                Expect::Whiteout
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| clean_path(&t))
                    .unwrap_or_default();
                if target == comps {
                    continue;
                }
                match tree.get(&target) {
                    Some(e) => *e,
                    None => continue,
                }
            }
            _ => continue,
        };
        set(&mut tree, comps, e);
    }
    Ok(tree)
}

pub(super) fn compare(tree: &Tree, dir: &Path) -> Result<(), SnapshotCheckError> {
    let mut first: Option<(String, String)> = None;
    let mut more = 0;
    let mut bad_dirs: Vec<&Vec<OsString>> = Vec::new();
    for (path, e) in tree {
        if bad_dirs.iter().any(|d| path.starts_with(d)) {
            continue;
        }
        let mut full = PathBuf::from(dir);
        full.extend(path);
        let found = std::fs::symlink_metadata(&full);
        let detail = match (e, &found) {
            (_, Err(err)) if err.kind() == io::ErrorKind::NotFound => Some("missing".to_string()),
            (_, Err(err)) => Some(format!("cannot stat: {err}")),
            (Expect::Dir, Ok(m)) => (!m.is_dir()).then(|| "not a directory".to_string()),
            (Expect::File(size), Ok(m)) => {
                if !m.is_file() {
                    Some("not a regular file".to_string())
                } else if m.len() != *size {
                    Some(format!("{} bytes, the layer has {size}", m.len()))
                } else {
                    None
                }
            }
            (Expect::Symlink, Ok(m)) => {
                (!m.file_type().is_symlink()).then(|| "not a symlink".into())
            }
            (Expect::Fifo, Ok(m)) => (!m.file_type().is_fifo()).then(|| "not a fifo".into()),
            (Expect::Whiteout, Ok(m)) => (!(m.file_type().is_char_device() && m.rdev() == 0))
                .then(|| "not a whiteout (0/0 character device)".into()),
        };
        if let Some(detail) = detail {
            if *e == Expect::Dir {
                bad_dirs.push(path);
            }
            if first.is_none() {
                let joined: Vec<&[u8]> = path.iter().map(|c| c.as_bytes()).collect();
                first = Some((
                    String::from_utf8_lossy(&joined.join(&b'/')).into_owned(),
                    detail,
                ));
            } else {
                more += 1;
            }
        }
    }
    match first {
        None => Ok(()),
        Some((path, detail)) => Err(SnapshotCheckError::Content { path, detail, more }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer() -> Vec<u8> {
        let uid = nix::unistd::geteuid().as_raw() as u64;
        let gid = nix::unistd::getegid().as_raw() as u64;
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            h.set_uid(uid);
            h.set_gid(gid);
            h.set_mtime(1);
            if let Some(l) = link {
                h.set_link_name(l).expect("link name");
            }
            b.append_data(&mut h, name, data).expect("append");
        };
        add("d/", tar::EntryType::Directory, b"", None);
        add("d/a", tar::EntryType::Regular, b"aaaa", None);
        add("d/b", tar::EntryType::Regular, b"b", None);
        add("d/h", tar::EntryType::Link, b"", Some("d/a"));
        add("d/s", tar::EntryType::Symlink, b"", Some("/nowhere"));
        add("d/.wh.b", tar::EntryType::Regular, b"", None);
        add("e/x", tar::EntryType::Regular, b"x", None);
        add("e", tar::EntryType::Regular, b"replaced", None);
        add("f", tar::EntryType::Fifo, b"", None);
        b.into_inner().expect("layer")
    }

    #[test]
    fn test_layer_check_matches_the_applier_and_names_a_missing_path() {
        let data = layer();
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("root");
        crate::apply::apply_layer(&data[..], &root).expect("apply");
        let tree = expected_tree(&data[..]).expect("walk");
        assert_eq!(tree.get(&vec![OsString::from("e")]), Some(&Expect::File(8)));
        assert!(!tree.contains_key(&vec![OsString::from("e"), OsString::from("x")]));
        compare(&tree, &root).expect("the applied layer matches");

        std::fs::remove_file(root.join("d/h")).expect("remove");
        let err = compare(&tree, &root).expect_err("a missing hardlink is found");
        assert!(err.to_string().contains("d/h: missing"), "{err}");
    }
}
