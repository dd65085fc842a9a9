#!/usr/bin/env bash
# Where a job sent one at a time spends its time, from the scheduler's side:
# `perf sched` records every wakeup while 2,000 no-op jobs go through
# `emq-cli bulk --window 1` (router, jobmanager, 2 workers), and while the
# raw ZeroMQ floor (`emq-bench --only-floor`: client, broker, echo worker)
# makes as many round trips. Per job it prints the wakeups between the
# processes' threads, their summed scheduling delay (woken until running:
# on an idle CPU of this VM about 20-25 µs each). (Running times are left
# out: this VM's second CPU never shows idle, so they swallow idle time.)
# Needs perf (Debian: linux-perf) and the right to trace the scheduler
# (root, or kernel.perf_event_paranoid <= -1). Usage:
# scripts/hops.sh [BINDIR (default target/release)] [JOBS (2000)]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release}; n=${2:-2000}
command -v perf >/dev/null || { echo "hops.sh needs perf (apt-get install linux-perf)" >&2; exit 1; }
. scripts/fleet.sh
start_fleet "$bin"
seq 1 "$n" | sed 's/.*/{"handler":"emq.noop"}/' >$tmp/jobs
$bin/emq-cli bulk --window 1 $tmp/jobs >/dev/null
# Per job: wakeups between emq-* threads and the woken threads' scheduling
# delays (perf sched timehist's columns), counted over the
# middle 60% of the run (no start-up) and divided by the times the client's
# main thread (the traced command) was woken there: once a job.
summarize() {
  perf sched timehist -i "$1" -w 2>/dev/null | python3 -c '
import re, sys
what = sys.argv[1]
rows = []
for line in sys.stdin:
    f = line.split()
    if len(f) < 5 or not re.match(r"^[0-9.]+$", f[0]) or not f[2].startswith("emq-"):
        continue
    rows.append((float(f[0]), f))
client_comm = sys.argv[2]
mains = [re.match(r"^(.*)\[(\d+)\]$", f[2]) for _, f in rows]
client = min(int(m.group(2)) for m in mains if m and m.group(1) == client_comm)
t0, t1 = rows[0][0], rows[-1][0]
lo, hi = t0 + 0.2 * (t1 - t0), t0 + 0.8 * (t1 - t0)
wakes = delay = jobs = 0
for t, f in rows:
    if not lo <= t <= hi:
        continue
    if f[3] == "awakened:":
        if f[4].startswith("emq-"):
            wakes += 1
            jobs += f[4].endswith("[%d]" % client)
    elif len(f) >= 6:
        delay += float(f[4])
print("| %s | %.1f | %.0f µs |" % (what, wakes / jobs, delay * 1000 / jobs))
' "$2" "$3"
}
perf sched record -o $tmp/emq.data -- $bin/emq-cli bulk --window 1 $tmp/jobs 2>/dev/null | tail -1 | sed 's/^/emq under perf: /'
perf sched record -o $tmp/floor.data -- $bin/emq-bench --only-floor --latency-samples "$n" 2>/dev/null | sed 's/^/under perf: /'
echo
echo "| one job at a time, per job | wakeups | scheduling delay |"
echo "|---|---|---|"
summarize $tmp/emq.data "emq: router, jobmanager, 2 workers, emq-cli" emq-cli
summarize $tmp/floor.data "floor: client, broker, echo worker" emq-bench
