#![no_main]
//! See `cairn_fuzz::v2_request` for what this target feeds and checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn_fuzz::v2_request(data));
