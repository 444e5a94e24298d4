//! skiff's image store.
//!
//! - [`content`]: blobs addressed by digest, written through an ingest area.
//! - [`format`]: what an input is, decided once: its packaging, then its format.
//! - [`import`]: importers for `docker save` archives (legacy and Docker 25+),
//!   OCI archives and layout directories, plain or gzip-wrapped, from files or stdin.
//! - [`resolve`]: a command's IMAGE argument, a store reference or an archive
//!   to import first, resolved once to an [`ImageId`].
//! - [`apply`]: the hostile-input-safe layer applier.
//! - [`snapshot`]: one unpacked directory per chain ID, handed out as mount descriptions.
//! - [`gc`]: garbage collection and leases for running jobs.
//! - [`verify`]: the store check (`image verify`) and its repair.
//!
//! See `docs/store.md` for the on-disk layout.

pub use oci_spec;

pub mod apply;
mod blobs;
pub mod compression;
pub mod content;
pub mod derive;
pub mod digest;
mod docker;
pub mod error;
pub mod export;
pub mod format;
mod fsutil;
pub mod images;
pub mod import;
mod oci;
mod plan;
pub mod platform;
pub mod process_lock;
pub mod pull;
mod pull_error;
pub mod reference;
mod reference_grammar;
pub mod remove;
pub mod resolve;
pub mod seed;
mod seed_unpack;
pub mod session;
pub mod snapshot;
pub mod snapshot_tar;
mod snapshot_tree;
pub mod source;
pub mod verify;

pub use digest::Digest;
pub use error::{Error, Result};
pub mod gc;
pub mod store;

pub use format::{Format, Packaging};
pub use images::{ImageId, ImageRecord, LayerRecord};
pub use import::{ImportOptions, ImportReport, ImportedImage};
pub use platform::Platform;
pub use pull::{PullOptions, PullReport};
pub use reference::ImageRef;
pub use resolve::{ResolveError, Resolved};
pub use snapshot::MountDescription;
pub use source::Input;
pub use store::{Lease, Store, DEFAULT_ROOT};
pub use verify::VerifyReport;
