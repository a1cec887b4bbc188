#!/usr/bin/env bash
# Whole-process benchmark: builds the binary of a cargo profile (default `dist`, the one
# BENCHMARKS.md's figures come from; PROFILE=release for the everyday build) and runs
# bench/process.py on it.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${PROFILE:-dist}"
cargo build --profile "$profile" --quiet
exec python3 bench/process.py --bin "target/$profile/modelauth" "$@"
