//! The benchmark's input: an image archive, and its layers as separate
//! files for the `tar -x` contenders.
//!
//! By default a realistic multi-layer `docker save` archive (legacy layout:
//! `manifest.json`, `<hex>.json` config with correct `diff_ids`,
//! `<id>/layer.tar`) is generated from host directories, and cached in the
//! work directory: a rerun with the same size and compression reuses it.
//! A user-supplied archive (`--image`) is used as is; its layers are copied
//! out once (and decompressed when needed) into the same cache.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use imagestore::compression::Compression;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, IoContext, Result};
pub use crate::results::image::{ImageInfo, LayerInfo};

/// Bump when the generated archive's content or the cache layout changes.
const GENERATOR_VERSION: u32 = 1;

/// Where a generated layer takes its files from.
#[derive(Debug, Clone)]
pub struct LayerSource {
    /// Label for reports.
    pub label: String,
    /// Host directories (taken in order, each whole or until the budget).
    pub dirs: Vec<PathBuf>,
    /// Share of the image's size budget.
    pub share: f64,
}

/// The default layers: shared libraries, data files, executables, Python.
pub fn default_sources() -> Vec<LayerSource> {
    let mut python: Vec<PathBuf> = fs::read_dir("/usr/lib")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
                .map(|e| e.path())
                .filter(|p| p.is_dir() && !p.is_symlink())
                .collect()
        })
        .unwrap_or_default();
    python.sort();
    vec![
        LayerSource {
            label: "/usr/lib/x86_64-linux-gnu".into(),
            dirs: vec!["/usr/lib/x86_64-linux-gnu".into()],
            share: 0.40,
        },
        LayerSource {
            label: "/usr/share".into(),
            dirs: vec!["/usr/share".into()],
            share: 0.25,
        },
        LayerSource {
            label: "/usr/bin".into(),
            dirs: vec!["/usr/bin".into()],
            share: 0.20,
        },
        LayerSource {
            label: "/usr/lib/python3*".into(),
            dirs: python,
            share: 0.15,
        },
    ]
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenSpec {
    /// Target uncompressed size, in MB (10^6 bytes).
    pub size_mb: u64,
    /// gzip-compress the layers inside the archive.
    pub gzip: bool,
    /// Where the files come from.
    pub sources: Vec<LayerSource>,
}

/// Generate (or reuse from `cache`) the benchmark archive. A partial one
/// left by an interrupted run is moved into `trash`.
pub fn generate(cache: &Path, trash: &Path, spec: &GenSpec) -> Result<(ImageInfo, bool)> {
    let name = format!(
        "gen-v{GENERATOR_VERSION}-{}mb-{}",
        spec.size_mb,
        if spec.gzip { "gzip" } else { "plain" }
    );
    let dir = cache.join(&name);
    if let Some(info) = load_cached(&dir)? {
        return Ok((info, true));
    }
    fs::create_dir_all(cache).ctx("create", cache)?;
    // A partial directory left by an interrupted run is only renamed away:
    // deleting it now would slow the timed runs that follow (see trash.rs).
    let partial = cache.join(format!("{name}.partial"));
    crate::trash::set_aside(&partial, trash)?;
    fs::create_dir(&partial).ctx("create", &partial)?;

    let budget = spec.size_mb * 1_000_000;
    let sources: Vec<&LayerSource> = spec
        .sources
        .iter()
        .filter(|s| s.dirs.iter().any(|d| d.is_dir()))
        .collect();
    if sources.is_empty() {
        return Err(Error::Usage(
            "none of the benchmark image's source directories exist on this host".into(),
        ));
    }
    let total_share: f64 = sources.iter().map(|s| s.share).sum();
    let layers: Vec<Result<LayerInfo>> = std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .iter()
            .enumerate()
            .map(|(i, src)| {
                let partial = &partial;
                let layer_budget = (budget as f64 * src.share / total_share) as u64;
                scope.spawn(move || build_layer(partial, i, src, layer_budget, spec.gzip))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Usage("layer generator panicked".into())))
            })
            .collect()
    });
    let mut layers = layers.into_iter().collect::<Result<Vec<_>>>()?;
    layers.retain(|l| l.files > 0);
    if layers.is_empty() {
        return Err(Error::Usage(
            "the benchmark image's source directories hold no readable files".into(),
        ));
    }

    let archive = partial.join("image.tar");
    write_docker_archive(&archive, &layers)?;
    let archive_bytes = fs::metadata(&archive).ctx("stat", &archive)?.len();

    // Paths as they will be once the directory is renamed into place.
    let rebase = |p: &Path| dir.join(p.strip_prefix(&partial).unwrap_or(p));
    for l in &mut layers {
        l.tar_path = rebase(&l.tar_path);
        l.stored_path = l.stored_path.as_deref().map(rebase);
    }
    let info = ImageInfo::new(
        dir.join("image.tar"),
        true,
        "docker-archive".into(),
        if spec.gzip { "gzip" } else { "none" }.into(),
        archive_bytes,
        layers,
    );
    write_meta(&partial, &info)?;
    fs::rename(&partial, &dir).ctx("rename into place", &dir)?;
    Ok((info, false))
}

/// Use an existing archive: copy its layers out (once, cached by path,
/// size and mtime) so that `tar -x` can read them.
///
/// Returns `Ok(None)` with a reason when the archive's layers cannot be
/// located (not a `docker save` archive, or wrapped in outer compression):
/// the skiff and podman contenders still run, `tar` cannot.
pub fn prepare_existing(
    cache: &Path,
    trash: &Path,
    archive: &Path,
) -> Result<(ImageInfo, Option<String>)> {
    let archive = fs::canonicalize(archive).ctx("resolve", archive)?;
    let meta = fs::metadata(&archive).ctx("stat", &archive)?;
    let key = {
        let mut h = Sha256::new();
        h.update(archive.as_os_str().as_encoded_bytes());
        h.update(meta.len().to_le_bytes());
        h.update(meta.mtime().to_le_bytes());
        h.update(meta.mtime_nsec().to_le_bytes());
        hex::encode(&h.finalize()[..8])
    };
    let dir = cache.join(format!("user-v{GENERATOR_VERSION}-{key}"));
    if let Some(info) = load_cached(&dir)? {
        return Ok((info, None));
    }
    let bare = |reason: String| -> (ImageInfo, Option<String>) {
        (
            ImageInfo {
                archive: archive.clone(),
                generated: false,
                format: "unknown".into(),
                compression: "unknown".into(),
                archive_bytes: meta.len(),
                uncompressed_bytes: 0,
                entries: 0,
                files: 0,
                layers: Vec::new(),
            },
            Some(reason),
        )
    };
    let mut f = File::open(&archive).ctx("open", &archive)?;
    let mut magic = [0u8; 4];
    let n = read_full(&mut f, &mut magic).ctx("read", &archive)?;
    if Compression::detect(&magic[..n]) != Compression::None {
        return Ok(bare(
            "the archive is wrapped in outer compression; its layers are not copied out".into(),
        ));
    }
    let index = match index_tar(&archive) {
        Ok(i) => i,
        Err(e) => return Ok(bare(format!("cannot read it as a tar archive: {e}"))),
    };
    let Some(manifest) = index.read(&archive, "manifest.json")? else {
        return Ok(bare(
            "it has no manifest.json (not a `docker save` archive)".into(),
        ));
    };
    #[derive(Deserialize)]
    struct Entry {
        #[serde(rename = "Layers", default)]
        layers: Vec<String>,
    }
    let entries: Vec<Entry> =
        serde_json::from_slice(&manifest).map_err(|source| Error::ImageManifest {
            path: archive.clone(),
            source,
        })?;
    let mut names: Vec<String> = Vec::new();
    for e in entries {
        for l in e.layers {
            let resolved = index.resolve(&l).unwrap_or(l);
            if !names.contains(&resolved) {
                names.push(resolved);
            }
        }
    }

    fs::create_dir_all(cache).ctx("create", cache)?;
    let partial = cache.join(format!("user-v{GENERATOR_VERSION}-{key}.partial"));
    crate::trash::set_aside(&partial, trash)?;
    fs::create_dir(&partial).ctx("create", &partial)?;
    let mut layers = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let Some(&(offset, size)) = index.files.get(name) else {
            return Err(Error::Image {
                path: archive.clone(),
                detail: format!("manifest.json names {name}, which the archive lacks"),
            });
        };
        let mut src = File::open(&archive).ctx("open", &archive)?;
        src.seek(SeekFrom::Start(offset)).ctx("seek in", &archive)?;
        let mut head = [0u8; 4];
        let n = read_full(&mut (&mut src).take(size), &mut head).ctx("read", &archive)?;
        src.seek(SeekFrom::Start(offset)).ctx("seek in", &archive)?;
        let compression = Compression::detect(&head[..n]);
        let tar_path = partial.join(format!("{i}.tar"));
        let mut stored_path = None;
        let reader: Box<dyn Read> = match compression {
            Compression::None => Box::new(src.take(size)),
            other => {
                let ext = if other == Compression::Gzip {
                    "tar.gz"
                } else {
                    "tar.zst"
                };
                let p = partial.join(format!("{i}.{ext}"));
                let mut out = File::create(&p).ctx("create", &p)?;
                io::copy(&mut src.take(size), &mut out).ctx("copy layer to", &p)?;
                stored_path = Some(p.clone());
                let f = BufReader::new(File::open(&p).ctx("open", &p)?);
                other.wrap(f).ctx("decompress", &p)?
            }
        };
        let (diff_id, raw_bytes, entries, files) =
            copy_and_count(reader, &tar_path).map_err(|source| Error::ImageLayer {
                path: archive.clone(),
                layer: name.clone(),
                source,
            })?;
        layers.push(LayerInfo {
            source: name.clone(),
            diff_id,
            compression: match compression {
                Compression::None => "none".into(),
                c => c.name().into(),
            },
            uncompressed_bytes: raw_bytes,
            stored_bytes: size,
            entries,
            files,
            tar_path,
            stored_path,
        });
    }
    let rebase = |p: &Path| dir.join(p.strip_prefix(&partial).unwrap_or(p));
    for l in &mut layers {
        l.tar_path = rebase(&l.tar_path);
        l.stored_path = l.stored_path.as_deref().map(rebase);
    }
    let mut kinds: Vec<&str> = layers.iter().map(|l| l.compression.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let compression = match kinds.as_slice() {
        [] => "none".to_string(),
        [one] => one.to_string(),
        _ => "mixed".to_string(),
    };
    let info = ImageInfo::new(
        archive.clone(),
        false,
        if index.files.contains_key("index.json") {
            "docker-archive (Docker 25+ OCI layout)".into()
        } else {
            "docker-archive".into()
        },
        compression,
        meta.len(),
        layers,
    );
    write_meta(&partial, &info)?;
    fs::rename(&partial, &dir).ctx("rename into place", &dir)?;
    Ok((info, None))
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn load_cached(dir: &Path) -> Result<Option<ImageInfo>> {
    let meta = dir.join("meta.json");
    let data = match fs::read(&meta) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &meta, e)),
    };
    let info: ImageInfo = match serde_json::from_slice(&data) {
        Ok(i) => i,
        Err(_) => return Ok(None),
    };
    let present = info.archive.is_file()
        && info
            .layers
            .iter()
            .all(|l| l.tar_path.is_file() && l.stored_path.as_ref().is_none_or(|p| p.is_file()));
    Ok(present.then_some(info))
}

fn write_meta(dir: &Path, info: &ImageInfo) -> Result<()> {
    let p = dir.join("meta.json");
    let data = serde_json::to_vec_pretty(info).map_err(|source| Error::Json {
        what: p.display().to_string(),
        source,
    })?;
    fs::write(&p, data).ctx("write", &p)
}

/// A writer that hashes and counts what passes through.
struct HashWriter<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Copy an uncompressed layer stream to `dst`, returning its digest, size,
/// entry count and regular-file count.
fn copy_and_count(reader: impl Read, dst: &Path) -> io::Result<(String, u64, u64, u64)> {
    /// Tees the stream into the hashing writer as the tar parser reads it.
    struct Tee<R, W> {
        r: R,
        w: W,
    }
    impl<R: Read, W: Write> Read for Tee<R, W> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.r.read(buf)?;
            self.w.write_all(&buf[..n])?;
            Ok(n)
        }
    }
    let out = HashWriter {
        inner: BufWriter::with_capacity(1 << 20, File::create(dst)?),
        hash: Sha256::new(),
        bytes: 0,
    };
    let mut tee = Tee { r: reader, w: out };
    let (mut entries, mut files) = (0u64, 0u64);
    {
        let mut ar = tar::Archive::new(&mut tee);
        for e in ar.entries()? {
            let e = e?;
            entries += 1;
            if e.header().entry_type().is_file() {
                files += 1;
            }
        }
    }
    // Whatever follows the end-of-archive blocks is part of the diff stream too.
    io::copy(&mut tee, &mut io::sink())?;
    let mut out = tee.w;
    out.flush()?;
    let digest = format!("sha256:{}", hex::encode(out.hash.finalize()));
    Ok((digest, out.bytes, entries, files))
}

/// Walk state while filling one layer.
struct Filler<W: Write> {
    builder: tar::Builder<W>,
    budget: u64,
    bytes: u64,
    entries: u64,
    files: u64,
    /// (dev, ino) of multiply-linked files already written, to their names.
    links: HashMap<(u64, u64), String>,
    full: bool,
}

impl<W: Write> Filler<W> {
    fn add_dir_entry(&mut self, path: &Path, name: &str) -> io::Result<()> {
        let meta = fs::symlink_metadata(path)?;
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        h.set_size(0);
        self.builder
            .append_data(&mut h, format!("{name}/"), io::empty())?;
        self.bytes += 512;
        self.entries += 1;
        Ok(())
    }

    /// Add `path` (named `name` in the layer) and, for a directory, its
    /// children in name order, until the budget is spent.
    fn walk(&mut self, path: &Path, name: &str) -> io::Result<()> {
        if self.full {
            return Ok(());
        }
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(_) => return Ok(()),
        };
        let ft = meta.file_type();
        if ft.is_dir() {
            self.add_dir_entry(path, name)?;
            let mut children: Vec<_> = match fs::read_dir(path) {
                Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect(),
                Err(_) => return Ok(()),
            };
            children.sort();
            for c in children {
                let Some(cs) = c.to_str() else { continue };
                self.walk(&path.join(&c), &format!("{name}/{cs}"))?;
                if self.full {
                    break;
                }
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(path)?;
            let mut h = tar::Header::new_gnu();
            h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            self.builder.append_link(&mut h, name, &target)?;
            self.bytes += 512;
            self.entries += 1;
        } else if ft.is_file() {
            let size = meta.len();
            let cost = 512 + size.div_ceil(512) * 512;
            // One huge file must not make up a whole layer.
            if size > self.budget / 4 {
                return Ok(());
            }
            if self.bytes + cost > self.budget {
                self.full = true;
                return Ok(());
            }
            let key = (meta.dev(), meta.ino());
            if meta.nlink() > 1 {
                if let Some(first) = self.links.get(&key) {
                    let mut h = tar::Header::new_gnu();
                    h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    let first = first.clone();
                    self.builder.append_link(&mut h, name, first)?;
                    self.bytes += 512;
                    self.entries += 1;
                    return Ok(());
                }
            }
            let Ok(file) = File::open(path) else {
                return Ok(());
            };
            let meta = file.metadata()?;
            let mut h = tar::Header::new_gnu();
            h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
            // Exactly the size in the header, even if the file changes meanwhile.
            let data = file.take(meta.len()).chain(io::repeat(0)).take(meta.len());
            self.builder.append_data(&mut h, name, data)?;
            if meta.nlink() > 1 {
                self.links.insert(key, name.to_string());
            }
            self.bytes += 512 + meta.len().div_ceil(512) * 512;
            self.entries += 1;
            self.files += 1;
        }
        // Sockets, fifos and devices are not image content.
        Ok(())
    }
}

fn build_layer(
    dir: &Path,
    index: usize,
    src: &LayerSource,
    budget: u64,
    gzip: bool,
) -> Result<LayerInfo> {
    let tar_path = dir.join(format!("{index}.tar"));
    let file = File::create(&tar_path).ctx("create", &tar_path)?;
    let out = HashWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hash: Sha256::new(),
        bytes: 0,
    };
    let mut filler = Filler {
        builder: tar::Builder::new(out),
        budget,
        bytes: 0,
        entries: 0,
        files: 0,
        links: HashMap::new(),
        full: false,
    };
    let mut parents_done: Vec<String> = Vec::new();
    let per_dir = budget / src.dirs.len().max(1) as u64;
    for (k, d) in src.dirs.iter().enumerate() {
        if !d.is_dir() {
            continue;
        }
        // Parent directories first (usr/, usr/lib/ …), each once.
        let rel = d.strip_prefix("/").unwrap_or(d);
        let mut acc = PathBuf::from("/");
        let comps: Vec<_> = rel.components().collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            acc.push(c);
            let name = acc
                .strip_prefix("/")
                .unwrap_or(&acc)
                .to_string_lossy()
                .into_owned();
            if !parents_done.contains(&name) {
                filler.add_dir_entry(&acc, &name).ctx("read", &acc)?;
                parents_done.push(name);
            }
        }
        // Each directory gets its share, and what earlier ones left unused.
        filler.budget = per_dir * (k as u64 + 1);
        filler.full = false;
        filler
            .walk(d, &rel.to_string_lossy())
            .ctx("archive files from", d)?;
    }
    let out = filler.builder.into_inner().ctx("finish layer", &tar_path)?;
    let mut out = out;
    out.flush().ctx("write", &tar_path)?;
    let diff_id = format!("sha256:{}", hex::encode(out.hash.finalize()));
    let uncompressed_bytes = out.bytes;
    drop(out.inner);

    let (compression, stored_bytes, stored_path) = if gzip {
        let gz = dir.join(format!("{index}.tar.gz"));
        let mut input = File::open(&tar_path).ctx("open", &tar_path)?;
        let f = File::create(&gz).ctx("create", &gz)?;
        let mut enc = flate2::write::GzEncoder::new(
            BufWriter::with_capacity(1 << 20, f),
            flate2::Compression::default(),
        );
        io::copy(&mut input, &mut enc).ctx("compress into", &gz)?;
        let mut w = enc.finish().ctx("compress into", &gz)?;
        w.flush().ctx("write", &gz)?;
        let n = fs::metadata(&gz).ctx("stat", &gz)?.len();
        ("gzip", n, Some(gz))
    } else {
        ("none", uncompressed_bytes, None)
    };
    Ok(LayerInfo {
        source: src.label.clone(),
        diff_id,
        compression: compression.into(),
        uncompressed_bytes,
        stored_bytes,
        entries: filler.entries,
        files: filler.files,
        tar_path,
        stored_path,
    })
}

/// Write a legacy-layout `docker save` archive of `layers` (bottom first).
fn write_docker_archive(path: &Path, layers: &[LayerInfo]) -> Result<()> {
    let created = "2026-01-01T00:00:00Z";
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
    let history: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            serde_json::json!({
                "created": created,
                "created_by": format!("COPY {} (skiff bench generator)", l.source),
            })
        })
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/usr/bin/true"],
            "Labels": {"org.skiff.bench": "import"},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    });
    let json_err = |source| Error::Json {
        what: "generated image config".into(),
        source,
    };
    let config_bytes = serde_json::to_vec(&config).map_err(json_err)?;
    let config_hex = hex::encode(Sha256::digest(&config_bytes));

    // Legacy v1 layer IDs: a chain over the diff IDs.
    let mut ids = Vec::new();
    let mut parent = String::new();
    for l in layers {
        let id = hex::encode(Sha256::digest(format!("{parent}\n{}", l.diff_id)));
        ids.push(id.clone());
        parent = id;
    }

    let file = File::create(path).ctx("create", path)?;
    let mut b = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
    let mtime = 1_767_225_600; // 2026-01-01
    let add_bytes = |b: &mut tar::Builder<_>, name: &str, data: &[u8]| -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(mtime);
        h.set_size(data.len() as u64);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data).ctx("write", path)
    };
    for (i, (id, l)) in ids.iter().zip(layers).enumerate() {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_mtime(mtime);
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Directory);
        b.append_data(&mut h, format!("{id}/"), io::empty())
            .ctx("write", path)?;
        add_bytes(&mut b, &format!("{id}/VERSION"), b"1.0")?;
        let mut v1 = serde_json::json!({"id": id, "created": created, "os": "linux"});
        if i > 0 {
            v1["parent"] = serde_json::Value::String(ids[i - 1].clone());
        }
        add_bytes(
            &mut b,
            &format!("{id}/json"),
            &serde_json::to_vec(&v1).map_err(json_err)?,
        )?;
        let stored = l.stored_path.as_ref().unwrap_or(&l.tar_path);
        let mut f = File::open(stored).ctx("open", stored)?;
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(mtime);
        h.set_size(f.metadata().ctx("stat", stored)?.len());
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, format!("{id}/layer.tar"), &mut f)
            .ctx("write", path)?;
    }
    add_bytes(&mut b, &format!("{config_hex}.json"), &config_bytes)?;
    let manifest = serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": ["skiff-bench/import:latest"],
        "Layers": ids.iter().map(|id| format!("{id}/layer.tar")).collect::<Vec<_>>(),
    }]);
    add_bytes(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).map_err(json_err)?,
    )?;
    let mut repos = BTreeMap::new();
    repos.insert(
        "skiff-bench/import",
        BTreeMap::from([("latest", ids.last().cloned().unwrap_or_default())]),
    );
    add_bytes(
        &mut b,
        "repositories",
        &serde_json::to_vec(&repos).map_err(json_err)?,
    )?;
    let mut w = b.into_inner().ctx("finish", path)?;
    w.flush().ctx("write", path)?;
    Ok(())
}

/// Regular files and links of a seekable tar, by cleaned name.
struct TarIndex {
    files: HashMap<String, (u64, u64)>,
    links: HashMap<String, String>,
}

impl TarIndex {
    fn resolve(&self, name: &str) -> Option<String> {
        let mut cur = clean(name);
        for _ in 0..16 {
            if self.files.contains_key(&cur) {
                return Some(cur);
            }
            cur = self.links.get(&cur)?.clone();
        }
        None
    }

    fn read(&self, archive: &Path, name: &str) -> Result<Option<Vec<u8>>> {
        let Some(&(offset, size)) = self.resolve(name).and_then(|n| self.files.get(&n)) else {
            return Ok(None);
        };
        if size > 16 << 20 {
            return Err(Error::Image {
                path: archive.to_path_buf(),
                detail: format!("{name} is {size} bytes"),
            });
        }
        let mut f = File::open(archive).ctx("open", archive)?;
        f.seek(SeekFrom::Start(offset)).ctx("seek in", archive)?;
        let mut buf = Vec::with_capacity(size as usize);
        f.take(size).read_to_end(&mut buf).ctx("read", archive)?;
        Ok(Some(buf))
    }
}

fn clean(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

fn index_tar(path: &Path) -> io::Result<TarIndex> {
    let mut ar = tar::Archive::new(File::open(path)?);
    let mut idx = TarIndex {
        files: HashMap::new(),
        links: HashMap::new(),
    };
    for e in ar.entries_with_seek()? {
        let e = e?;
        let name = clean(&String::from_utf8_lossy(&e.path_bytes()));
        match e.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                idx.files.insert(name, (e.raw_file_position(), e.size()));
            }
            tar::EntryType::Symlink => {
                if let Some(t) = e.link_name_bytes() {
                    let t = String::from_utf8_lossy(&t).into_owned();
                    let target = if t.starts_with('/') {
                        clean(&t)
                    } else {
                        let parent = name.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                        clean(&format!("{parent}/{t}"))
                    };
                    idx.links.insert(name, target);
                }
            }
            tar::EntryType::Link => {
                if let Some(t) = e.link_name_bytes() {
                    idx.links.insert(name, clean(&String::from_utf8_lossy(&t)));
                }
            }
            _ => {}
        }
    }
    Ok(idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_a_small_archive_and_caches_it() {
        let src = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(src.path().join("a/b")).expect("mkdir");
        fs::write(src.path().join("a/b/one"), vec![7u8; 3000]).expect("write");
        fs::write(src.path().join("a/two"), b"two").expect("write");
        fs::hard_link(src.path().join("a/two"), src.path().join("a/three")).expect("link");
        std::os::unix::fs::symlink("two", src.path().join("a/sym")).expect("symlink");
        let cache = tempfile::tempdir().expect("tempdir");
        let spec = GenSpec {
            size_mb: 1,
            gzip: true,
            sources: vec![LayerSource {
                label: "test".into(),
                dirs: vec![src.path().join("a")],
                share: 1.0,
            }],
        };
        let trash = cache.path().join("trash");
        let (info, cached) = generate(cache.path(), &trash, &spec).expect("generate");
        assert!(!cached);
        assert_eq!(info.layers.len(), 1);
        assert_eq!(info.layers[0].files, 2, "the hardlink is a link entry");
        assert!(info.archive.is_file());
        assert!(info.compressed());
        let (again, cached) = generate(cache.path(), &trash, &spec).expect("generate");
        assert!(cached);
        assert_eq!(again.layers[0].diff_id, info.layers[0].diff_id);

        // Read back as a user-supplied archive: same layer, decompressed.
        let (user, reason) =
            prepare_existing(cache.path(), &trash, &info.archive).expect("prepare");
        assert!(reason.is_none());
        assert_eq!(user.layers.len(), 1);
        assert_eq!(user.layers[0].diff_id, info.layers[0].diff_id);
        assert_eq!(user.compression, "gzip");
        assert_eq!(user.uncompressed_bytes, info.uncompressed_bytes);
    }
}
