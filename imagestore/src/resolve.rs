//! A command's IMAGE argument, resolved once: a store reference, or an
//! archive path (or `-`, standard input) to import first. `skiff run` and
//! `skiff check --image` take one ([`Store::resolve_or_import`]); what comes
//! out is the image's [`ImageId`], which the runtime looks up with
//! [`Store::image`] without parsing anything again.
//!
//! Which the argument is, is decided from the argument and what is at that
//! path, never by asking the store first:
//! - `-` is standard input, imported;
//! - a path-like argument (it has a `/` or starts with `.`) that is a
//!   directory holding `oci-layout`, `index.json` or `manifest.json` is a
//!   layout directory, imported;
//! - a regular file named like an archive (`.tar`, `.tar.*`, `.tgz`,
//!   `.tzst`), or a path-like one whose first bytes are a tar, gzip or zstd
//!   stream, is an archive, imported;
//! - another path-like argument naming something is refused
//!   ([`ResolveError::NotAnArchive`], [`ResolveError::NotArchiveBytes`]), so
//!   `skiff run ../../etc` never tries to import `/etc`;
//! - anything else is a store reference: a tag, an id or an id prefix.

use std::path::Path;

use crate::error::Error;
use crate::images::ImageId;
use crate::import::{ImportOptions, ImportReport};
use crate::source::{Input, Opened};
use crate::store::Store;

/// An IMAGE argument resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The image to run.
    pub id: ImageId,
    /// What the import did, when the argument was an archive.
    pub import: Option<ImportReport>,
}

/// Why an IMAGE argument names no image. Every variant names the argument.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A path-like argument names a directory that is not an image layout,
    /// or a special file.
    #[error(
        "no image named {arg:?} in the store, and {arg} is not an archive file or image \
         layout directory (it is a {kind}); import an image with `skiff image import`"
    )]
    NotAnArchive {
        /// The argument.
        arg: String,
        /// `directory` or `special file`.
        kind: &'static str,
    },
    /// A path-like argument names a regular file that is not a tar, gzip or
    /// zstd stream.
    #[error(
        "no image named {arg:?} in the store, and {arg} is not an archive file \
         (not a tar, gzip or zstd stream)"
    )]
    NotArchiveBytes {
        /// The argument.
        arg: String,
    },
    /// A path-like argument names a regular file that could not be read to
    /// tell whether it is an archive.
    #[error("cannot read {arg} to tell whether it is an image archive")]
    Inspect {
        /// The argument.
        arg: String,
        /// Why.
        #[source]
        source: Error,
    },
    /// The archive could not be imported.
    #[error("importing {arg}")]
    Import {
        /// The argument.
        arg: String,
        /// Why.
        #[source]
        source: Error,
    },
    /// The archive holds more (or fewer) than one image, so which to run is
    /// not known. They were imported.
    #[error(
        "{arg} holds {count} images; import it with `skiff image import` and run one by reference"
    )]
    NotOneImage {
        /// The argument.
        arg: String,
        /// How many images it holds.
        count: usize,
    },
    /// The reference names no image (or several), or the store could not
    /// be read.
    #[error(transparent)]
    Lookup(Error),
}

/// What an IMAGE argument is (see the module documentation).
#[derive(Debug)]
enum Argument {
    /// A store reference.
    Reference,
    /// An archive or layout directory, opened and sniffed.
    Archive(Opened),
}

impl Argument {
    /// Decide what `arg` is.
    fn classify(arg: &str) -> Result<Argument, ResolveError> {
        let open = |input: Input| {
            Opened::open(&input)
                .map(Argument::Archive)
                .map_err(|source| ResolveError::Import {
                    arg: arg.to_string(),
                    source,
                })
        };
        if arg == "-" {
            return open(Input::Stdin);
        }
        let path = Path::new(arg);
        let Ok(meta) = std::fs::metadata(path) else {
            return Ok(Argument::Reference);
        };
        let path_like = arg.contains('/') || arg.starts_with('.');
        if meta.is_dir() && path_like && is_image_layout_dir(path) {
            return open(Input::from_arg(arg));
        }
        if !meta.is_file() {
            if !path_like {
                return Ok(Argument::Reference);
            }
            return Err(ResolveError::NotAnArchive {
                arg: arg.to_string(),
                kind: if meta.is_dir() {
                    "directory"
                } else {
                    "special file"
                },
            });
        }
        if archive_name(arg) {
            // The import says what is wrong with it, if anything is.
            return open(Input::from_arg(arg));
        }
        if !path_like {
            return Ok(Argument::Reference);
        }
        match Opened::open(&Input::from_arg(arg)) {
            Ok(opened) => Ok(Argument::Archive(opened)),
            Err(Error::UnknownFormat { .. }) => Err(ResolveError::NotArchiveBytes {
                arg: arg.to_string(),
            }),
            Err(source) => Err(ResolveError::Inspect {
                arg: arg.to_string(),
                source,
            }),
        }
    }
}

/// Whether a file name says it is an archive.
fn archive_name(arg: &str) -> bool {
    arg.ends_with(".tar")
        || arg.contains(".tar.")
        || arg.ends_with(".tgz")
        || arg.ends_with(".tzst")
}

/// Whether a directory holds an OCI image layout or an unpacked `docker save`.
fn is_image_layout_dir(p: &Path) -> bool {
    ["oci-layout", "index.json", "manifest.json"]
        .iter()
        .any(|f| p.join(f).is_file())
}

impl Store {
    /// Resolve an IMAGE argument to the image it names: look a reference up
    /// in the store, or import an archive (with `opts`) and take its one
    /// image. See the [module documentation](self) for which is which.
    pub fn resolve_or_import(
        &self,
        arg: &str,
        opts: &ImportOptions,
    ) -> Result<Resolved, ResolveError> {
        let opened = match Argument::classify(arg)? {
            Argument::Reference => {
                let rec = self.resolve(arg).map_err(|e| match e {
                    // A path that names nothing is no reference either: say
                    // there is no such image, not how references are spelt.
                    Error::InvalidReference { .. }
                        if arg.starts_with('/') || arg.starts_with('.') || archive_name(arg) =>
                    {
                        ResolveError::Lookup(Error::ImageNotFound(arg.to_string()))
                    }
                    e => ResolveError::Lookup(e),
                })?;
                return Ok(Resolved {
                    id: rec.image_id(),
                    import: None,
                });
            }
            Argument::Archive(opened) => opened,
        };
        let report = self
            .import_opened(opened, opts)
            .map_err(|source| ResolveError::Import {
                arg: arg.to_string(),
                source,
            })?;
        match report.images.as_slice() {
            [one] => Ok(Resolved {
                id: ImageId::from_config(one.id.clone()),
                import: Some(report),
            }),
            images => Err(ResolveError::NotOneImage {
                arg: arg.to_string(),
                count: images.len(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::digest::Digest;
    use crate::platform::Platform;

    /// A layerless image config (no layer to apply, so no privilege needed);
    /// `n` makes each one distinct.
    fn config(n: u32) -> Vec<u8> {
        let host = Platform::host().to_string();
        let arch = host.split('/').nth(1).unwrap_or("amd64");
        format!(
            r#"{{"architecture":"{arch}","os":"linux","config":{{"Env":["N={n}"]}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        )
        .into_bytes()
    }

    /// `docker save` files: `manifest.json` and one config per image.
    fn save_files(images: &[(u32, &str)]) -> Vec<(String, Vec<u8>)> {
        let mut files = Vec::new();
        let mut manifest = Vec::new();
        for (n, tag) in images {
            let cfg = config(*n);
            let name = format!("{}.json", Digest::of_bytes(&cfg).hex());
            manifest.push(serde_json::json!({"Config": name, "RepoTags": [tag], "Layers": []}));
            files.push((name, cfg));
        }
        let manifest = serde_json::to_vec(&manifest).expect("json");
        files.insert(0, ("manifest.json".to_string(), manifest));
        files
    }

    fn write_tar(path: &Path, files: &[(String, Vec<u8>)]) {
        let mut b = tar::Builder::new(std::fs::File::create(path).expect("create"));
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, &data[..]).expect("append");
        }
        b.finish().expect("finish");
    }

    struct Fixture {
        dir: tempfile::TempDir,
        store: Store,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().expect("tmp");
            let store = Store::open(dir.path().join("store")).expect("store");
            Fixture { dir, store }
        }

        /// A path argument beneath the fixture's directory.
        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn resolve(&self, arg: &Path) -> Result<Resolved, ResolveError> {
            let arg = arg.to_str().expect("utf8");
            self.store.resolve_or_import(arg, &ImportOptions::default())
        }
    }

    #[test]
    fn test_resolve_or_import_reference_found() {
        let f = Fixture::new();
        let archive = f.path("one.tar");
        write_tar(&archive, &save_files(&[(1, "skiff-test/one:1")]));
        let report = f
            .store
            .import(&Input::Path(archive), &ImportOptions::default())
            .expect("import");
        let r = f
            .store
            .resolve_or_import("skiff-test/one:1", &ImportOptions::default())
            .expect("resolves");
        assert!(r.import.is_none());
        assert_eq!(r.id.digest(), &report.images[0].id);
        assert_eq!(
            f.store.image(&r.id).expect("record").id,
            report.images[0].id
        );
        // An id prefix is a reference too.
        let prefix = &report.images[0].id.hex()[..12];
        let r = f
            .store
            .resolve_or_import(prefix, &ImportOptions::default())
            .expect("prefix");
        assert_eq!(r.id.digest(), &report.images[0].id);
    }

    #[test]
    fn test_resolve_or_import_archive_path_imported() {
        let f = Fixture::new();
        let archive = f.path("one.tar");
        write_tar(&archive, &save_files(&[(2, "skiff-test/two:1")]));
        let r = f.resolve(&archive).expect("imports");
        let report = r.import.expect("an import happened");
        assert_eq!(report.images.len(), 1);
        assert_eq!(report.format, "docker-archive");
        assert_eq!(r.id.digest(), &report.images[0].id);
        let rec = f.store.image(&r.id).expect("recorded");
        assert_eq!(rec.image_id(), r.id);
        // Not named like an archive, but path-like and a tar: imported too.
        let unnamed = f.path("image-file");
        std::fs::copy(&archive, &unnamed).expect("copy");
        let again = f.resolve(&unnamed).expect("imports");
        assert_eq!(again.id, r.id);
        assert!(again.import.is_some());
    }

    #[test]
    fn test_resolve_or_import_layout_directory_imported() {
        let f = Fixture::new();
        let dir = f.path("unpacked");
        std::fs::create_dir(&dir).expect("mkdir");
        for (name, data) in save_files(&[(3, "skiff-test/three:1")]) {
            std::fs::write(dir.join(name), data).expect("write");
        }
        let r = f.resolve(&dir).expect("imports");
        assert!(r.import.is_some());
        assert!(f.store.image(&r.id).is_ok());
    }

    #[test]
    fn test_resolve_or_import_directory_not_a_layout_is_refused() {
        let f = Fixture::new();
        let dir = f.path("notes");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("notes.txt"), "not an image").expect("write");
        let e = f.resolve(&dir).expect_err("refused");
        assert!(
            matches!(
                &e,
                ResolveError::NotAnArchive {
                    kind: "directory",
                    ..
                }
            ),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains("no image named"), "{msg}");
        assert!(msg.contains(dir.to_str().expect("utf8")), "{msg}");
        assert!(msg.contains("it is a directory"), "{msg}");
        // A path-like file that is no archive is refused, naming it.
        let e = f.resolve(&dir.join("notes.txt")).expect_err("refused");
        assert!(matches!(e, ResolveError::NotArchiveBytes { .. }), "{e:?}");
        assert!(e.to_string().contains("not a tar, gzip or zstd stream"));
        assert!(f.store.images().list().expect("list").is_empty());
    }

    #[test]
    fn test_resolve_or_import_multi_image_archive_is_refused() {
        let f = Fixture::new();
        let archive = f.path("two.tar");
        write_tar(&archive, &save_files(&[(4, "a/b:1"), (5, "a/c:1")]));
        let e = f.resolve(&archive).expect_err("refused");
        assert!(
            matches!(e, ResolveError::NotOneImage { count: 2, .. }),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains("holds 2 images; import it"), "{msg}");
        assert!(msg.contains(archive.to_str().expect("utf8")), "{msg}");
    }

    #[test]
    fn test_resolve_or_import_missing_path_is_a_reference() {
        let f = Fixture::new();
        let missing = f.path("missing.tar");
        let e = f.resolve(&missing).expect_err("no such image");
        assert!(
            matches!(e, ResolveError::Lookup(Error::ImageNotFound(_))),
            "{e:?}"
        );
        assert!(e.to_string().contains("no such image"), "{e}");
        let e = f
            .store
            .resolve_or_import("busybox", &ImportOptions::default())
            .expect_err("no such image");
        assert!(matches!(e, ResolveError::Lookup(_)), "{e:?}");
    }

    #[test]
    fn test_resolve_or_import_bad_named_archive_fails_importing() {
        let f = Fixture::new();
        let bad = f.path("bad.tar");
        std::fs::write(&bad, "not a tar at all").expect("write");
        let e = f.resolve(&bad).expect_err("refused");
        assert!(
            matches!(
                e,
                ResolveError::Import {
                    source: Error::UnknownFormat { .. },
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("importing "), "{e}");
    }
}
