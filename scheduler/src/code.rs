//! Code packages, after IronWorker's: an uploaded tar of code stored as one
//! extra layer above a base image (`imagestore::derive`), tagged
//! `skiff-code/<name>:latest`. Jobs name the package (`"code": "<name>"`).
//! The table is behind [`crate::db::code_store::CodeStorage`]; on a fleet
//! each worker makes the image from the stored layer
//! ([`crate::code_fetch`]).

use serde::Serialize;

use crate::error::QueueError;

pub use crate::request::{check_code_name as check_name, code_image_tag as image_tag};

/// A stored package.
#[derive(Debug, Clone, Serialize)]
pub struct Package {
    /// Name.
    pub name: String,
    /// The base image as given.
    pub base_image: String,
    /// The derived image's id.
    pub image_id: String,
    /// Default command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Size of the code layer (as pushed), bytes.
    pub layer_bytes: i64,
    /// Digest of the code layer as pushed, where the database keeps it (a
    /// fleet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_digest: Option<String>,
    /// The most of the package's jobs that run at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<i64>,
    /// First pushed, ms since the epoch.
    pub created_at: i64,
    /// Last pushed.
    pub updated_at: i64,
}

/// How package `name`'s image is made from `base`: the same on every
/// worker, so that the same base and layer give the same image id.
pub fn derivation(
    name: &str,
    base: &str,
    cmd: Option<Vec<String>>,
) -> imagestore::derive::Derivation {
    imagestore::derive::Derivation {
        base: base.to_string(),
        tag: image_tag(name),
        cmd,
        created_by: format!("skiff code push {name}"),
    }
}

/// The stored form of `p.command`: a JSON array, or NULL.
pub(crate) fn command_json(p: &Package) -> Option<String> {
    p.command
        .as_ref()
        .map(|c| serde_json::to_string(c).unwrap_or_default())
}

/// Package `name`'s command as stored.
pub(crate) fn parse_command(
    name: &str,
    stored: Option<String>,
) -> Result<Option<Vec<String>>, QueueError> {
    stored
        .map(|c| serde_json::from_str(&c))
        .transpose()
        .map_err(|e| QueueError::Corrupt {
            id: name.to_string(),
            what: "code package command",
            detail: e.to_string(),
        })
}
