#!/usr/bin/env bash
# Whole-process benchmark: builds the binary of a cargo profile (default `dist`, the one
# BENCHMARKS.md's figures come from; PROFILE=release for the everyday build) and runs
# bench/process.py on it. Honours CARGO_TARGET_DIR (the binary is looked up where cargo
# put it), and runs from any directory.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${PROFILE:-dist}"
cargo build --locked --profile "$profile" --quiet
target_dir="${CARGO_TARGET_DIR:-target}"
exec python3 bench/process.py --bin "$target_dir/$profile/modelauth" "$@"
