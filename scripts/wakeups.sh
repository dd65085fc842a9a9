#!/usr/bin/env bash
# Context switches of a jobmanager and its 2 workers per job, over 2,000
# no-op jobs sent one at a time (`emq-cli bulk --window 1`): a measure of
# wakeups that a busy machine does not blur, unlike latency. Usage:
# scripts/wakeups.sh [BINDIR] (default target/release) to compare builds.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release}; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT; p=$((47700 + RANDOM % 200))
$bin/emq-router --frontend tcp://127.0.0.1:$p --backend tcp://127.0.0.1:$((p+1)) --admin tcp://127.0.0.1:$((p+2)) --journal $tmp/j.redb >$tmp/r.out 2>$tmp/r.err &
r=$!
for _ in $(seq 100); do grep -q ready "$tmp/r.out" 2>/dev/null && break; sleep 0.1; done
$bin/emq-jobmanager -R tcp://127.0.0.1:$((p+1)) -J 2 2>$tmp/jm.err &
jm=$!
export EMQ_ROUTER=tcp://127.0.0.1:$p EMQ_ADMIN=tcp://127.0.0.1:$((p+2))
for _ in $(seq 50); do $bin/emq-cli workers 2>/dev/null | grep -q IDLE && break; sleep 0.2; done
seq 1 200 | sed 's/.*/{"handler":"emq.noop"}/' >$tmp/warm; $bin/emq-cli bulk --window 1 $tmp/warm >/dev/null
ws=$(pgrep -P $jm | tr '\n' ' ')
cs() { local t=0; for q in "$@"; do v=$(awk '/^(non)?voluntary_ctxt_switches/{s+=$2} END{print s}' /proc/$q/status); t=$((t+v)); done; echo $t; }
b_w=$(cs $ws); b_j=$(cs $jm)
seq 1 2000 | sed 's/.*/{"handler":"emq.noop"}/' >$tmp/jobs
start=$(date +%s.%N); $bin/emq-cli bulk --window 1 $tmp/jobs | tail -1; end=$(date +%s.%N)
a_w=$(cs $ws); a_j=$(cs $jm)
echo "workers ctx/job: $(echo "scale=2; ($a_w-$b_w)/2000" | bc)  jm ctx/job: $(echo "scale=2; ($a_j-$b_j)/2000" | bc)  mean us/job: $(echo "($end-$start)*1000000/2000" | bc)"
kill $jm; wait $jm 2>/dev/null || true; kill $r; wait $r 2>/dev/null || true
