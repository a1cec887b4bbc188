#!/usr/bin/env bash
# Whole-process benchmark: builds the release binary and runs bench/process.py.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec python3 bench/process.py --bin target/release/modelauth "$@"
