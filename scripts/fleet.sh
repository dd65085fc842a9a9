#!/usr/bin/env bash
# Sourced by the measuring scripts (cpu-per-job.sh, steady-state.sh, syscalls.sh,
# hops.sh, wakeups.sh). `start_fleet BINDIR [jobmanager flags...]` starts a
# router (its journal in a temporary directory) and a jobmanager with 2
# workers on random loopback ports, ends both (and removes the directory)
# when the script exits, and returns once the workers are idle. It sets
# `tmp`, `r` (the router's pid) and `jm`, and exports EMQ_ROUTER and
# EMQ_ADMIN for emq-cli. `fleet_workers` prints the workers' pids.
start_fleet() {
  local bin=$1 p=$((47900 + RANDOM % 2000))
  shift
  tmp=$(mktemp -d)
  "$bin/emq-router" --frontend "tcp://127.0.0.1:$p" --backend "tcp://127.0.0.1:$((p + 1))" \
    --admin "tcp://127.0.0.1:$((p + 2))" --journal "$tmp/j.redb" >"$tmp/r.out" 2>"$tmp/r.err" &
  r=$!
  "$bin/emq-jobmanager" -R "tcp://127.0.0.1:$((p + 1))" -J 2 "$@" 2>"$tmp/jm.err" &
  jm=$!
  trap 'kill $jm $r 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
  export EMQ_ROUTER="tcp://127.0.0.1:$p" EMQ_ADMIN="tcp://127.0.0.1:$((p + 2))"
  for _ in $(seq 50); do "$bin/emq-cli" workers 2>/dev/null | grep -q IDLE && break; sleep 0.2; done
}

# The jobmanager's worker processes, one pid a line.
fleet_workers() { cat /proc/"$jm"/task/*/children; }
