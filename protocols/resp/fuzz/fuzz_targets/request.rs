//! Feeds arbitrary bytes to the RESP request parser: it must never panic, and whatever it
//! accepts must lie within the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // Parse a whole pipeline, as a connection does, with a small bulk limit to reach the
    // length checks.
    while let cairn_resp::request::Parsed::Command { consumed, .. } = cairn_resp::request::parse(rest, 4096) {
        assert!(consumed > 0 && consumed <= rest.len());
        rest = &rest[consumed..];
    }
    let _ = cairn_resp::request::split_args(data);
});
