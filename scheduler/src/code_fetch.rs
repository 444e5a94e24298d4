//! A fleet worker makes a code package's image in its own store before
//! running the package's job: when its store lacks the image the fleet
//! last pushed, it reads the layer from the database (digest checked) and
//! derives the image from its own copy of the base, which must come out
//! with the id the pushing worker recorded. One fetch per package at a
//! time; the other slots wait for it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::code;
use crate::db::code_store::CodeStorage;
use crate::launchers::CodeImages;

/// Fetches packages into the worker's store.
#[derive(Debug)]
pub struct CodeFetch {
    rt: tokio::runtime::Handle,
    codes: Arc<dyn CodeStorage>,
    root: PathBuf,
    /// The store, opened at the first fetch (opening cleans stale
    /// sessions: not for every job).
    store: std::sync::OnceLock<imagestore::Store>,
    busy: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl CodeFetch {
    /// Fetch from `codes` into the store at `root`, on `rt`.
    pub fn new(rt: tokio::runtime::Handle, codes: Arc<dyn CodeStorage>, root: PathBuf) -> Self {
        CodeFetch {
            rt,
            codes,
            root,
            store: std::sync::OnceLock::new(),
            busy: Mutex::default(),
        }
    }
}

impl CodeImages for CodeFetch {
    /// Blocks: a slot's thread calls it, never the runtime.
    fn ensure(&self, name: &str) -> Result<(), String> {
        let lock = {
            let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
            busy.entry(name.to_string()).or_default().clone()
        };
        let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
        let store = match self.store.get() {
            Some(s) => s,
            None => {
                let s = imagestore::Store::open(&self.root)
                    .map_err(|e| format!("open the store: {}", runtime::error::error_chain(&e)))?;
                self.store.get_or_init(|| s)
            }
        };
        let tag = code::image_tag(name);
        let want = self
            .rt
            .block_on(self.codes.package(name))
            .map_err(|e| format!("code package {name}: {e}"))?
            .ok_or_else(|| format!("code package {name} was removed"))?;
        if holds(store, &tag, &want.image_id) {
            return Ok(());
        }
        let dir = self.root.join("serve").join("uploads");
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let file = tempfile::Builder::new()
            .prefix("code-fetch-")
            .tempfile_in(&dir)
            .map_err(|e| format!("create a file in {}: {e}", dir.display()))?;
        let p = self
            .rt
            .block_on(self.codes.fetch_layer(name, file.path()))
            .map_err(|e| format!("fetch code package {name}: {e}"))?
            .ok_or_else(|| format!("code package {name} was removed"))?;
        let d = code::derivation(name, &p.base_image, p.command.clone());
        let report = store.derive(&d, file.path()).map_err(|e| {
            format!(
                "make code package {name} from base image {}: {}",
                p.base_image,
                runtime::error::error_chain(&e)
            )
        })?;
        let made = report.images.first().map(|i| i.id.to_string());
        if made.as_deref() != Some(p.image_id.as_str()) {
            // Another base under the same name: not the package pushed.
            let _ = store.remove_image(&tag);
            return Err(format!(
                "code package {name}: this worker's base image {} gives image {}, not {} as \
                 pushed; its store holds another image under that name",
                p.base_image,
                made.unwrap_or_default(),
                p.image_id
            ));
        }
        tracing::info!(package = name, image = %p.image_id, "code package fetched");
        Ok(())
    }
}

/// Whether `tag` in `store` is the image `id`.
fn holds(store: &imagestore::Store, tag: &str, id: &str) -> bool {
    store.resolve(tag).is_ok_and(|i| i.id.to_string() == id)
}
