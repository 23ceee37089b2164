#!/usr/bin/env bash
# Instructions per request (user space), of builds of our service and of the peer
# (examples/naive_peer.rs), counted by valgrind's callgrind: the per-change yardstick for work
# in our own code, which CPU-time ratios cannot resolve below a few hundredths.
#
#   scripts/bench-instructions.sh before=/tmp/rd-old after=target/release/render-deploy
#   FUNCTIONS=25 scripts/bench-instructions.sh after=target/release/render-deploy  # and where
#
# Each build runs under callgrind as in production (`serve`, JSON log line per request, see
# bench_start_ours), twice: wrk -t1 -c8 for SHORT seconds, then a new process for LONG seconds;
# instructions per request = the difference of the two totals over the difference of their
# request counts, so that start-up and shutdown cancel out. The counts do not depend on the
# machine's speed or load (they move by a few instructions between runs: the threads interleave
# differently); the kernel's work (system calls, TCP) is not counted, nor are cache misses.
# With FUNCTIONS=N, the N functions whose instructions per request differ most between each
# build and the peer are listed too. Knobs: PATH_ (/livez), SHORT (4), LONG (12), PEER_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench.sh
trap bench_cleanup EXIT

[ $# -ge 1 ] || { sed -n '2,7p' "$0" >&2; exit 2; }
PATH_=${PATH_:-/livez}
SHORT=${SHORT:-4}
LONG=${LONG:-12}
FUNCTIONS=${FUNCTIONS:-0}
PEER_BIN=${PEER_BIN:-target/release/examples/naive_peer}
for tool in wrk valgrind callgrind_annotate; do
  command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install -y wrk valgrind" >&2; exit 1; }
done
[ -x "$PEER_BIN" ] || cargo build --quiet --release --locked --example naive_peer
bench_pg_start

# count NAME KIND BINARY SECONDS: runs BINARY under callgrind for one wrk run of SECONDS; sets
# COUNTED ("REQUESTS CALLGRIND_FILE"). Not in a subshell, so that the EXIT trap knows the process.
count() {
  local name=$1 kind=$2 bin=$3 secs=$4 port url wrapper out requests
  out=$BENCH_TMP/$name.$secs.callgrind
  wrapper=$BENCH_TMP/$name.valgrind
  printf '#!/bin/sh\nexec valgrind -q --tool=callgrind --callgrind-out-file=%s %s "$@"\n' "$out" "$bin" >"$wrapper"
  chmod +x "$wrapper"
  port=$(bench_free_port)
  if [ "$kind" = peer ]; then
    bench_spawn "$BENCH_TMP/$name.log" env DATABASE_URL="$BENCH_PG_URL" PORT="$port" "$wrapper"
    url=http://127.0.0.1:$port/livez
  else
    bench_start_ours "$port" "$wrapper" "$BENCH_TMP/$name.log"
    url=http://127.0.0.1:$port$PATH_
  fi
  local pid=$BENCH_PID
  # Under valgrind the service starts in seconds, not milliseconds.
  bench_wait_ok "$url" 120
  requests=$(wrk -t1 -c8 -d"${secs}s" "$url" | awk '/requests in/ { print $1 }')
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  COUNTED="$requests $out"
}

# per_request NAME KIND BINARY: sets PER_REQUEST (instructions per request) and RUNS ("SHORT_FILE
# SHORT_N LONG_FILE LONG_N").
per_request() {
  local n1 f1 n2 f2 i1 i2
  count "$1" "$2" "$3" "$SHORT"; read -r n1 f1 <<<"$COUNTED"
  count "$1" "$2" "$3" "$LONG"; read -r n2 f2 <<<"$COUNTED"
  i1=$(callgrind_annotate "$f1" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  i2=$(callgrind_annotate "$f2" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  PER_REQUEST=$(((i2 - i1) / (n2 - n1)))
  RUNS="$f1 $n1 $f2 $n2"
}

# functions A B: the FUNCTIONS functions whose instructions per request differ most, A minus B.
functions() {
  python3 - "$FUNCTIONS" "$1" "$2" <<'EOF'
import collections, re, subprocess, sys
def per_request(short, n1, long, n2):
    counts = []
    for f in (short, long):
        out = subprocess.run(["callgrind_annotate", "--threshold=100", f],
                             capture_output=True, text=True, check=True).stdout
        c = collections.Counter()
        for line in out.splitlines():
            m = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(?:\S*?:)?(.*?)( \[.*\])?$", line)
            if m and "PROGRAM TOTALS" not in line:
                c[m.group(2)] += int(m.group(1).replace(",", ""))
        counts.append(c)
    return {k: (counts[1][k] - counts[0][k]) / (int(n2) - int(n1)) for k in counts[0] | counts[1]}
n = int(sys.argv[1])
a = per_request(*sys.argv[2].split()); b = per_request(*sys.argv[3].split())
keys = sorted(a.keys() | b.keys(), key=lambda k: -abs(a.get(k, 0) - b.get(k, 0)))
print("| instructions | peer | difference | function |\n|---|---|---|---|")
for k in keys[:n]:
    print("| %.0f | %.0f | %+.0f | `%s` |" % (a.get(k, 0), b.get(k, 0), a.get(k, 0) - b.get(k, 0), k[:120]))
EOF
}

per_request peer peer "$PEER_BIN"
peer=$PER_REQUEST peer_files=$RUNS
echo "instructions per request (callgrind, user space), wrk -t1 -c8, ${SHORT}s and ${LONG}s runs; $PATH_ (the peer: /livez)"
echo
echo "| build | path | instructions per request | peer | ratio (peer / build) |"
echo "|---|---|---|---|---|"
declare -A files
for arg in "$@"; do
  name=${arg%%=*} bin=${arg#*=}
  [ "$name" != "$arg" ] && [ -x "$bin" ] || { echo "not NAME=EXECUTABLE: $arg" >&2; exit 2; }
  per_request "$name" ours "$bin"
  ours=$PER_REQUEST files[$name]=$RUNS
  echo "| $name | $PATH_ | $ours | $peer | $(awk -v p="$peer" -v o="$ours" 'BEGIN { printf "%.3f", p / o }') |"
done
if [ "$FUNCTIONS" -gt 0 ]; then
  for arg in "$@"; do
    name=${arg%%=*}
    echo; echo "$name against the peer:"; echo
    functions "${files[$name]}" "$peer_files"
  done
fi
