#!/usr/bin/env bash
# Writes docs/dashboard.png: the dashboard's overview in headless Chromium
# after 90 s of jobs on three queues (some failing). Needs the binaries
# built (cargo build --workspace) and Debian's chromium and chromium-driver.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test-deps.sh
cargo build --workspace --bins --locked
mkdir -p docs
EMQ_SCREENSHOT="$PWD/docs/dashboard.png" cargo test --locked -p emq-tests --test e2e -- \
  --ignored --exact dashboard::screenshot_of_the_overview_under_load
echo "wrote docs/dashboard.png"
