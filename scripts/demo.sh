#!/usr/bin/env bash
# Builds everything and runs a real demo: a router, a jobmanager with two
# workers, jobs sent with emq-cli, results printed. Everything runs on
# loopback ports picked at random and is stopped (by pid) at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins --locked
bin=target/release
log=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$log"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export EMQ_ROUTER="tcp://127.0.0.1:$(port)" EMQ_ADMIN="tcp://127.0.0.1:$(port)"
backend="tcp://127.0.0.1:$(port)"

RUST_LOG=warn "$bin/emq-router" --frontend "$EMQ_ROUTER" --backend "$backend" --admin "$EMQ_ADMIN" --journal "$log/journal.redb" >"$log/router.out" 2>"$log/router.err" &
pids+=($!)
RUST_LOG=warn "$bin/emq-jobmanager" --router "$backend" -J 2 -Q 10:default 2>"$log/jm.err" &
pids+=($!)

# Wait (bounded) until the jobmanager has announced itself.
for _ in $(seq 50); do
  "$bin/emq-cli" workers 2>/dev/null | grep -q IDLE && break
  sleep 0.1
done

# Commands in bold on a terminal; plain text when piped or logged.
if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
step() { printf '\n%s$ %s%s\n' "$bold" "$*" "$plain"; "$@"; }
step "$bin/emq-cli" workers
step "$bin/emq-cli" send --wait -- echo "hello from a worker process"
step "$bin/emq-cli" send --wait emq.echo '{"answer": 42}'
step "$bin/emq-cli" send --wait --msgpack emq.echo '"packed as MessagePack"'
step "$bin/emq-cli" send --wait --timeout 1 -- sleep 5 || echo "(exit $?: timed out as asked)"
step "$bin/emq-cli" send --wait no.such.handler || echo "(exit $?: unknown handler)"
id=$("$bin/emq-cli" send emq.echo '"fetched later by id"')
sleep 0.2
step "$bin/emq-cli" result "$id"
gid=$("$bin/emq-cli" send --guarantee emq.echo '"journaled before it was acknowledged"')
for _ in $(seq 50); do "$bin/emq-cli" status "$gid" | grep -q FINISHED && break; sleep 0.1; done
step "$bin/emq-cli" status "$gid"
seq 1 2000 | sed 's/.*/{"handler":"emq.echo","args":[&]}/' >"$log/jobs.txt"
step "$bin/emq-cli" bulk "$log/jobs.txt"
step "$bin/emq-cli" status
