//! A worker's pulls: when a registry is configured, an image a job names
//! that the store lacks is pulled before the job runs, once however many
//! jobs wait for it (they wait for that one pull and share its outcome).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use imagestore::{PullOptions, Store};

use crate::launchers::JobImages;

/// The outcome of one pull, shared by the jobs that waited for it.
type Flight = Arc<Mutex<Option<Result<(), String>>>>;

/// Pulls into one store, one at a time per image reference.
#[derive(Debug)]
pub struct RegistryPulls {
    root: PathBuf,
    opts: PullOptions,
    store: OnceLock<Store>,
    flights: Mutex<HashMap<String, Flight>>,
}

impl RegistryPulls {
    /// Pulls into the store at `root` with `opts`.
    pub fn new(root: PathBuf, opts: PullOptions) -> RegistryPulls {
        RegistryPulls {
            root,
            opts,
            store: OnceLock::new(),
            flights: Mutex::new(HashMap::new()),
        }
    }

    fn store(&self) -> Result<&Store, String> {
        if let Some(s) = self.store.get() {
            return Ok(s);
        }
        let s = Store::open(&self.root).map_err(|e| format!("image store: {e}"))?;
        Ok(self.store.get_or_init(|| s))
    }
}

impl JobImages for RegistryPulls {
    fn ensure(&self, image: &str) -> Result<(), String> {
        let store = self.store()?;
        match store.resolve(image) {
            Ok(_) => return Ok(()),
            Err(imagestore::Error::ImageNotFound(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
        // An id, not a reference: nothing to pull it by.
        if imagestore::ImageRef::parse(image).is_err() {
            return Err(format!("no such image: {image}"));
        }
        let flight = {
            let mut f = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(f.entry(image.to_string()).or_default())
        };
        // A pull that panicked leaves no outcome: the next one tries again.
        let mut outcome = flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = outcome.as_ref() {
            // Another job's pull of it ended while this one waited.
            return r.clone();
        }
        if store.resolve(image).is_ok() {
            // Pulled by a flight that ended before this one began.
            return Ok(());
        }
        tracing::info!("pulling {image}: a job needs it and the store lacks it");
        let r = store
            .pull(image, &self.opts)
            .map(|report| {
                tracing::info!(
                    "pulled {image} ({}): {} layers downloaded",
                    report.image.id,
                    report.layers_downloaded
                );
            })
            .map_err(|e| format!("pulling {image}: {}", error_chain(&e)));
        *outcome = Some(r.clone());
        drop(outcome);
        // Later jobs look at the store again (and pull again after a failure).
        let mut f = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if f.get(image).is_some_and(|x| Arc::ptr_eq(x, &flight)) {
            f.remove(image);
        }
        r
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
