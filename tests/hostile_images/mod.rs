//! Hostile images for the escape tests: the vendored busybox image (real
//! `docker build` output) with one more layer and an edited config, written
//! as a `docker save` archive, as an attacker would craft one.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// One entry of an extra layer.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A directory.
    Dir(String),
    /// A symlink `name -> target`.
    Symlink(String, String),
    /// A regular file with its mode.
    File(String, Vec<u8>, u32),
}

/// A tar layer of `entries`.
pub fn layer(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        match e {
            Entry::Dir(name) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, name, std::io::empty()).expect("dir");
            }
            Entry::Symlink(name, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, name, target).expect("symlink");
            }
            Entry::File(name, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, name, &data[..]).expect("file");
            }
        }
    }
    b.into_inner().expect("tar")
}

/// The busybox image plus `extra` (a layer, if any) with its config edited by
/// `edit`, tagged `tag`, as a `docker save` archive at `out`.
pub fn derive(
    base: &Path,
    tag: &str,
    extra: Option<Vec<u8>>,
    edit: impl Fn(&mut serde_json::Value),
    out: &Path,
) {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut a = tar::Archive::new(std::fs::File::open(base).expect("open base image"));
    for ent in a.entries().expect("entries") {
        let mut ent = ent.expect("entry");
        if ent.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = ent.path().expect("path").to_string_lossy().into_owned();
        let mut data = Vec::new();
        ent.read_to_end(&mut data).expect("read");
        files.insert(name, data);
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&files["manifest.json"]).expect("manifest");
    let m = &manifest[0];
    let mut layers: Vec<String> = m["Layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l.as_str().expect("str").to_string())
        .collect();
    let mut config: serde_json::Value =
        serde_json::from_slice(&files[m["Config"].as_str().expect("config")]).expect("config");
    let mut outfiles: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for l in &layers {
        outfiles.insert(l.clone(), files[l].clone());
    }
    if let Some(data) = extra {
        let id = sha256_hex(&data);
        config["rootfs"]["diff_ids"]
            .as_array_mut()
            .expect("diff_ids")
            .push(serde_json::Value::String(format!("sha256:{id}")));
        let name = format!("{id}/layer.tar");
        outfiles.insert(name.clone(), data);
        layers.push(name);
    }
    edit(&mut config["config"]);
    let cfg = serde_json::to_vec(&config).expect("config json");
    let cfg_name = format!("{}.json", sha256_hex(&cfg));
    outfiles.insert(cfg_name.clone(), cfg);
    let manifest = serde_json::json!([{
        "Config": cfg_name,
        "RepoTags": [tag],
        "Layers": layers,
    }]);
    outfiles.insert(
        "manifest.json".into(),
        serde_json::to_vec(&manifest).expect("manifest json"),
    );
    let mut b = tar::Builder::new(std::fs::File::create(out).expect("create archive"));
    for (name, data) in &outfiles {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, name, &data[..]).expect("append");
    }
    b.finish().expect("finish archive");
}
