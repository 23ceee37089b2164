#!/usr/bin/env bash
# Builds of our service measured against each other through the peer (examples/naive_peer.rs):
# the per-change yardstick of the README's "Service benchmark".
#
#   scripts/bench-variants.sh before=/tmp/rd-old after=target/release/render-deploy
#   scripts/bench-variants.sh a=target/release/render-deploy b=target/release/render-deploy  # the noise
#
# Every variant runs at once, as `serve` in production (JSON log line per request, METRICS_TOKEN
# set), stdout piped to a reader, beside the peer, on one throwaway PostgreSQL. A round measures,
# for each path, the peer, then each variant followed by the peer again (the variants' order
# rotating from round to round); a variant's ratio in a round is the mean CPU time per request
# of the two peer runs around it over its own, so that a change of the machine's speed during a
# round lands on both sides. Printed: the median over the rounds of each variant's ratio, and its
# user and system time per request (from /proc, all threads), so that a change shows where it
# saved. Knobs: ROUNDS (7), DURATION (3s), CONNECTIONS (32), PATHS ("/livez /health"), PEER_BIN.
# Give one binary twice (a=X b=X) to see the run's own spread: on this project's shared machine
# single rounds of one binary ranged from 0.78 to 0.93 of the peer (9 rounds, 2026-12-02), so a
# small change needs many rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench.sh
trap bench_cleanup EXIT

[ $# -ge 1 ] || { sed -n '2,6p' "$0" >&2; exit 2; }
ROUNDS=${ROUNDS:-7}
DURATION=${DURATION:-3s}
CONNECTIONS=${CONNECTIONS:-32}
PATHS=${PATHS:-/livez /health}
PEER_BIN=${PEER_BIN:-target/release/examples/naive_peer}
command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
[ -x "$PEER_BIN" ] || cargo build --quiet --release --locked --example naive_peer

names=() bins=()
for arg in "$@"; do
  name=${arg%%=*} bin=${arg#*=}
  [ "$name" != "$arg" ] && [ -x "$bin" ] || { echo "not NAME=EXECUTABLE: $arg" >&2; exit 2; }
  [[ " ${names[*]} " != *" $name "* ]] || { echo "$name is given twice" >&2; exit 2; }
  names+=("$name") bins+=("$bin")
done

bench_pg_start
peer_port=$(bench_free_port)
bench_spawn "$BENCH_TMP/peer.log" env DATABASE_URL="$BENCH_PG_URL" PORT="$peer_port" "$PEER_BIN"
peer_pid=$BENCH_PID
bench_wait_ok "http://127.0.0.1:$peer_port/livez"
pids=() ports=()
for i in "${!bins[@]}"; do
  port=$(bench_free_port)
  bench_start_ours "$port" "${bins[$i]}" "$BENCH_TMP/${names[$i]}.err"
  pids+=("$BENCH_PID") ports+=("$port")
done
for port in "${ports[@]}"; do bench_wait_ok "http://127.0.0.1:$port/health"; done
for port in "${ports[@]}" "$peer_port"; do
  wrk -t1 -c"$CONNECTIONS" -d1s "http://127.0.0.1:$port/livez" >/dev/null
done

# run PID URL: "USER_US SYSTEM_US" per request of one wrk run, the CPU time being what process
# PID (every thread of it) used during the run.
tick_us=$((1000000 / $(getconf CLK_TCK)))
run() {
  local before after n
  before=$(awk '{ print $14, $15 }' "/proc/$1/stat")
  read -r _ _ n < <(bench_wrk "$CONNECTIONS" "$DURATION" "$2")
  after=$(awk '{ print $14, $15 }' "/proc/$1/stat")
  awk -v b="$before" -v a="$after" -v u="$tick_us" -v n="$n" \
    'BEGIN { split(b, x, " "); split(a, y, " "); printf "%.3f %.3f\n", (y[1] - x[1]) * u / n, (y[2] - x[2]) * u / n }'
}

load=$(cut -d' ' -f1-3 /proc/loadavg)
count=${#bins[@]}
for r in $(seq 1 "$ROUNDS"); do
  for path in $PATHS; do
    # The peer's own route for a path it does not have (/health) is its no-I/O one.
    peer_path=$path; [ "$path" = /health ] && peer_path=/livez
    prev=$(run "$peer_pid" "http://127.0.0.1:$peer_port$peer_path")
    for k in $(seq 0 $((count - 1))); do
      i=$(((k + r) % count))
      mine=$(run "${pids[$i]}" "http://127.0.0.1:${ports[$i]}$path")
      next=$(run "$peer_pid" "http://127.0.0.1:$peer_port$peer_path")
      echo "$prev $mine $next" | awk '{ p = ($1 + $2 + $5 + $6) / 2; o = $3 + $4;
        printf "%.4f %s %s\n", p / o, $3, $4 }' >>"$BENCH_TMP/${names[$i]}${path//\//_}"
      echo "round $r $path ${names[$i]}: peer $prev | ours $mine | peer $next (user_us system_us per request)" >&2
      prev=$next
    done
  done
done

echo
echo "$count variants against $PEER_BIN; $(nproc) CPUs; ${BENCH_WRK[*]} -t1 -c$CONNECTIONS -d$DURATION, $ROUNDS rounds; load average $load at start, $(cut -d' ' -f1-3 /proc/loadavg) at end"
echo "ratio = the peer's CPU time per request (the runs just before and after) over the variant's; medians over the rounds"
echo
printf '| %-12s | %-8s | %6s | %10s | %10s |\n' variant path ratio "user µs" "system µs"
echo "|--------------|----------|--------|------------|------------|"
for path in $PATHS; do
  for i in "${!names[@]}"; do
    f=$BENCH_TMP/${names[$i]}${path//\//_}
    printf '| %-12s | %-8s | %6.3f | %10.2f | %10.2f |\n' "${names[$i]}" "$path" \
      "$(awk '{ print $1 }' "$f" | bench_median)" "$(awk '{ print $2 }' "$f" | bench_median)" \
      "$(awk '{ print $3 }' "$f" | bench_median)"
  done
done
