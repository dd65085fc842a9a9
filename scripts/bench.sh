#!/usr/bin/env bash
# Builds release binaries and runs the benchmark: emq against a raw ZeroMQ
# floor through the same hops, in the same runs. Extra arguments go to
# emq-bench (try --help); `scripts/bench.sh --quick` is a short smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins --locked
exec target/release/emq-bench "$@"
