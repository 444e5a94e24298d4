//! The frame a warm sandbox's init parses, on arbitrary bytes: a frame or
//! an error, never a panic; and whatever parses encodes back to the same
//! bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runtime::warm::JobFrame;

fuzz_target!(|data: &[u8]| {
    if data.len() > runtime::warm::frame::MAX_FRAME_BYTES {
        return;
    }
    if let Ok(f) = JobFrame::decode(data) {
        let wire = f.encode().expect("a parsed frame encodes");
        assert_eq!(&wire[4..], data);
    }
});
