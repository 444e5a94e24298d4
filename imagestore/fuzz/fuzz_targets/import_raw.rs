//! Import the raw bytes as a file: the detector and every importer on
//! unstructured input (seeded with real tiny archives).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = common::scratch();
    let path = dir.path().join("input");
    std::fs::write(&path, data).expect("write the input");
    common::import_and_check(dir.path(), imagestore::Input::Path(path));
});
