#!/usr/bin/env bash
# Runs every check and every test: formatting, clippy with warnings denied,
# unit tests of each crate and the cross-process tests, which start the real
# binaries (built first) and, for interop, EventMQ 0.3.13 from PyPI in
# .venv-eventmq (installed on first use); the Debian packages the tests use
# (Chromium for the dashboard's browser tests among them) are installed when
# missing. Usage: scripts/test.sh [cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test-deps.sh
scripts/eventmq-env.sh >/dev/null
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --bins --locked
# A jobmanager crate outside the workspace, as a user would write one; the
# e2e tests run it (same target directory: the shared crates build once).
cargo build --manifest-path examples/own-jobmanager/Cargo.toml --target-dir target --locked
cargo test --workspace --locked "$@"
