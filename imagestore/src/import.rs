//! Import: open the input and decide what it is (its packaging, then its
//! [`Format`]), plan it, bring each missing layer into the store (in
//! parallel), then record the images.
//!
//! Order of visibility, for crash safety: blobs and snapshots are committed
//! by rename once verified; the image record and its tags are written last.
//! An interrupted import therefore leaves at most unreferenced blobs or
//! snapshot directories (removed by `gc`) and a dead session in `tmp/`
//! (removed by the next command), never a half-visible image.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use indicatif::ProgressBar;
use oci_spec::image::{DescriptorBuilder, ImageManifestBuilder, MediaType};
use serde::Serialize;

use crate::apply::apply_layer;
use crate::blobs::Blobs;
use crate::compression::Compression;
use crate::digest::{Digest, HashingReader, TeeReader};
use crate::docker::DockerManifest;
use crate::error::{Error, IoContext, Result};
use crate::format::{Format, Packaging};
use crate::images::{normalize_reference, ImageRecord, LayerRecord};
use crate::oci;
use crate::plan::{ImagePlan, LayerPlan, Plan};
use crate::platform::{import_mismatch_warning, Platform};
use crate::session::Session;
use crate::snapshot::SnapshotInfo;
use crate::source::{Entry, Input, Opened, Source};
use crate::store::Store;

/// Import options.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Tag the (single) imported image with this reference.
    pub tag: Option<String>,
    /// Platform to pick from multi-platform indexes (default: the host's).
    pub platform: Option<Platform>,
    /// Import only the one image this names when the input holds several:
    /// a reference (or bare tag), else a manifest digest or image id
    /// (`sha256:` optional, a unique prefix). No match is an error.
    pub select: Option<String>,
    /// Progress display; hidden by default.
    pub progress: ProgressBar,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            tag: None,
            platform: None,
            select: None,
            progress: ProgressBar::hidden(),
        }
    }
}

/// One imported image.
#[derive(Debug, Clone, Serialize)]
pub struct ImportedImage {
    /// Image ID (config digest).
    pub id: Digest,
    /// Manifest digest.
    pub manifest: Digest,
    /// References now pointing at it.
    pub refs: Vec<String>,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Number of layers.
    pub layers: usize,
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// The input as named.
    pub input: String,
    /// Detected format.
    pub format: String,
    /// Images imported.
    pub images: Vec<ImportedImage>,
    /// Layers unpacked by this import.
    pub layers_unpacked: usize,
    /// Layers already present and reused.
    pub layers_reused: usize,
    /// Warnings: platform mismatches, skipped device nodes, skipped manifests.
    pub warnings: Vec<String>,
}

/// A layer's snapshot, whether this import unpacked it, and its warnings.
type LayerOutcome = (SnapshotInfo, bool, Vec<String>);

/// Counts bytes into a progress bar.
struct ProgressReader<'a, R> {
    inner: R,
    bar: &'a ProgressBar,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

impl Store {
    /// Import every image an input holds.
    pub fn import(&self, input: &Input, opts: &ImportOptions) -> Result<ImportReport> {
        self.import_opened(Opened::open(input)?, opts)
    }

    /// Import every image of an input opened (and sniffed) already.
    pub(crate) fn import_opened(
        &self,
        opened: Opened,
        opts: &ImportOptions,
    ) -> Result<ImportReport> {
        self.clean_temp_if_idle()?;
        let _shared = self.lock_shared()?;
        let session = self.new_session()?;
        let source = Source::load(opened, &session)?;
        let (format, mut plan) = plan_source(&source, opts.platform.as_ref())?;
        if let Some(selector) = &opts.select {
            plan.select(selector, &source.input)?;
        }
        for img in &plan.images {
            let name = img
                .refs
                .first()
                .cloned()
                .unwrap_or_else(|| img.config_digest.to_string());
            if let Some(w) = import_mismatch_warning(&name, &img.platform, opts.platform.as_ref()) {
                plan.warnings.push(w);
            }
        }
        if let Some(tag) = &opts.tag {
            if plan.images.len() != 1 {
                return Err(Error::TagNeedsOneImage(plan.images.len()));
            }
            let r = normalize_reference(tag)?;
            if !plan.images[0].refs.contains(&r) {
                plan.images[0].refs.push(r);
            }
        }

        // Each distinct chain once, across all images.
        let mut layers: Vec<LayerPlan> = Vec::new();
        for img in &plan.images {
            for l in &img.layers {
                if !layers.iter().any(|x| x.chain_id == l.chain_id) {
                    layers.push(l.clone());
                }
            }
        }
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (snaps, unpacked, reports) =
            self.ensure_layers(&source, &session, &layers, workers, &opts.progress)?;
        let mut warnings = plan.warnings.clone();
        warnings.extend(reports);

        let mut images = Vec::new();
        for img in &plan.images {
            images.push(self.record_image(img, &snaps, &[])?);
        }
        opts.progress.finish_and_clear();
        let format = match source.packaging.wrapper() {
            "" => format.name().to_string(),
            w => format!("{format} ({w}-compressed)"),
        };
        Ok(ImportReport {
            input: source.input.clone(),
            format,
            images,
            layers_unpacked: unpacked,
            layers_reused: layers.len() - unpacked,
            warnings,
        })
    }

    /// Make sure every layer has a snapshot, unpacking missing ones on up
    /// to `workers` threads.
    pub(crate) fn ensure_layers(
        &self,
        source: &dyn Blobs,
        session: &Session,
        layers: &[LayerPlan],
        workers: usize,
        bar: &ProgressBar,
    ) -> Result<(HashMap<Digest, SnapshotInfo>, usize, Vec<String>)> {
        let mut snaps = HashMap::new();
        let mut todo = Vec::new();
        for l in layers {
            match self.snapshots().get(&l.chain_id)? {
                Some(info) => {
                    snaps.insert(l.chain_id.clone(), info);
                }
                None => todo.push(l),
            }
        }
        if todo.is_empty() {
            return Ok((snaps, 0, Vec::new()));
        }
        // Each entry is found (a layout's file opened) once, here: its size
        // counts towards the progress total, and its worker reads it.
        let entries = todo
            .iter()
            .map(|l| source.layer(&l.entry, l.declared_size, &format!("layer {}", l.diff_id)))
            .collect::<Result<Vec<Entry>>>()?;
        bar.set_length(entries.iter().map(Entry::size).sum());
        let entries: Mutex<Vec<Option<Entry>>> =
            Mutex::new(entries.into_iter().map(Some).collect());
        let workers = workers.clamp(1, todo.len());
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results: Mutex<Vec<Option<Result<LayerOutcome>>>> =
            Mutex::new((0..todo.len()).map(|_| None).collect());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= todo.len() || failed.load(Ordering::SeqCst) {
                        break;
                    }
                    let entry = entries.lock().ok().and_then(|mut e| e[i].take());
                    let Some(entry) = entry else {
                        break;
                    };
                    let r = self.ensure_layer(source, session, todo[i], entry, bar);
                    if r.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    if let Ok(mut res) = results.lock() {
                        res[i] = Some(r);
                    }
                });
            }
        });
        let results = results.into_inner().unwrap_or_default();
        let mut unpacked = 0;
        let mut warnings = Vec::new();
        for (l, r) in todo.iter().zip(results) {
            match r {
                Some(Ok((info, did, w))) => {
                    unpacked += usize::from(did);
                    warnings.extend(w);
                    snaps.insert(l.chain_id.clone(), info);
                }
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        Ok((snaps, unpacked, warnings))
    }

    /// Unpack one layer into a new snapshot unless another process has.
    fn ensure_layer(
        &self,
        source: &dyn Blobs,
        session: &Session,
        layer: &LayerPlan,
        entry: Entry,
        bar: &ProgressBar,
    ) -> Result<LayerOutcome> {
        let _lock = self.snapshots().lock_chain(&layer.chain_id)?;
        if let Some(info) = self.snapshots().get(&layer.chain_id)? {
            return Ok((info, false, Vec::new()));
        }
        let named = |place: String| match &layer.declared {
            Some(d) => format!("{d} ({place})"),
            None => format!("{} ({place})", layer.diff_id),
        };
        let name = named(source.place(&layer.entry));
        let spooled = entry.spooled();
        let mut raw = BufReader::with_capacity(256 * 1024, entry.into_reader()?);
        // A plain layer's blob is not kept: its snapshot holds the same
        // bytes, so they are written once (see `SnapshotInfo::blob_kept`).
        let head = raw.fill_buf().map_err(|source| Error::ReadArchive {
            what: format!("layer {name}"),
            source,
        })?;
        let keep_blob = Compression::detect(head) != Compression::None;
        let present = layer
            .declared
            .as_ref()
            .is_some_and(|d| self.content().contains(d));
        let ingest = if keep_blob && spooled.is_none() && !present {
            let p = session.temp_path("blob");
            let f = File::create(&p).ctx("create", &p)?;
            Some((p, BufWriter::with_capacity(1 << 20, f)))
        } else {
            None
        };
        let (ingest_path, ingest_writer) = match ingest {
            Some((p, w)) => (Some(p), Some(w)),
            None => (None, None),
        };
        let tmp = session.temp_path("snap");
        fs::create_dir(&tmp).ctx("create", &tmp)?;

        let mut hashed = HashingReader::new(TeeReader::new(
            ProgressReader { inner: raw, bar },
            ingest_writer,
        ));
        let applied = (|| {
            let buf = BufReader::with_capacity(256 * 1024, &mut hashed);
            let (compression, decoder) =
                Compression::decoder(buf).map_err(|source| Error::ReadArchive {
                    what: format!("layer {name}"),
                    source,
                })?;
            // A plain layer's bytes are its blob: the blob hash is its diff_id,
            // so hash it once. Compressed layers hash the decompressed stream.
            let plain = compression == Compression::None;
            let mut decoder = decoder;
            let mut diff = HashingReader::new(&mut decoder);
            let src: &mut dyn Read = if plain { diff.get_mut() } else { &mut diff };
            let report = apply_layer(src, &tmp).map_err(|source| Error::Apply {
                layer: name.clone(),
                source,
            })?;
            let drained = if plain {
                io::copy(diff.get_mut(), &mut io::sink()).map(drop)
            } else {
                diff.drain()
            };
            drained.map_err(|source| Error::ReadArchive {
                what: format!("layer {name}: decompressing"),
                source,
            })?;
            let (d, n, _) = diff.finish();
            Ok::<_, Error>((if plain { None } else { Some((d, n)) }, compression, report))
        })();
        // A failed write of the blob copy (a full disk) surfaces in the
        // reader as an error; report it as the write failure it is.
        let ingest_failed = |hashed: &mut HashingReader<TeeReader<_, _>>| {
            hashed.get_mut().take_write_error().map(|source| Error::Io {
                op: "write layer blob",
                path: ingest_path.clone().unwrap_or_default(),
                source,
            })
        };
        if let Some(e) = ingest_failed(&mut hashed) {
            return Err(e);
        }
        let (diff, compression, report): (Option<(Digest, u64)>, Compression, _) = match applied {
            Ok(v) => v,
            Err(e) => {
                // A corrupt blob shows first as a decompression or tar
                // error; when its bytes do not hash to the declared digest,
                // that is the cause to report, naming where they came from.
                if let (Some(declared), Ok(())) = (&layer.declared, hashed.drain()) {
                    let (actual, _, _) = hashed.finish();
                    if &actual != declared {
                        return Err(Error::DigestMismatch {
                            what: format!("layer {}", named(source.place(&layer.entry))),
                            expected: declared.to_string(),
                            actual: actual.to_string(),
                        });
                    }
                }
                return Err(e);
            }
        };
        let drained = hashed.drain();
        if let Some(e) = ingest_failed(&mut hashed) {
            return Err(e);
        }
        drained.map_err(|source| Error::ReadArchive {
            what: format!("layer {name}"),
            source,
        })?;
        let (blob_digest, blob_size, tee) = hashed.finish();
        let (diff_digest, unpacked_size) = diff.unwrap_or_else(|| (blob_digest.clone(), blob_size));
        if let Some(mut w) = tee.into_writer() {
            w.flush().map_err(|source| Error::Io {
                op: "write",
                path: ingest_path.clone().unwrap_or_default(),
                source,
            })?;
        }
        // Where the bytes came from is known only now (a registry's mirror).
        let name = named(source.place(&layer.entry));
        if let Some(declared) = &layer.declared {
            if declared != &blob_digest {
                return Err(Error::DigestMismatch {
                    what: format!("layer {name}"),
                    expected: declared.to_string(),
                    actual: blob_digest.to_string(),
                });
            }
        }
        if let Some(size) = layer.declared_size {
            if size != blob_size {
                return Err(Error::SizeMismatch {
                    what: format!("layer {name}"),
                    expected: size,
                    actual: blob_size,
                });
            }
        }
        if diff_digest != layer.diff_id {
            return Err(Error::DiffIdMismatch {
                layer: name,
                expected: layer.diff_id.to_string(),
                actual: diff_digest.to_string(),
            });
        }
        if let Some(p) = &ingest_path {
            self.content().commit_file(p, &blob_digest)?;
        } else if let (Some((spool, _)), true) = (&spooled, keep_blob) {
            let dst = self.content().path(&blob_digest);
            if !dst.exists() {
                fs::hard_link(spool, &dst).ctx("commit blob", &dst)?;
            }
        }
        let media_type = if layer.declared.is_some() {
            layer.media_type.clone()
        } else {
            compression.media_type().to_string()
        };
        let info = self.snapshots().commit(
            &tmp,
            SnapshotInfo {
                chain_id: layer.chain_id.clone(),
                parent: layer.parent.clone(),
                diff_id: layer.diff_id.clone(),
                dir: String::new(),
                blob: blob_digest,
                blob_media_type: media_type,
                blob_size,
                unpacked_size,
                blob_kept: keep_blob,
            },
        )?;
        let warnings = report
            .skipped
            .iter()
            .map(|s| format!("layer {}: skipped {s}", layer.diff_id))
            .collect();
        Ok((info, true, warnings))
    }

    /// Store config and manifest blobs, then the image record and its tags.
    pub(crate) fn record_image(
        &self,
        img: &ImagePlan,
        snaps: &HashMap<Digest, SnapshotInfo>,
        repo_digests: &[String],
    ) -> Result<ImportedImage> {
        self.content()
            .put_bytes(&img.config_digest, &img.config_bytes)?;
        let mut layers = Vec::with_capacity(img.layers.len());
        for l in &img.layers {
            let info = snaps.get(&l.chain_id).ok_or_else(|| Error::Inconsistent {
                image: img.config_digest.to_string(),
                detail: format!("layer {} has no snapshot", l.diff_id),
            })?;
            let (digest, media_type, size) = match &l.declared {
                Some(d) => (
                    d.clone(),
                    l.media_type.clone(),
                    l.declared_size.unwrap_or(info.blob_size),
                ),
                None => (
                    info.blob.clone(),
                    info.blob_media_type.clone(),
                    info.blob_size,
                ),
            };
            layers.push(LayerRecord {
                digest,
                media_type,
                size,
                diff_id: l.diff_id.clone(),
                chain_id: l.chain_id.clone(),
            });
        }
        let manifest = match &img.manifest {
            Some((d, bytes)) => {
                self.content().put_bytes(d, bytes)?;
                d.clone()
            }
            None => {
                let bytes = synthesize_manifest(img, &layers)?;
                let d = Digest::of_bytes(&bytes);
                self.content().put_bytes(&d, &bytes)?;
                d
            }
        };
        let rec = ImageRecord {
            id: img.config_digest.clone(),
            manifest: manifest.clone(),
            config: img.config_digest.clone(),
            platform: img.platform.to_string(),
            layers,
            source_format: img.format.name().to_string(),
            repo_digests: self.merged_repo_digests(&img.config_digest, repo_digests)?,
            imported_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        self.images().put(&rec)?;
        for r in &img.refs {
            self.images().tag(r, &rec.id)?;
        }
        Ok(ImportedImage {
            id: rec.id.clone(),
            manifest,
            refs: img.refs.clone(),
            platform: rec.platform.clone(),
            layers: rec.layers.len(),
        })
    }
}

impl Store {
    /// `new` with the repo digests an earlier record of the image had.
    fn merged_repo_digests(&self, id: &Digest, new: &[String]) -> Result<Vec<String>> {
        let mut all = match self.images().get(id)? {
            Some(old) => old.repo_digests,
            None => Vec::new(),
        };
        for d in new {
            if !all.contains(d) {
                all.push(d.clone());
            }
        }
        Ok(all)
    }
}

/// Decide the input's format from its top-level entries, once, and plan it
/// as that format. `manifest.json`, when there is one, is read here.
fn plan_source(source: &Source, platform: Option<&Platform>) -> Result<(Format, Plan)> {
    let Some(format) = Format::from_markers(source.has("index.json"), source.has("manifest.json"))
    else {
        let detail = if source.has("repositories") {
            "it has a `repositories` file but no manifest.json (pre-Docker-1.10 save format)"
                .to_string()
        } else {
            let what = match source.packaging {
                Packaging::Directory => "the directory",
                Packaging::Tar | Packaging::Compressed(_) => "it is a tar archive but",
            };
            let entries = if source.is_empty() {
                " (it has no entries at all)"
            } else {
                ""
            };
            format!("{what} has no manifest.json or index.json at its top level{entries}")
        };
        return Err(Error::UnknownFormat {
            input: source.input.clone(),
            detail,
        });
    };
    let docker_manifest = if format.has_docker_manifest() {
        Some(DockerManifest::read(source)?)
    } else {
        None
    };
    let plan = match (format, &docker_manifest) {
        (Format::DockerArchive, Some(m)) => crate::docker::plan(source, m, platform, format)?,
        (_, m) => oci::plan(source, format, m.as_ref(), platform)?,
    };
    Ok((format, plan))
}

/// An OCI manifest for an image that came without one (legacy `docker save`).
fn synthesize_manifest(img: &ImagePlan, layers: &[LayerRecord]) -> Result<Vec<u8>> {
    let bad = |e: oci_spec::OciSpecError| Error::Inconsistent {
        image: img.config_digest.to_string(),
        detail: format!("cannot build a manifest: {e}"),
    };
    let digest =
        |d: &Digest| -> Result<oci_spec::image::Digest> { d.to_string().parse().map_err(bad) };
    let config = DescriptorBuilder::default()
        .media_type(MediaType::ImageConfig)
        .digest(digest(&img.config_digest)?)
        .size(img.config_bytes.len() as u64)
        .build()
        .map_err(bad)?;
    let mut descs = Vec::new();
    for l in layers {
        descs.push(
            DescriptorBuilder::default()
                .media_type(MediaType::from(l.media_type.as_str()))
                .digest(digest(&l.digest)?)
                .size(l.size)
                .build()
                .map_err(bad)?,
        );
    }
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(descs)
        .build()
        .map_err(bad)?;
    manifest.to_string().map(String::into_bytes).map_err(bad)
}
