#!/usr/bin/env bash
# Context switches of a jobmanager and its 2 workers per job, over 2,000
# no-op jobs sent one at a time (`emq-cli bulk --window 1`): a measure of
# wakeups that a busy machine does not blur, unlike latency. Usage:
# scripts/wakeups.sh [BINDIR] (default target/release) to compare builds.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release}
. scripts/fleet.sh
start_fleet "$bin"
seq 1 200 | sed 's/.*/{"handler":"emq.noop"}/' >$tmp/warm; $bin/emq-cli bulk --window 1 $tmp/warm >/dev/null
ws=$(fleet_workers)
cs() { local t=0; for q in "$@"; do v=$(awk '/^(non)?voluntary_ctxt_switches/{s+=$2} END{print s}' /proc/$q/status); t=$((t+v)); done; echo $t; }
b_w=$(cs $ws); b_j=$(cs $jm)
seq 1 2000 | sed 's/.*/{"handler":"emq.noop"}/' >$tmp/jobs
start=$(date +%s.%N); $bin/emq-cli bulk --window 1 $tmp/jobs | tail -1; end=$(date +%s.%N)
a_w=$(cs $ws); a_j=$(cs $jm)
echo "workers ctx/job: $(echo "scale=2; ($a_w-$b_w)/2000" | bc)  jm ctx/job: $(echo "scale=2; ($a_j-$b_j)/2000" | bc)  mean us/job: $(echo "($end-$start)*1000000/2000" | bc)"
