#!/usr/bin/env bash
# Whole-process benchmark: builds the binary of a cargo profile (default `release`, what
# `cargo install` builds; `dist` is the same build under cargo-dist's name) and runs
# bench/process.py on it. Honours CARGO_TARGET_DIR (the binary is looked up where cargo
# put it), and runs from any directory.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${PROFILE:-release}"
cargo build --locked --profile "$profile" --quiet
target_dir="${CARGO_TARGET_DIR:-target}"
exec python3 bench/process.py --bin "$target_dir/$profile/modelauth" "$@"
