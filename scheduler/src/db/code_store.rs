//! Where code packages are kept: one implementation per engine
//! (`sqlite_code.rs`, `postgres/code.rs`). On one host the package's image
//! is in the worker's store and the table only describes it; on a fleet
//! the database also keeps the layer as pushed, so that every worker can
//! make the image in its own store ([`crate::code_fetch`]).

use std::path::Path;

use crate::code::Package;
use crate::error::QueueError;

/// The code packages table.
#[async_trait::async_trait]
pub trait CodeStorage: Send + Sync + std::fmt::Debug {
    /// Record (or replace) `p`, pushed as the file `layer` (a plain or
    /// gzip'd tar), after its image was made in this worker's store.
    async fn put_package(&self, p: &Package, layer: &Path) -> Result<(), QueueError>;

    /// The package `name`.
    async fn package(&self, name: &str) -> Result<Option<Package>, QueueError>;

    /// Every package, by name.
    async fn packages(&self) -> Result<Vec<Package>, QueueError>;

    /// Forget `name`; whether there was one.
    async fn remove_package(&self, name: &str) -> Result<bool, QueueError>;

    /// Write the layer `name` was pushed with to `to`, checked against its
    /// digest: the package as of that layer, or `None` when this engine
    /// keeps no layers (one host: its store has the image) or there is
    /// no such package.
    async fn fetch_layer(&self, name: &str, to: &Path) -> Result<Option<Package>, QueueError>;
}
