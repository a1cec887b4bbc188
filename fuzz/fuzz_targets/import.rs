//! Fuzz target: the import parsers (PROTOCOL §3 `store.import` / `store.validate`) on
//! hostile sources. The first byte picks the parser: a JSON document through every JSON
//! format, the bytes as an OpenClaw SQLite file, or as a JSON file — the last two through
//! the same `load_source` the methods use (O_NONBLOCK open, regular-file check, caps, a
//! limited SQLite connection). Each accepted source is planned. It must never panic, hang
//! or allocate without bound.
//!
//! Run: `cargo +nightly fuzz run import -- -max_total_time=60 -rss_limit_mb=512`
//! (from the project root). Without cargo-fuzz, `tests/import_fuzz.rs` runs the same body
//! over a seeded corpus in `cargo test`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static SCRATCH: OnceLock<tempfile::TempDir> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let dir = SCRATCH.get_or_init(|| tempfile::tempdir().unwrap());
    let _ = modelauth::handlers::transfer::fuzz_import_source(data, dir.path());
});
