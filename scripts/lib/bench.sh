# Shared by the benchmark scripts (sourced, not run): a throwaway PostgreSQL, process
# bookkeeping with one EXIT trap, waiting for a port, and one wrk round.
#
# Everything started through `bench_spawn` or `bench_pg_start` is stopped by `bench_cleanup`,
# which the scripts install as their EXIT trap (also on Ctrl-C and on a failed command).

BENCH_PIDS=()
BENCH_PG_DIR=
BENCH_PG_BIN=
BENCH_TMP=$(mktemp -d /tmp/render-deploy-bench.XXXXXX)

bench_cleanup() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${BENCH_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$BENCH_PG_DIR" ]; then
    bench_as_pg "$BENCH_PG_BIN/pg_ctl" -D "$BENCH_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$BENCH_PG_DIR"
  fi
  rm -rf "$BENCH_TMP"
}

bench_as_pg() { # runs a server binary as `postgres` when we are root (initdb refuses root)
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

bench_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# bench_pg_start [MAX_CONNECTIONS]: a PostgreSQL 15 cluster on a free loopback port with trust
# authentication (loopback only, removed on exit); sets BENCH_PG_URL.
bench_pg_start() {
  local max=${1:-100}
  BENCH_PG_BIN=$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || dirname "$(command -v initdb)")
  BENCH_PG_DIR=$(mktemp -d /tmp/render-deploy-bench-pg.XXXXXX)
  [ "$(id -u)" = 0 ] && chown postgres: "$BENCH_PG_DIR"
  bench_as_pg "$BENCH_PG_BIN/initdb" -D "$BENCH_PG_DIR/data" -U postgres --auth=trust >/dev/null
  local port; port=$(bench_free_port)
  bench_as_pg "$BENCH_PG_BIN/pg_ctl" -D "$BENCH_PG_DIR/data" -w -t 30 -l "$BENCH_PG_DIR/log" \
    -o "-p $port -k $BENCH_PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=$max -c fsync=off -c synchronous_commit=off" \
    start >/dev/null
  BENCH_PG_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
}

# bench_spawn LOG CMD...: starts CMD in the background (stdout and stderr to LOG); sets BENCH_PID.
bench_spawn() {
  local log=$1; shift
  "$@" >"$log" 2>&1 &
  BENCH_PID=$!
  BENCH_PIDS+=("$BENCH_PID")
}

# bench_start_ours PORT BINARY STDERR_FILE: our service as in production (`serve`,
# APP_ENV=production: a JSON line per request at info; METRICS_TOKEN set, so metrics are
# recorded), its stdout through a pipe to a reader as on Render's log collector; sets BENCH_PID.
# Variables set by the caller (DB_POOL_MAX, RUST_LOG, ...) pass through.
bench_start_ours() {
  APP_ENV=production HOST=127.0.0.1 PORT=$1 DATABASE_URL=$BENCH_PG_URL \
    OPENAI_API_KEY=sk-benchmark0123456789abcdef TWILIO_ACCOUNT_SID=AC0123456789abcdef0123456789abcdef \
    TWILIO_AUTH_TOKEN=0123456789abcdef0123456789abcdef \
    RENDER_DEPLOY_HOOK_SECRET=benchmark-secret-of-at-least-32-bytes! METRICS_TOKEN=bench-metrics-token-0123456789 \
    "$2" serve > >(cat >/dev/null) 2>"$3" &
  BENCH_PID=$!
  BENCH_PIDS+=("$BENCH_PID")
}

# bench_wait_ok URL [SECONDS]: polls until URL answers 200 (deadline SECONDS, 20 by default).
bench_wait_ok() {
  local limit=${2:-20}
  local deadline=$((SECONDS + limit))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ]; do
    [ $SECONDS -lt $deadline ] || { echo "$1 did not answer 200 within $limit s" >&2; return 1; }
    sleep 0.05
  done
}

# wrk runs on the last CPU when there are two or more (and taskset is there): unpinned, runs of
# one binary differed by up to ±10 %; pinned, two runs of one binary as two variants agreed
# within 1.2 % (9 rounds).
# BENCH_PIN=off leaves it unpinned.
BENCH_WRK=(wrk)
if [ "${BENCH_PIN:-on}" != off ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  BENCH_WRK=(taskset -c "$(($(nproc) - 1))" wrk)
fi

# bench_wrk CONNECTIONS DURATION URL: prints "REQ_PER_SEC P99_MS REQUESTS" of one wrk -t1 round;
# a non-2xx answer or a socket error fails the script (a fast error is not a fast service).
bench_wrk() {
  local out
  out=$("${BENCH_WRK[@]}" -t1 -c"$1" -d"$2" --latency "$3")
  if grep -q -e 'Non-2xx' -e 'Socket errors' <<<"$out"; then
    echo "wrk $3 saw errors:" >&2; echo "$out" >&2; return 1
  fi
  awk '/requests in/ { n = $1 }
       /^Requests\/sec:/ { rps = $2 }
       $1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
                     ms = (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v }
       END { printf "%s %.3f %s\n", rps, ms, n }' <<<"$out"
}

bench_median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# bench_cpu_ticks PID: user + system CPU time the process has used so far, in clock ticks
# (all its threads; `getconf CLK_TCK` per second).
bench_cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

bench_rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
