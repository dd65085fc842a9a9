#!/usr/bin/env bash
# Guaranteed jobs in steady state: batches of no-op jobs through
# `emq-cli bulk --guarantee --window 1000` into one router, printing after
# each batch its jobs/s, the router's resident memory (and per job so far)
# and the journal's size, to see whether they level off. Usage:
# scripts/steady-state.sh [BINDIR (default target/release)] [BATCHES (4)] [JOBS per batch (100000)]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release}; batches=${2:-4}; n=${3:-100000}
. scripts/fleet.sh
start_fleet "$bin"
seq 1 "$n" | sed 's/.*/{"handler":"emq.noop"}/' >$tmp/jobs
rss() { awk '/VmRSS/{print $2}' /proc/$r/status; }
idle=$(rss)
for i in $(seq "$batches"); do
  rate=$($bin/emq-cli bulk --guarantee --window 1000 $tmp/jobs | tail -1 | sed 's/.*(\(.*\))/\1/')
  now=$(rss)
  echo "after $((i * n)) jobs: $rate, router RSS $((now / 1024)) MB ($(((now - idle) * 1024 / (i * n))) B per job so far), journal $(($(du -k $tmp/j.redb | cut -f1) / 1024)) MB"
done
