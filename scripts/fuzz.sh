#!/usr/bin/env bash
# Fuzzes the eMQP decoder with cargo-fuzz (libFuzzer) for SECONDS (default 60).
# cargo-fuzz needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them. Installs cargo-fuzz on first use.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
RUSTC_BOOTSTRAP=1 cargo fuzz run decode -- -max_total_time="${1:-60}"
