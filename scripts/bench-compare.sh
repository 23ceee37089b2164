#!/usr/bin/env bash
# Our service against a hand-written axum + deadpool-postgres peer (examples/naive_peer.rs), side
# by side on one throwaway PostgreSQL 15, in interleaved rounds, as ratios.
#
#   scripts/bench-compare.sh          # the table of ratios (README "Service benchmark")
#   scripts/bench-compare.sh --rss    # resident memory of our service over REQUESTS requests,
#                                     # /metrics never scraped (flat = samples do not pile up)
#
# Both are release builds on 127.0.0.1, driven by wrk -t1. Our service runs as in production:
# `serve`, APP_ENV=production (JSON log, one line per request at info), METRICS_TOKEN set (so
# metrics are recorded), default pool size (`auto`); its stdout goes through a pipe to a reader,
# as on Render. Each round runs ours and the peer back to back, the order alternating, so a burst
# of someone else's load lands on both; the ratio is the median of the per-round ratios.
# Knobs: ROUNDS (5), DURATION (3s per wrk run), REQUESTS (2000000, --rss), OURS_BIN and PEER_BIN
# (already built binaries to measure instead, e.g. an earlier commit's), plus any of our
# variables (DB_POOL_MAX, RUST_LOG, LOG_FORMAT, ...) passed through to our service.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench.sh
trap bench_cleanup EXIT

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-3s}
REQUESTS=${REQUESTS:-2000000}
command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }

PEER_BIN=${PEER_BIN:-target/release/examples/naive_peer}
if [ -n "${OURS_BIN:-}" ]; then
  [ -x "$PEER_BIN" ] || cargo build --quiet --release --locked --example naive_peer
else
  cargo build --quiet --release --locked --bin render-deploy --example naive_peer
  OURS_BIN=target/release/render-deploy
fi
bench_pg_start

ours_port=$(bench_free_port) peer_port=$(bench_free_port)
ours="http://127.0.0.1:$ours_port" peer="http://127.0.0.1:$peer_port"
bench_start_ours "$ours_port" "$OURS_BIN" "$BENCH_TMP/ours.err"
ours_pid=$BENCH_PID
bench_spawn "$BENCH_TMP/peer.log" env DATABASE_URL="$BENCH_PG_URL" PORT="$peer_port" "$PEER_BIN"
peer_pid=$BENCH_PID
bench_wait_ok "$ours/health"
bench_wait_ok "$peer/livez"
# Warm both: pools filled, /health cached (60 s TTL; a refresh costs one probe in a minute).
for url in "$ours/" "$peer/" "$ours/livez" "$peer/livez"; do wrk -t1 -c32 -d1s "$url" >/dev/null; done

load=$(cut -d' ' -f1-3 /proc/loadavg)
commit=${OURS_COMMIT:-$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src examples Cargo.toml || echo "+changes")}

if [ "${1:-}" = "--rss" ]; then
  # Bounded: REQUESTS in DURATION-long wrk runs on /livez and / in turn, RSS after each.
  done_requests=0 first= samples=()
  while [ "$done_requests" -lt "$REQUESTS" ]; do
    for path in /livez /; do
      out=$("${BENCH_WRK[@]}" -t1 -c32 -d"$DURATION" "$ours$path")
      n=$(awk '/requests in/ { print $1 }' <<<"$out")
      done_requests=$((done_requests + n))
    done
    rss=$(bench_rss_kib "$ours_pid")
    first=${first:-$rss}
    samples+=("$rss")
    echo "after $done_requests requests: RSS $rss KiB" >&2
  done
  max=$(printf '%s\n' "${samples[@]}" | sort -n | tail -1)
  echo
  echo "commit $commit, $(nproc) CPUs, load average at start $load"
  echo "RSS over $done_requests requests (/metrics never scraped): first sample $first KiB, last ${samples[-1]} KiB, max $max KiB"
  awk -v a="$first" -v b="$max" 'BEGIN { printf "max / first = %.3f (goal: at most 1.10)\n", b / a }'
  exit 0
fi

# measure PID CONNECTIONS URL: "REQ_PER_SEC P99_MS CPU_US_PER_REQUEST" of one wrk run, the CPU
# time being what process PID (every thread of it) used during the run.
tick_us=$((1000000 / $(getconf CLK_TCK)))
measure() {
  local before after rps p99 n
  before=$(bench_cpu_ticks "$1")
  read -r rps p99 n < <(bench_wrk "$2" "$DURATION" "$3")
  after=$(bench_cpu_ticks "$1")
  echo "$rps $p99 $(awk -v t=$((after - before)) -v u="$tick_us" -v n="$n" 'BEGIN { printf "%.2f", t * u / n }')"
}

# round SCENARIO OURS_URL PEER_URL CONNECTIONS: one interleaved pair, appended to $BENCH_TMP/SCENARIO.
round() {
  local o p
  if [ $((r % 2)) = 1 ]; then
    o=$(measure "$ours_pid" "$4" "$2"); p=$(measure "$peer_pid" "$4" "$3")
  else
    p=$(measure "$peer_pid" "$4" "$3"); o=$(measure "$ours_pid" "$4" "$2")
  fi
  echo "$o $p" >>"$BENCH_TMP/$1"
  echo "round $r $1: ours $o, peer $p (req/s p99_ms cpu_us/request)" >&2
}
for r in $(seq 1 "$ROUNDS"); do
  round livez "$ours/livez" "$peer/livez" 32
  round health "$ours/health" "$peer/livez" 32
  round root32 "$ours/" "$peer/" 32
  round root128 "$ours/" "$peer/" 128
done

echo
echo "commit $commit; $(nproc) CPUs shared by wrk, both services and PostgreSQL; load average $load at start, $(cut -d' ' -f1-3 /proc/loadavg) at end"
echo "${BENCH_WRK[*]} -t1 -d$DURATION, $ROUNDS interleaved rounds; medians; ratios = median of the per-round ratios"
echo "rate ratio = ours/peer requests per second; CPU ratio = peer/ours CPU time per request (the"
echo "server process's user + system time, all threads): above 1 means ours spends less per request"
echo
printf '| %-36s | %10s | %10s | %5s | %9s | %9s | %5s | %8s | %8s | %-6s |\n' "scenario" "ours req/s" "peer req/s" "rate" "ours CPU" "peer CPU" "CPU" "ours p99" "peer p99" "goal"
echo "|--------------------------------------|------------|------------|-------|-----------|-----------|-------|----------|----------|--------|"
col() { awk "{print \$$1}" "$2" | bench_median; }
row() { # row FILE LABEL GOAL
  local f=$BENCH_TMP/$1
  printf '| %-36s | %10.0f | %10.0f | %5.2f | %6.1f µs | %6.1f µs | %5.2f | %5.2f ms | %5.2f ms | %-6s |\n' "$2" \
    "$(col 1 "$f")" "$(col 4 "$f")" "$(awk '{print $1 / $4}' "$f" | bench_median)" \
    "$(col 3 "$f")" "$(col 6 "$f")" "$(awk '$3 > 0 {print $6 / $3}' "$f" | bench_median)" \
    "$(col 2 "$f")" "$(col 5 "$f")" "$3"
}
row livez "/livez vs peer /livez, 32 conns" "≥ 0.90"
row health "/health (cached) vs peer /livez, 32" "≥ 0.90"
row root32 "GET / (one pooled query), 32 conns" "≥ 0.95"
row root128 "GET / (one pooled query), 128 conns" "≥ 0.95"
