//! Shared by the fuzz targets: a small text format that lets libFuzzer build
//! whole image archives whose digests agree, so mutations reach the planner,
//! the verifier and the layer applier instead of stopping at the first
//! digest check.
//!
//! ```text
//! input   := flags entry (SEP entry)*          SEP = "\n--8<--\n"
//! flags   := one byte: bits 0-1 wrap the archive (0 none, 1 gzip, 2 zstd)
//! entry   := name "\n" content
//! name    := ["!"] path [(" -> " | " => ") target]
//! ```
//!
//! - `!path` stores the content gzip-compressed (a compressed layer);
//! - `path -> target` is a symlink, `path => target` a hardlink;
//! - in JSON contents (`{`/`[` first), `@N` becomes `sha256:<hex>` of entry
//!   N as stored, `$N` the bare hex, `#N` its size, `%N` the digest of its
//!   uncompressed form (its diff_id); N is one digit and must name an
//!   earlier entry. In names, `@N` becomes the bare hex, and may name the
//!   entry itself (`blobs/sha256/@3` for entry 3). Anything else is left as
//!   it is.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// Separator between entries.
pub const SEP: &[u8] = b"\n--8<--\n";

/// What kind of archive member an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File(Vec<u8>),
    Symlink(Vec<u8>),
    Hardlink(Vec<u8>),
}

/// One decoded entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: Vec<u8>,
    pub kind: Kind,
}

/// A decoded input.
#[derive(Debug)]
pub struct Spec {
    pub wrap: u8,
    pub entries: Vec<Entry>,
}

struct Done {
    hex: String,
    size: usize,
    diff_hex: String,
}

fn split<'a>(data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(sep.len()).position(|w| w == sep) {
        out.push(&rest[..i]);
        rest = &rest[i + sep.len()..];
    }
    out.push(rest);
    out
}

fn substitute(data: &[u8], done: &[Done], bare: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        let c = data[i];
        if matches!(c, b'@' | b'#' | b'%' | b'$')
            && i + 1 < data.len()
            && data[i + 1].is_ascii_digit()
        {
            let n = usize::from(data[i + 1] - b'0');
            if let Some(d) = done.get(n) {
                let s = match (c, bare) {
                    (b'@', true) => d.hex.clone(),
                    (b'@', false) => format!("sha256:{}", d.hex),
                    (b'$', _) => d.hex.clone(),
                    (b'#', _) => d.size.to_string(),
                    (_, true) => d.diff_hex.clone(),
                    _ => format!("sha256:{}", d.diff_hex),
                };
                out.extend_from_slice(s.as_bytes());
                i += 2;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::fast());
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// Decode an input. Never fails: whatever the bytes, some spec results.
pub fn decode(data: &[u8]) -> Spec {
    let (wrap, rest) = match data.split_first() {
        Some((f, r)) => (f & 3, r),
        None => (0, data),
    };
    let mut done: Vec<Done> = Vec::new();
    let mut entries = Vec::new();
    for raw in split(rest, SEP) {
        let (name, content) = match raw.iter().position(|b| *b == b'\n') {
            Some(i) => (&raw[..i], &raw[i + 1..]),
            None => (raw, &[][..]),
        };
        let compress = name.first() == Some(&b'!');
        let name = if compress { &name[1..] } else { name };
        let link = |arrow: &[u8], name: &[u8]| {
            name.windows(arrow.len())
                .position(|w| w == arrow)
                .map(|i| (name[..i].to_vec(), name[i + arrow.len()..].to_vec()))
        };
        if let Some((n, t)) = link(b" -> ", name) {
            entries.push(Entry {
                name: substitute(&n, &done, true),
                kind: Kind::Symlink(substitute(&t, &done, true)),
            });
            continue;
        }
        if let Some((n, t)) = link(b" => ", name) {
            entries.push(Entry {
                name: substitute(&n, &done, true),
                kind: Kind::Hardlink(substitute(&t, &done, true)),
            });
            continue;
        }
        let plain = if matches!(content.first(), Some(b'{' | b'[')) {
            substitute(content, &done, false)
        } else {
            content.to_vec()
        };
        let stored = if compress {
            gzip(&plain)
        } else {
            plain.clone()
        };
        done.push(Done {
            hex: hex::encode(Sha256::digest(&stored)),
            size: stored.len(),
            diff_hex: hex::encode(Sha256::digest(&plain)),
        });
        entries.push(Entry {
            name: substitute(name, &done, true),
            kind: Kind::File(stored),
        });
    }
    Spec { wrap, entries }
}

/// A raw GNU header with the name and link fields set byte for byte (the
/// `tar` crate's setters refuse hostile names, which are what we want here).
fn header(name: &[u8], kind: tar::EntryType, size: u64, link: &[u8]) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(1_600_000_000);
    {
        let gnu = h.as_gnu_mut().expect("a GNU header");
        let n = name.len().min(gnu.name.len());
        gnu.name[..n].copy_from_slice(&name[..n]);
        let l = link.len().min(gnu.linkname.len());
        gnu.linkname[..l].copy_from_slice(&link[..l]);
    }
    h.set_cksum();
    h
}

/// The spec as a tar archive, wrapped as its flags say.
pub fn to_archive(spec: &Spec) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in &spec.entries {
        let (kind, data, link): (_, &[u8], &[u8]) = match &e.kind {
            Kind::File(d) => (tar::EntryType::Regular, d, b""),
            Kind::Symlink(t) => (tar::EntryType::Symlink, b"", t),
            Kind::Hardlink(t) => (tar::EntryType::Link, b"", t),
        };
        let h = header(&e.name, kind, data.len() as u64, link);
        let _ = b.append(&h, data);
    }
    let tar = b.into_inner().unwrap_or_default();
    match spec.wrap {
        1 => gzip(&tar),
        2 => zstd::encode_all(&tar[..], 1).unwrap_or_default(),
        _ => tar,
    }
}

/// The spec as a directory (an OCI layout). Names are cleaned lexically so
/// nothing lands outside `dir`; symlinks keep their (hostile) targets.
pub fn to_dir(spec: &Spec, dir: &Path) {
    use std::os::unix::ffi::OsStrExt;
    for e in &spec.entries {
        let comps: Vec<&[u8]> = e
            .name
            .split(|b| *b == b'/')
            .filter(|c| !c.is_empty() && *c != b"." && *c != b".." && !c.contains(&0))
            .collect();
        let Some((base, parents)) = comps.split_last() else {
            continue;
        };
        let mut p = dir.to_path_buf();
        for c in parents {
            p.push(std::ffi::OsStr::from_bytes(c));
        }
        if std::fs::create_dir_all(&p).is_err() {
            continue;
        }
        let path = p.join(std::ffi::OsStr::from_bytes(base));
        let _ = match &e.kind {
            Kind::File(d) => std::fs::write(&path, d),
            Kind::Symlink(t) if !t.contains(&0) => {
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(t), &path)
            }
            Kind::Symlink(_) => Ok(()),
            Kind::Hardlink(t) => {
                let target: Vec<&[u8]> = t
                    .split(|b| *b == b'/')
                    .filter(|c| !c.is_empty() && *c != b"." && *c != b".." && !c.contains(&0))
                    .collect();
                let mut tp = dir.to_path_buf();
                for c in target {
                    tp.push(std::ffi::OsStr::from_bytes(c));
                }
                std::fs::hard_link(tp, &path)
            }
        };
    }
}

/// A scratch directory for one run (tmpfs when `SKIFF_FUZZ_TMP` says so).
pub fn scratch() -> tempfile::TempDir {
    let base = std::env::var_os("SKIFF_FUZZ_TMP").unwrap_or_else(|| std::env::temp_dir().into());
    tempfile::Builder::new()
        .prefix("skiff-fuzz-")
        .tempdir_in(base)
        .expect("scratch directory")
}

/// Import `input` into a fresh store under `scratch`; the store must be
/// consistent afterwards whether the import succeeded or not.
pub fn import_and_check(scratch: &Path, input: imagestore::Input) {
    let store = imagestore::Store::open(scratch.join("store")).expect("open a fresh store");
    let res = store.import(&input, &imagestore::ImportOptions::default());
    // Whatever happened, nothing of the import session may remain and the
    // store must verify clean.
    let report = store.verify(false).expect("verify the store");
    assert!(
        report.problems.is_empty() && report.leftovers.is_empty(),
        "store inconsistent after import ({:?}): {:?} {:?}",
        res.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        report.problems,
        report.leftovers
    );
    if let Ok(r) = res {
        for img in &r.images {
            let rec = store
                .resolve(&img.id.to_string())
                .expect("imported image resolves");
            store
                .mount_description(&rec)
                .expect("imported image has its snapshots");
        }
    }
}
