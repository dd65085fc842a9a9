#!/usr/bin/env bash
# Instructions the router and a jobmanager spend on 20,000 pipelined no-op
# jobs, counted by valgrind's callgrind (every thread of each process): a
# cost measure that a busy machine does not blur. Release binaries in
# target/release; extra router flags in EMQ_ROUTER_ARGS (e.g. "--http
# 127.0.0.1:47599 --dashboard"), the jobmanager's in EMQ_JM_ARGS (default
# "--prefetch 200"); EMQ_BIN=DIR takes the binaries from DIR (to compare
# builds); EMQ_BULK_ARGS adds flags to the submission (e.g. "--guarantee").
# Workers are counted too (their own files, OUT_PREFIX.jm.cg.PID).
# Usage: scripts/callgrind.sh OUT_PREFIX
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/callgrind.sh OUT_PREFIX}
bin=${EMQ_BIN:-target/release}
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
ports=(47591 47590 47593)
# shellcheck disable=SC2086
valgrind --tool=callgrind --callgrind-out-file="$out.router.cg" "$bin/emq-router" \
  --frontend "tcp://127.0.0.1:${ports[0]}" --backend "tcp://127.0.0.1:${ports[1]}" \
  --admin "tcp://127.0.0.1:${ports[2]}" --journal "$tmp/journal.redb" ${EMQ_ROUTER_ARGS:-} \
  >"$tmp/router.out" 2>"$tmp/router.err" &
router=$!
for _ in $(seq 200); do grep -q ready "$tmp/router.out" 2>/dev/null && break; sleep 0.2; done
# shellcheck disable=SC2086
valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$out.jm.cg.%p" "$bin/emq-jobmanager" \
  -R "tcp://127.0.0.1:${ports[1]}" -J 2 ${EMQ_JM_ARGS:---prefetch 200} 2>"$tmp/jm.err" &
jm=$!
export EMQ_ROUTER="tcp://127.0.0.1:${ports[0]}" EMQ_ADMIN="tcp://127.0.0.1:${ports[2]}"
for _ in $(seq 200); do "$bin/emq-cli" workers 2>/dev/null | grep -q IDLE && break; sleep 0.2; done
seq 1 20000 | sed 's/.*/{"handler":"emq.noop"}/' >"$tmp/jobs"
# shellcheck disable=SC2086
"$bin/emq-cli" bulk --window 1000 ${EMQ_BULK_ARGS:-} "$tmp/jobs"
kill -TERM "$jm"; wait "$jm" || true
kill -TERM "$router"; wait "$router" || true
echo "router:     $(callgrind_annotate "$out.router.cg" 2>/dev/null | grep 'PROGRAM TOTALS')"
for f in "$out".jm.cg.*; do
  echo "${f#"$out".}: $(callgrind_annotate "$f" 2>/dev/null | grep 'PROGRAM TOTALS')"
done
