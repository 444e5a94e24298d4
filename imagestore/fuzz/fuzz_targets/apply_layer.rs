//! Apply a raw tar stream as a layer into an empty root: hostile names,
//! links and whiteouts must never touch anything outside that root.
#![no_main]

mod common;

use std::os::unix::fs::MetadataExt;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = common::scratch();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    std::fs::create_dir(&root).expect("root");
    std::fs::create_dir(&outside).expect("outside");
    let canary = outside.join("canary");
    std::fs::write(&canary, b"canary").expect("canary");
    let before = std::fs::metadata(&canary).expect("stat canary");

    let _ = imagestore::apply::apply_layer(data, &root);

    // Only `root` and `outside` exist beside each other, and the canary is
    // the same file with the same content.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list scratch")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["outside", "root"],
        "something was created beside the root"
    );
    let after = std::fs::metadata(&canary).expect("canary still there");
    assert_eq!(
        (before.ino(), before.mode(), before.nlink()),
        (after.ino(), after.mode(), after.nlink())
    );
    assert_eq!(std::fs::read(&canary).expect("read canary"), b"canary");
    assert_eq!(
        std::fs::read_dir(&outside).expect("list outside").count(),
        1
    );
});
