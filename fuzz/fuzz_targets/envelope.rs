//! Fuzz target: bytes as sealed-store envelope text and as store-key text
//! (`modelauth::seal::envelope`). It must never panic.
//!
//! Run: `cargo +nightly fuzz run envelope -- -max_total_time=60` (from the project root).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = modelauth::seal::envelope::fuzz_envelope(data);
});
