#!/usr/bin/env bash
# Pool size against client concurrency for `GET /` (one pooled query), on one throwaway
# PostgreSQL 15: the measurement behind `DB_POOL_MAX=auto` (README "DB_POOL_MAX=auto").
#
# Starts one `render-deploy serve` per pool size (SIZES, all at once: their pools together stay
# under max_connections), then runs wrk -t1 against each for every concurrency (CONNECTIONS),
# ROUNDS times, the order of the sizes rotating between rounds so that load from elsewhere
# spreads over all of them; prints median requests per second and median p99 per cell.
# Bounded: ROUNDS x |SIZES| x |CONNECTIONS| x DURATION (3 x 6 x 3 x 2 s = 108 s by default).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench.sh
trap bench_cleanup EXIT

SIZES=(${SIZES:-1 2 4 8 16 32})
CONNECTIONS=(${CONNECTIONS:-8 32 128})
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-2s}
command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }

cargo build --quiet --release --locked --bin render-deploy
bench_pg_start 100

declare -A base
for size in "${SIZES[@]}"; do
  port=$(bench_free_port)
  APP_ENV=production HOST=127.0.0.1 PORT=$port DATABASE_URL=$BENCH_PG_URL DB_POOL_MAX=$size \
    DB_POOL_MIN_IDLE=$size OPENAI_API_KEY=sk-benchmark0123456789abcdef \
    TWILIO_ACCOUNT_SID=AC0123456789abcdef0123456789abcdef TWILIO_AUTH_TOKEN=0123456789abcdef0123456789abcdef \
    RENDER_DEPLOY_HOOK_SECRET=benchmark-secret-of-at-least-32-bytes! \
    target/release/render-deploy serve > >(cat >/dev/null) 2>"$BENCH_TMP/serve-$size.err" &
  BENCH_PIDS+=($!)
  base[$size]="http://127.0.0.1:$port"
done
for size in "${SIZES[@]}"; do
  bench_wait_ok "${base[$size]}/health"
  wrk -t1 -c32 -d1s "${base[$size]}/" >/dev/null # fills the pool
done
load=$(cut -d' ' -f1-3 /proc/loadavg)

for r in $(seq 1 "$ROUNDS"); do
  for c in "${CONNECTIONS[@]}"; do
    n=${#SIZES[@]}
    for i in $(seq 0 $((n - 1))); do
      size=${SIZES[$(((i + r) % n))]}
      out=$(bench_wrk "$c" "$DURATION" "${base[$size]}/")
      echo "$out" >>"$BENCH_TMP/cell-$size-$c"
      echo "round $r: pool $size, $c connections: $out (req/s p99_ms)" >&2
    done
  done
done

echo
echo "commit $(git rev-parse --short HEAD); $(nproc) CPUs shared by wrk, the services and PostgreSQL; load average $load at start, $(cut -d' ' -f1-3 /proc/loadavg) at end"
echo "GET / (one pooled query), wrk -t1 -d$DURATION, $ROUNDS rotated rounds; median req/s (median p99)"
echo
printf '| %-10s |' "pool size"; for c in "${CONNECTIONS[@]}"; do printf ' %-22s |' "$c connections"; done; echo
printf '|%s|' "------------"; for c in "${CONNECTIONS[@]}"; do printf '%s|' "------------------------"; done; echo
for size in "${SIZES[@]}"; do
  printf '| %-10s |' "$size"
  for c in "${CONNECTIONS[@]}"; do
    f=$BENCH_TMP/cell-$size-$c
    printf ' %7.0f (%7.2f ms)    |' "$(awk '{print $1}' "$f" | bench_median)" "$(awk '{print $2}' "$f" | bench_median)"
  done
  echo
done
