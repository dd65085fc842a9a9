#!/usr/bin/env bash
# Runs every test: unit tests of each crate and the cross-process tests, which
# start the real binaries (so they are built first). Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
