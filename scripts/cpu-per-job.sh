#!/usr/bin/env bash
# CPU per job of the router, the jobmanager, its 2 workers and the client,
# over 50,000 (or $EMQ_JOBS) no-op jobs pipelined by `emq-cli bulk --window 1000`
# after a warm-up of as many: utime+stime from /proc before and after, so a
# busy machine blurs it less than a rate; also the router's journal thread
# and the bytes the router wrote per job (wchar). Extra `emq-cli bulk` flags
# after the directory (e.g. --guarantee). Usage:
# scripts/cpu-per-job.sh [BINDIR (default target/release)] [bulk flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release}; shift || true
n=${EMQ_JOBS:-50000}
. scripts/fleet.sh
start_fleet "$bin"
seq 1 $n | sed 's/.*/{"handler":"emq.noop"}/' >$tmp/jobs
$bin/emq-cli bulk "$@" --window 1000 $tmp/jobs >/dev/null
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
kids() { local t=0 c; for c in $(fleet_workers); do t=$((t + $(ticks "$c"))); done; echo "$t"; }
journal_ticks() { local t; for t in /proc/$r/task/*; do [ "$(cat "$t/comm")" = emq-journal ] && awk '{print $14+$15}' "$t/stat"; done; true; }
written() { awk '/^wchar/{print $2}' /proc/$r/io; }
r0=$(ticks $r); j0=$(ticks $jm); k0=$(kids); t0=$(journal_ticks); w0=$(written)
/usr/bin/time -f "%U %S" -o $tmp/client $bin/emq-cli bulk "$@" --window 1000 $tmp/jobs | tail -1
r1=$(ticks $r); j1=$(ticks $jm); k1=$(kids); t1=$(journal_ticks); w1=$(written); read -r cu cs <$tmp/client
hz=$(getconf CLK_TCK)
us() { echo "scale=1; $1 * 1000000 / $hz / $n" | bc; }
echo "CPU per job: router $(us $((r1 - r0))) µs, jobmanager $(us $((j1 - j0))) µs, workers $(us $((k1 - k0))) µs, client $(echo "scale=1; ($cu + $cs) * 1000000 / $n" | bc) µs"
echo "router: journal thread $(us $((t1 - t0))) µs per job, $(((w1 - w0) / n)) bytes written per job"
