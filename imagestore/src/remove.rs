//! `image rm`: untag, and forget the image when no tag is left.

use serde::Serialize;

use crate::digest::Digest;
use crate::error::Result;
use crate::images::normalize_reference;
use crate::store::Store;

/// What `remove_image` did.
#[derive(Debug, Serialize)]
pub struct RemoveReport {
    /// Tags removed.
    pub untagged: Vec<String>,
    /// The image forgotten, if no tag is left (its data goes at the next `gc`).
    pub deleted: Option<Digest>,
}

impl Store {
    /// Remove a reference. Given a tag of an image that has other tags, only
    /// that tag goes; given the last tag or an id, the image record goes too.
    pub fn remove_image(&self, reference: &str) -> Result<RemoveReport> {
        // Exclusive: an import (shared lock) writes an image's record and
        // then its tags; a removal between the two left a tag naming no image.
        let _lock = self.lock_exclusive()?;
        let rec = self.resolve(reference)?;
        let tags = self.images().tags_of(&rec.id)?;
        let as_tag = normalize_reference(reference)
            .ok()
            .filter(|r| tags.contains(r));
        let mut report = RemoveReport {
            untagged: Vec::new(),
            deleted: None,
        };
        match as_tag {
            Some(tag) if tags.len() > 1 => {
                self.images().untag(&tag)?;
                report.untagged.push(tag);
            }
            _ => {
                for t in tags {
                    self.images().untag(&t)?;
                    report.untagged.push(t);
                }
                self.images().remove(&rec.id)?;
                report.deleted = Some(rec.id);
            }
        }
        Ok(report)
    }
}
