//! Write a structured input (see `common`) as a directory and import it as an
//! OCI layout: `index.json`, nested indexes, manifests and configs parsed and
//! verified, blobs opened beneath the layout (hostile symlinks included).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let spec = common::decode(data);
    let dir = common::scratch();
    let layout = dir.path().join("layout");
    std::fs::create_dir(&layout).expect("layout directory");
    common::to_dir(&spec, &layout);
    common::import_and_check(dir.path(), imagestore::Input::Path(layout));
});
