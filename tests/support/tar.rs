//! The one tar/archive builder: layer tars, `docker save` archives (a
//! generated image of many files, or the vendored busybox with one more
//! layer and an edited config, as an attacker would craft one), and reading
//! an archive's members back.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A header owned by root, with no timestamp.
fn header(kind: ::tar::EntryType, mode: u32, size: u64) -> ::tar::Header {
    let mut h = ::tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// One entry of a layer.
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
    let mut b = ::tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            Entry::Dir(name) => {
                let mut h = header(::tar::EntryType::Directory, 0o755, 0);
                b.append_data(&mut h, name, std::io::empty()).expect("dir");
            }
            Entry::Symlink(name, target) => {
                let mut h = header(::tar::EntryType::Symlink, 0o777, 0);
                b.append_link(&mut h, name, target).expect("symlink");
            }
            Entry::File(name, data, mode) => {
                let mut h = header(::tar::EntryType::Regular, *mode, data.len() as u64);
                b.append_data(&mut h, name, &data[..]).expect("file");
            }
        }
    }
    b.into_inner().expect("tar")
}

/// A legacy `docker save` archive: `layers` (member name and layer tar,
/// bottom first), then `config` (its `rootfs.diff_ids` must already name
/// the layers) and a manifest tagging it `tag`.
pub fn docker_save(layers: &[(String, Vec<u8>)], config: &serde_json::Value, tag: &str) -> Vec<u8> {
    let config = serde_json::to_vec(config).expect("config json");
    let cfg_name = format!("{}.json", sha256_hex(&config));
    let names: Vec<&str> = layers.iter().map(|(n, _)| n.as_str()).collect();
    let manifest = serde_json::json!([{ "Config": cfg_name, "RepoTags": [tag], "Layers": names }]);
    let manifest = serde_json::to_vec(&manifest).expect("manifest json");
    let mut b = ::tar::Builder::new(Vec::new());
    let members = layers.iter().map(|(n, d)| (n.as_str(), &d[..])).chain([
        (cfg_name.as_str(), &config[..]),
        ("manifest.json", &manifest[..]),
    ]);
    for (name, data) in members {
        let mut h = header(::tar::EntryType::Regular, 0o644, data.len() as u64);
        b.append_data(&mut h, name, data).expect("append");
    }
    b.into_inner().expect("finish archive")
}

/// `data` gzip-compressed.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

/// A generated image tagged `tag` at `path`: a `docker save` archive of
/// `layers` layers of `files` files of `size` bytes each, optionally
/// gzip-wrapped (then it is streamed and spooled rather than indexed).
pub fn generated_image(
    path: &Path,
    tag: &str,
    layers: usize,
    files: usize,
    size: usize,
    gzip: bool,
) {
    let mut diff_ids = Vec::new();
    let mut members = Vec::new();
    for l in 0..layers {
        let entries: Vec<Entry> = (0..files)
            .map(|f| {
                let data: Vec<u8> = (0..size)
                    .map(|i| ((i * 31 + f * 7 + l * 13) % 251) as u8)
                    .collect();
                Entry::File(format!("l{l}/d{}/f{f}", f % 16), data, 0o644)
            })
            .collect();
        let bytes = layer(&entries);
        diff_ids.push(format!("sha256:{}", sha256_hex(&bytes)));
        members.push((format!("l{l}/layer.tar"), bytes));
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let tar = docker_save(&members, &config, tag);
    let bytes = if gzip { self::gzip(&tar) } else { tar };
    std::fs::write(path, bytes).expect("write archive");
}

/// The regular-file members of a tar archive, by name.
pub fn members(archive: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut a = ::tar::Archive::new(std::fs::File::open(archive).expect("open archive"));
    for ent in a.entries().expect("entries") {
        let mut ent = ent.expect("entry");
        if ent.header().entry_type() != ::tar::EntryType::Regular {
            continue;
        }
        let name = ent.path().expect("path").to_string_lossy().into_owned();
        let mut data = Vec::new();
        ent.read_to_end(&mut data).expect("read");
        files.insert(name, data);
    }
    files
}

/// The manifest of a `docker save` archive's members.
fn manifest(files: &BTreeMap<String, Vec<u8>>) -> serde_json::Value {
    serde_json::from_slice(&files["manifest.json"]).expect("manifest")
}

/// The layer tars of a `docker save` archive, bottom first.
pub fn layer_tars(archive: &Path) -> Vec<Vec<u8>> {
    let files = members(archive);
    manifest(&files)[0]["Layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| files[l.as_str().expect("str")].clone())
        .collect()
}

/// The image of `base` (a `docker save` archive) plus `extra` (a layer, if
/// any) with its config edited by `edit`, tagged `tag`, as a `docker save`
/// archive at `out`.
pub fn derive(
    base: &Path,
    tag: &str,
    extra: Option<Vec<u8>>,
    edit: impl Fn(&mut serde_json::Value),
    out: &Path,
) {
    let files = members(base);
    let manifest = manifest(&files);
    let m = &manifest[0];
    let mut layers: Vec<(String, Vec<u8>)> = m["Layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l.as_str().expect("str"))
        .map(|l| (l.to_string(), files[l].clone()))
        .collect();
    let mut config: serde_json::Value =
        serde_json::from_slice(&files[m["Config"].as_str().expect("config")]).expect("config");
    if let Some(data) = extra {
        let id = sha256_hex(&data);
        config["rootfs"]["diff_ids"]
            .as_array_mut()
            .expect("diff_ids")
            .push(serde_json::Value::String(format!("sha256:{id}")));
        layers.push((format!("{id}/layer.tar"), data));
    }
    edit(&mut config["config"]);
    std::fs::write(out, docker_save(&layers, &config, tag)).expect("write archive");
}
