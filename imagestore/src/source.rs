//! Archive sources: a uniform view of "named entries" over the inputs skiff
//! accepts, detected from their content, never from a file name.
//!
//! - a directory (an OCI layout, or an unpacked `docker save`): entries are
//!   files opened beneath it with `openat2(RESOLVE_BENEATH)`;
//! - a seekable uncompressed tar file: the tar is indexed once (headers only)
//!   and entries are read in place at their offsets, in parallel;
//! - a stream (stdin, or any input wrapped in gzip or zstd): entries are
//!   streamed once into the session's ingest area, hashed on the way, and
//!   later committed to the content store by rename when referenced.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};

use crate::apply::clean_path;
use crate::digest::{Digest, HashingReader};
use crate::error::{Error, IoContext, Result};
use crate::format::Packaging;
use crate::session::Session;

/// Where an import reads from.
#[derive(Debug, Clone)]
pub enum Input {
    /// A file or directory.
    Path(PathBuf),
    /// Standard input.
    Stdin,
}

impl Input {
    /// The input a command-line argument names: `-` is standard input,
    /// anything else a path.
    pub fn from_arg(arg: &str) -> Input {
        if arg == "-" {
            Input::Stdin
        } else {
            Input::Path(PathBuf::from(arg))
        }
    }

    /// How the input is named in messages.
    pub fn display(&self) -> String {
        match self {
            Input::Path(p) => p.display().to_string(),
            Input::Stdin => "<stdin>".to_string(),
        }
    }
}

/// The largest JSON document (manifest, index, config) skiff will read.
pub(crate) const MAX_JSON: u64 = 16 << 20;
const MAX_LINK_DEPTH: usize = 16;

/// Standard input with its sniffed first bytes replayed ahead of the rest.
type StdinReader = BufReader<io::Chain<io::Cursor<Vec<u8>>, io::StdinLock<'static>>>;

/// An input opened, its [`Packaging`] decided from its first bytes: the one
/// place an input is sniffed. [`Source::load`] then reads it accordingly.
#[derive(Debug)]
pub(crate) struct Opened {
    /// How the input is named in messages.
    pub(crate) name: String,
    /// What its first bytes (or being a directory) say it is.
    pub(crate) packaging: Packaging,
    body: Body,
}

#[derive(Debug)]
enum Body {
    Dir(PathBuf),
    /// The file, with the buffer its first bytes were sniffed through.
    File(PathBuf, BufReader<File>),
    Stdin(StdinReader),
}

impl Opened {
    /// Open an input and sniff it. An input that is not an image archive
    /// is [`Error::UnknownFormat`], saying what it looks like instead.
    pub(crate) fn open(input: &Input) -> Result<Opened> {
        let name = input.display();
        match input {
            Input::Path(p) if p.is_dir() => Ok(Opened {
                name,
                packaging: Packaging::Directory,
                body: Body::Dir(p.clone()),
            }),
            Input::Path(p) => {
                let file = File::open(p).ctx("open", p)?;
                let mut reader = BufReader::with_capacity(256 * 1024, file);
                let packaging = sniff(&mut reader, &name)?;
                Ok(Opened {
                    name,
                    packaging,
                    body: Body::File(p.clone(), reader),
                })
            }
            Input::Stdin => {
                // A pipe may deliver the first block in pieces: gather it
                // before sniffing, then replay it ahead of the rest.
                let mut stdin = io::stdin().lock();
                let mut prefix = Vec::with_capacity(512);
                (&mut stdin)
                    .take(512)
                    .read_to_end(&mut prefix)
                    .map_err(|source| Error::ReadArchive {
                        what: name.clone(),
                        source,
                    })?;
                let mut reader =
                    BufReader::with_capacity(256 * 1024, io::Cursor::new(prefix).chain(stdin));
                let packaging = sniff(&mut reader, &name)?;
                Ok(Opened {
                    name,
                    packaging,
                    body: Body::Stdin(reader),
                })
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Loc {
    /// A byte range of a file (a tar member in place, or a whole file).
    Range {
        path: PathBuf,
        offset: u64,
        size: u64,
    },
    /// A file in the session's ingest area, already hashed.
    Spooled {
        path: PathBuf,
        size: u64,
        digest: Digest,
    },
}

/// Named entries of an input archive.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) input: String,
    /// How the input was packaged (its outer wrapper, for reports).
    pub(crate) packaging: Packaging,
    entries: HashMap<String, Loc>,
    links: HashMap<String, String>,
    dir: Option<PathBuf>,
}

/// Normalise an archive entry name: relative, no `.`/`..`, `/`-joined.
pub(crate) fn clean_name(raw: &[u8]) -> Option<String> {
    let comps = clean_path(raw);
    if comps.is_empty() {
        return None;
    }
    let parts: Option<Vec<&str>> = comps.iter().map(|c| c.to_str()).collect();
    Some(parts?.join("/"))
}

impl Source {
    /// Read an opened input as its packaging says: a directory in place, a
    /// seekable tar indexed in place, anything else streamed into the session.
    pub(crate) fn load(opened: Opened, session: &Session) -> Result<Source> {
        let Opened {
            name,
            packaging,
            body,
        } = opened;
        let compressed = match (body, packaging) {
            (Body::Dir(p), _) => {
                return Ok(Source {
                    input: name,
                    packaging: Packaging::Directory,
                    entries: HashMap::new(),
                    links: HashMap::new(),
                    dir: Some(p),
                })
            }
            (Body::File(p, reader), Packaging::Tar) => {
                let mut file = reader.into_inner();
                file.seek(SeekFrom::Start(0)).ctx("seek in", &p)?;
                return Source::index_tar(name, &p, file);
            }
            (Body::Stdin(reader), Packaging::Tar) => {
                return Source::spool(name, packaging, reader, session)
            }
            (Body::File(_, reader), Packaging::Compressed(c)) => c.wrap(reader),
            (Body::Stdin(reader), Packaging::Compressed(c)) => c.wrap(reader),
            // `Opened::open` gives only directories this packaging.
            (Body::File(..) | Body::Stdin(_), Packaging::Directory) => {
                return Err(Error::UnknownFormat {
                    input: name,
                    detail: "not a directory".into(),
                })
            }
        };
        let dec = compressed.map_err(|source| Error::ReadArchive {
            what: name.clone(),
            source,
        })?;
        Source::spool(name, packaging, BufReader::new(dec), session)
    }

    /// Index a seekable tar: read headers only, note each member's offset.
    fn index_tar(input: String, path: &Path, file: File) -> Result<Source> {
        let mut archive = tar::Archive::new(file);
        let iter = archive
            .entries_with_seek()
            .map_err(|source| Error::ReadArchive {
                what: input.clone(),
                source,
            })?;
        let (entries, links) = collect_entries(&input, iter, |_, entry| {
            Ok(Loc::Range {
                path: path.to_path_buf(),
                offset: entry.raw_file_position(),
                size: entry.size(),
            })
        })?;
        Ok(Source {
            input,
            packaging: Packaging::Tar,
            entries,
            links,
            dir: None,
        })
    }

    /// Stream a tar once, spooling each member into the session (hashed).
    fn spool<R: Read>(
        input: String,
        packaging: Packaging,
        reader: R,
        session: &Session,
    ) -> Result<Source> {
        let mut archive = tar::Archive::new(reader);
        let iter = archive.entries().map_err(|source| Error::ReadArchive {
            what: input.clone(),
            source,
        })?;
        let mut buf = vec![0u8; 256 * 1024];
        let (entries, links) = collect_entries(&input, iter, |name, entry| {
            let path = session.temp_path("spool");
            let mut out = File::create(&path).ctx("create", &path)?;
            let mut hashing = HashingReader::new(entry);
            loop {
                let n = hashing
                    .read(&mut buf)
                    .map_err(|source| Error::ReadArchive {
                        what: format!("{input}: entry {name}"),
                        source,
                    })?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n]).ctx("write", &path)?;
            }
            let (digest, size, _) = hashing.finish();
            Ok(Loc::Spooled { path, size, digest })
        })?;
        // Read on to the end: a compressed wrapper's trailer (checksum and
        // length) follows the tar's end marker, and a truncated one must fail.
        io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(|source| {
            Error::ReadArchive {
                what: format!("{input} (its compressed trailer, after the tar end marker)"),
                source,
            }
        })?;
        Ok(Source {
            input,
            packaging,
            entries,
            links,
            dir: None,
        })
    }

    /// Follow archive-internal links (`layer.tar` symlinks in `docker save`).
    fn resolve<'a>(&'a self, name: &'a str) -> Result<(String, Option<&'a Loc>)> {
        let mut cur = clean_name(name.as_bytes()).unwrap_or_default();
        for _ in 0..MAX_LINK_DEPTH {
            if let Some(loc) = self.entries.get(&cur) {
                return Ok((cur, Some(loc)));
            }
            match self.links.get(&cur) {
                Some(t) => cur = t.clone(),
                None => return Ok((cur, None)),
            }
        }
        Err(Error::MissingEntry {
            entry: name.to_string(),
            what: "link chain too long or cyclic".into(),
        })
    }

    /// Whether an archive has no entries at all (a directory never counts
    /// as empty here).
    pub(crate) fn is_empty(&self) -> bool {
        self.dir.is_none() && self.entries.is_empty() && self.links.is_empty()
    }

    /// Whether an entry exists.
    pub(crate) fn has(&self, name: &str) -> bool {
        if let Some(dir) = &self.dir {
            return open_beneath(dir, name).is_ok();
        }
        matches!(self.resolve(name), Ok((_, Some(_))))
    }

    /// Find an entry: opened already when it is a file of a directory, its
    /// place noted otherwise. Either way it is opened once, by
    /// [`Entry::into_reader`].
    pub(crate) fn entry(&self, name: &str, what: &str) -> Result<Entry> {
        let missing = || Error::MissingEntry {
            entry: name.to_string(),
            what: what.to_string(),
        };
        if let Some(dir) = &self.dir {
            let file = open_beneath(dir, name).map_err(|e| match e.raw_os_error() {
                _ if e.kind() == io::ErrorKind::NotFound => missing(),
                // RESOLVE_BENEATH refused a symlink that leaves the layout.
                Some(libc::EXDEV) => Error::MissingEntry {
                    entry: name.to_string(),
                    what: format!("{what}; it is a symlink leading out of {}", dir.display()),
                },
                _ => Error::io("open", dir.join(name), e),
            })?;
            let size = file.metadata().ctx("stat", dir.join(name))?.len();
            return Ok(Entry {
                size,
                body: EntryBody::Open(file),
            });
        }
        let (_, loc) = self.resolve(name)?;
        let loc = loc.ok_or_else(missing)?;
        let size = match loc {
            Loc::Range { size, .. } | Loc::Spooled { size, .. } => *size,
        };
        Ok(Entry {
            size,
            body: EntryBody::At(loc.clone()),
        })
    }

    /// Open an entry for reading, with its size.
    pub(crate) fn open(&self, name: &str, what: &str) -> Result<(Box<dyn Read + Send>, u64)> {
        let entry = self.entry(name, what)?;
        let size = entry.size();
        Ok((entry.into_reader()?, size))
    }

    /// Read a small entry (JSON) whole.
    pub(crate) fn read_small(&self, name: &str, what: &str) -> Result<Vec<u8>> {
        let (reader, size) = self.open(name, what)?;
        if size > MAX_JSON {
            return Err(Error::BadJson {
                what: format!("{what} (archive entry {name})"),
                detail: format!("{size} bytes is larger than the {MAX_JSON}-byte limit"),
            });
        }
        let mut data = Vec::with_capacity(size as usize);
        reader
            .take(MAX_JSON + 1)
            .read_to_end(&mut data)
            .map_err(|source| Error::ReadArchive {
                what: format!("{}: entry {name}", self.input),
                source,
            })?;
        Ok(data)
    }
}

/// One entry of a [`Source`] (or a registry's blob), found and not yet read.
#[derive(Debug)]
pub(crate) struct Entry {
    size: u64,
    body: EntryBody,
}

/// Opens a blob that is read from elsewhere (a registry), when it is read.
pub(crate) type OpenBlob = Box<dyn FnOnce() -> Result<Box<dyn Read + Send>> + Send>;

enum EntryBody {
    /// A file beneath a directory, opened safely already.
    Open(File),
    /// A place in the archive or the session's ingest area.
    At(Loc),
    /// Opened by the reader that reads it.
    Remote(OpenBlob),
}

impl std::fmt::Debug for EntryBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntryBody::Open(file) => f.debug_tuple("Open").field(file).finish(),
            EntryBody::At(loc) => f.debug_tuple("At").field(loc).finish(),
            EntryBody::Remote(_) => f.write_str("Remote"),
        }
    }
}

impl Entry {
    /// A blob of `size` bytes that `open` opens when it is read.
    pub(crate) fn remote(size: u64, open: OpenBlob) -> Entry {
        Entry {
            size,
            body: EntryBody::Remote(open),
        }
    }

    /// Its size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The spooled file and its digest, when the entry was streamed into ingest.
    pub(crate) fn spooled(&self) -> Option<(PathBuf, Digest)> {
        match &self.body {
            EntryBody::At(Loc::Spooled { path, digest, .. }) => {
                Some((path.clone(), digest.clone()))
            }
            _ => None,
        }
    }

    /// Its content.
    pub(crate) fn into_reader(self) -> Result<Box<dyn Read + Send>> {
        match self.body {
            EntryBody::Open(file) => Ok(Box::new(file)),
            EntryBody::At(Loc::Range { path, offset, size }) => {
                let mut f = File::open(&path).ctx("open", &path)?;
                f.seek(SeekFrom::Start(offset)).ctx("seek in", &path)?;
                Ok(Box::new(f.take(size)))
            }
            EntryBody::At(Loc::Spooled { path, .. }) => {
                let f = File::open(&path).ctx("open", &path)?;
                Ok(Box::new(f))
            }
            EntryBody::Remote(open) => open(),
        }
    }
}

/// Walk a tar's members: regular files become entries through `on_file`,
/// symlinks and hardlinks become archive-internal links; the rest is ignored.
fn collect_entries<R: Read>(
    input: &str,
    iter: tar::Entries<'_, R>,
    mut on_file: impl FnMut(&str, &mut tar::Entry<'_, R>) -> Result<Loc>,
) -> Result<(HashMap<String, Loc>, HashMap<String, String>)> {
    let mut entries = HashMap::new();
    let mut links = HashMap::new();
    let mut last = String::from("<start>");
    for entry in iter {
        let mut entry = entry.map_err(|source| Error::ReadArchive {
            what: format!("{input} (after entry {last})"),
            source,
        })?;
        let Some(name) = clean_name(&entry.path_bytes()) else {
            continue;
        };
        last = name.clone();
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let loc = on_file(&name, &mut entry)?;
                entries.insert(name, loc);
            }
            t @ (tar::EntryType::Symlink | tar::EntryType::Link) => {
                if let Some(target) = link_target(&name, t, entry.link_name_bytes().as_deref()) {
                    links.insert(name, target);
                }
            }
            _ => {}
        }
    }
    Ok((entries, links))
}

/// An archive-internal link target, as a clean entry name. Symlink targets
/// are relative to the link's directory; hardlink targets are archive paths.
fn link_target(name: &str, kind: tar::EntryType, target: Option<&[u8]>) -> Option<String> {
    let target = target?;
    if kind == tar::EntryType::Symlink && !target.starts_with(b"/") {
        let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let mut joined = dir.as_bytes().to_vec();
        joined.push(b'/');
        joined.extend_from_slice(target);
        return clean_name(&joined);
    }
    clean_name(target)
}

/// Open a file beneath a directory; symlinks inside it are followed only
/// while they stay beneath it.
fn open_beneath(dir: &Path, name: &str) -> io::Result<File> {
    let clean =
        clean_name(name.as_bytes()).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
    let dirfd = nix::fcntl::open(
        dir,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: `open` just returned this fd and nothing else owns it.
    let dirfd = unsafe { OwnedFd::from_raw_fd(dirfd) };
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = nix::fcntl::openat2(std::os::fd::AsRawFd::as_raw_fd(&dirfd), clean.as_str(), how)?;
    // SAFETY: `openat2` just returned this fd and nothing else owns it.
    let file = unsafe { File::from_raw_fd(fd) };
    if !file.metadata()?.is_file() {
        return Err(io::Error::from(io::ErrorKind::NotFound));
    }
    Ok(file)
}

/// Sniff an input's first bytes ([`Packaging::sniff`]).
fn sniff<R: BufRead>(reader: &mut R, name: &str) -> Result<Packaging> {
    let head = reader.fill_buf().map_err(|source| Error::ReadArchive {
        what: name.to_string(),
        source,
    })?;
    Packaging::sniff(head).map_err(|why| Error::UnknownFormat {
        input: name.to_string(),
        detail: why.to_string(),
    })
}
