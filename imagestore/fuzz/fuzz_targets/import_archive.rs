//! Build a tar archive (plain, gzip or zstd) from a structured input (see
//! `common`) and import it: the detector, the tar indexer, the spooler for
//! wrapped streams, `docker save` (legacy and Docker 25+) and OCI-archive
//! planning, digest checks and the layer applier.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let spec = common::decode(data);
    let archive = common::to_archive(&spec);
    let dir = common::scratch();
    let path = dir.path().join("input.tar");
    std::fs::write(&path, &archive).expect("write the archive");
    common::import_and_check(dir.path(), imagestore::Input::Path(path));
});
