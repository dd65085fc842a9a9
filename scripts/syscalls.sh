#!/usr/bin/env bash
# System calls per job of the router, the jobmanager (all its threads) and
# its 2 workers, over 20,000 (or $EMQ_JOBS) no-op jobs pipelined by
# `emq-cli bulk --window 1000` after a warm-up: `strace -c` attached to each.
# strace slows every call, so batches grow and the counts of batched calls
# (sendmmsg, the ZeroMQ traffic) are lower than at full speed; the per-job
# ones (a worker's recv and write) are exact. Extra `emq-cli bulk` flags
# after the directory (e.g. --guarantee). Usage:
# scripts/syscalls.sh [BINDIR (default target/release)] [bulk flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release}; shift || true
n=${EMQ_JOBS:-20000}
. scripts/fleet.sh
start_fleet "$bin" --prefetch 200
seq 1 "$n" | sed 's/.*/{"handler":"emq.noop"}/' >"$tmp/jobs"
"$bin/emq-cli" bulk "$@" --window 1000 "$tmp/jobs" >/dev/null
ws=$(fleet_workers)
tracers=()
trace() { strace -c -f -p "$2" -o "$tmp/strace.$1.$2" 2>/dev/null & tracers+=($!); }
trace router "$r"; trace jobmanager "$jm"
for w in $ws; do trace workers "$w"; done
sleep 1
"$bin/emq-cli" bulk "$@" --window 1000 "$tmp/jobs" | tail -1
kill -INT "${tracers[@]}"; wait "${tracers[@]}" 2>/dev/null || true
for who in router jobmanager workers; do
  echo "$who, per job:"
  # strace -c rows: % time, seconds, usecs/call, calls, [errors,] syscall.
  cat "$tmp"/strace."$who".* | awk -v n="$n" '$1 ~ /^[0-9.]+$/ && $NF != "total" { c[$NF] += $4 }
    END { for (s in c) if (c[s] / n >= 0.005) printf "  %-14s %.2f\n", s, c[s] / n }' | sort -k2 -rn
done
