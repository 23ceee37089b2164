#!/usr/bin/env bash
# Benchmark: /health served from cache against /livez (no I/O), on the same server, with wrk.
#
# Starts examples/health_server.rs (release build) on a free loopback port, warms /health up
# (the first request probes, every later one is served from the 60-second cache), then runs wrk
# on the two endpoints in alternation, ROUNDS times each, and prints a table with the median
# rate of each and their ratio. Bounded: ROUNDS x 2 x DURATION plus the build.
#
#   scripts/bench-health.sh                      # stand-in probe, no database needed
#   DATABASE_URL=postgres://... scripts/bench-health.sh   # probe a real database
#
# Knobs: DURATION (wrk -d, default 3s), THREADS (wrk -t, 1), CONNECTIONS (wrk -c, 32),
# ROUNDS (5). Keep ROUNDS x 2 x DURATION under the 60-second cache TTL.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-3s}
THREADS=${THREADS:-1}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-5}

command -v wrk >/dev/null 2>&1 || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }

cargo build --quiet --release --example health_server
log=$(mktemp)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -f "$log"
}
trap cleanup EXIT

PORT=0 target/release/examples/health_server >"$log" 2>/dev/null &
server_pid=$!
base=
for _ in $(seq 1 100); do
  base=$(sed -n 's/^listening on //p' "$log")
  [ -n "$base" ] && break
  kill -0 "$server_pid" 2>/dev/null || { echo "the server exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$base" ] || { echo "the server did not start within 10 s" >&2; exit 1; }

# The first /health probes; wrk's short warm-up run makes every later one a cache hit.
wrk -t1 -c1 -d1s "$base/health" >/dev/null
wrk -t1 -c1 -d1s "$base/livez" >/dev/null

rate() { # rate PATH: requests per second of one wrk run, and its p99 latency
  local out
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$base$1")
  if echo "$out" | grep -q "Non-2xx"; then echo "$1 answered non-2xx:" >&2; echo "$out" >&2; exit 1; fi
  printf '%s %s\n' "$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')" \
    "$(echo "$out" | awk '$1 == "99%" {print $2}')"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
best() { sort -n | tail -1; }

livez_rates=() health_rates=() livez_p99=() health_p99=()
for round in $(seq 1 "$ROUNDS"); do
  out=$(rate /livez);  read -r r p <<<"$out"; livez_rates+=("$r");  livez_p99+=("$p")
  out=$(rate /health); read -r r p <<<"$out"; health_rates+=("$r"); health_p99+=("$p")
  echo "round $round: /livez ${livez_rates[-1]} req/s, /health ${health_rates[-1]} req/s" >&2
done
livez=$(printf '%s\n' "${livez_rates[@]}" | median)
health=$(printf '%s\n' "${health_rates[@]}" | median)
livez_best=$(printf '%s\n' "${livez_rates[@]}" | best)
health_best=$(printf '%s\n' "${health_rates[@]}" | best)

echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS alternating rounds; $(nproc) CPUs shared by wrk and the server"
printf '| %-22s | %16s | %14s | %-40s |\n' "endpoint" "median req/s" "best req/s" "p99 latency per round"
printf '|%s|%s|%s|%s|\n' "------------------------" "------------------" "----------------" "------------------------------------------"
printf '| %-22s | %16.0f | %14.0f | %-40s |\n' "/livez (no I/O)" "$livez" "$livez_best" "${livez_p99[*]}"
printf '| %-22s | %16.0f | %14.0f | %-40s |\n' "/health (from cache)" "$health" "$health_best" "${health_p99[*]}"
echo
awk -v h="$health" -v l="$livez" -v hb="$health_best" -v lb="$livez_best" \
  'BEGIN { printf "/health / /livez: %.2f of the median, %.2f of the best (goal: at least 0.90)\n", h / l, hb / lb }'
