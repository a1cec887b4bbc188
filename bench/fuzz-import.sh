#!/bin/sh
# Runs the import-parser fuzz target (fuzz/fuzz_targets/import.rs) under libFuzzer and
# prints its figures. Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly
# toolchain; without nightly, RUSTC_BOOTSTRAP=1 on stable works with `--sanitizer none`.
# Usage: bench/fuzz-import.sh [SECONDS]   (default 60)
set -eu
cd "$(dirname "$0")/.."
secs="${1:-60}"
toolchain=""
sanitizer="address"
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain="+nightly"
else
    export RUSTC_BOOTSTRAP=1
    sanitizer="none"
fi
# Separate target dir: the sanitizer build never mixes with the test build.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target/fuzz}"
corpus="$(mktemp -d)"
trap 'rm -rf "$corpus"' EXIT
cargo $toolchain fuzz run --sanitizer "$sanitizer" import "$corpus" -- \
    -max_total_time="$secs" -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 2>&1 |
    tee "${FUZZ_LOG:-/dev/null}" |
    grep -E '^(stat::|Done|#[0-9]+.*DONE|==[0-9]+==|SUMMARY|INFO: -max_total_time)' || true
