#!/usr/bin/env bash
# System calls per request, ours against the peer (examples/naive_peer.rs): whether the CPU
# time that instructions do not explain is in calls the peer does not make.
#
#   scripts/bench-syscalls.sh [BINARY]   # target/release/render-deploy by default
#
# Each server (ours as in production: `serve`, JSON log line per request, stdout piped to a
# reader) runs under `strace -c -f` for one wrk run on PATH (/livez); printed per syscall: calls
# per 1,000 requests for the peer and for ours. strace slows both, so the requests' rate means
# nothing here; the counts do. Knobs: DURATION (4s), CONNECTIONS (32), PATH_ (/livez), PEER_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench.sh
trap bench_cleanup EXIT

OURS=${1:-target/release/render-deploy}
DURATION=${DURATION:-4s}
CONNECTIONS=${CONNECTIONS:-32}
PATH_=${PATH_:-/livez}
PEER_BIN=${PEER_BIN:-target/release/examples/naive_peer}
for tool in wrk strace; do
  command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install -y $tool" >&2; exit 1; }
done
[ -x "$OURS" ] || { echo "not an executable: $OURS" >&2; exit 2; }
[ -x "$PEER_BIN" ] || cargo build --quiet --release --locked --example naive_peer

bench_pg_start
peer_port=$(bench_free_port)
bench_spawn "$BENCH_TMP/peer.log" env DATABASE_URL="$BENCH_PG_URL" PORT="$peer_port" "$PEER_BIN"
peer_pid=$BENCH_PID
bench_wait_ok "http://127.0.0.1:$peer_port/livez"
our_port=$(bench_free_port)
bench_start_ours "$our_port" "$OURS" "$BENCH_TMP/ours.err"
our_pid=$BENCH_PID
bench_wait_ok "http://127.0.0.1:$our_port/health" 120

# count NAME PID URL: strace's summary of PID's threads during one wrk run, as
# "SYSCALL CALLS" lines, then "requests N".
count() {
  local out=$BENCH_TMP/$1.strace tracer n
  strace -c -f -p "$2" -o "$out" 2>/dev/null &
  tracer=$!
  # Counting starts once every thread of the server is traced (an event, not a pause).
  bench_wait_attached "$2"
  read -r _ _ n < <(bench_wrk "$CONNECTIONS" "$DURATION" "$3")
  kill -INT "$tracer"
  wait "$tracer" || true
  awk '$NF ~ /^[a-z_0-9]+$/ && $NF != "total" && $NF != "syscall" { print $NF, $4 }' "$out"
  echo "requests $n"
}

# bench_wait_attached PID: until /proc says every thread of PID is traced (no thread's
# TracerPid is 0), at most 10 s. (`strace -f -p` attaches to the threads one by one.)
bench_wait_attached() {
  local deadline=$((SECONDS + 10))
  while awk '/^TracerPid:/ && $2 == 0 { untraced = 1 } END { exit !untraced }' "/proc/$1"/task/*/status; do
    [ $SECONDS -lt $deadline ] || { echo "strace did not attach to $1" >&2; return 1; }
    sleep 0.05
  done
}

count peer "$peer_pid" "http://127.0.0.1:$peer_port$PATH_" >"$BENCH_TMP/peer.counts"
count ours "$our_pid" "http://127.0.0.1:$our_port$PATH_" >"$BENCH_TMP/ours.counts"

echo "system calls per 1,000 requests on $PATH_ ($(nproc) CPUs, $(date -u +%F))"
printf "| %-16s | %8s | %8s |\n|---|---|---|\n" syscall peer ours
awk 'FNR == 1 { f++ }
     $1 == "requests" { req[f] = $2; next }
     { calls[$1, f] = $2; names[$1] = 1 }
     END {
       for (s in names) printf "| %-16s | %8.1f | %8.1f |\n", s, 1000 * calls[s, 1] / req[1], 1000 * calls[s, 2] / req[2]
     }' "$BENCH_TMP/peer.counts" "$BENCH_TMP/ours.counts" | sort -t'|' -k4,4gr
printf "| %-16s | %8d | %8d |\n" "(requests)" "$(awk '$1 == "requests" { print $2 }' "$BENCH_TMP/peer.counts")" \
  "$(awk '$1 == "requests" { print $2 }' "$BENCH_TMP/ours.counts")"
