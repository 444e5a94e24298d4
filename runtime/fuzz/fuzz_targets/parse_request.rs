//! The launcher's request parser on arbitrary bytes: it must return a
//! request or an error, never panic, whatever the line holds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = runtime::pool::parse_request(data);
});
