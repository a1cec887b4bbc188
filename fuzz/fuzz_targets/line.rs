//! Fuzz target: one input line through `Dispatcher::handle_line` (the line → response path
//! of `modelauth serve`). It must never panic, and any answer must be one line of JSON.
//!
//! Run: `cargo +nightly fuzz run line -- -max_total_time=60` (from the project root).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use modelauth::protocol::dispatch::Dispatcher;
use modelauth::handlers::App;

struct Target {
    _dir: tempfile::TempDir,
    d: Dispatcher,
}

// One dispatcher (and store) for the whole run, like one long-running serve process.
static TARGET: OnceLock<Target> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let t = TARGET.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let d = Dispatcher::new(App::new(dir.path().join("store.db")));
        Target { _dir: dir, d }
    });
    // The serve loop splits on '\n': a line never holds one.
    for line in data.split(|b| *b == b'\n') {
        if let Some(out) = t.d.handle_line(line) {
            assert!(!out.contains('\n'));
            assert!(out.starts_with('{') || out.starts_with('['));
        }
    }
});
