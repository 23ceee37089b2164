#!/usr/bin/env bash
# Screenshot a `render-deploy rehearse --report` page with headless Chromium (Debian: apt-get
# install chromium), to look at the report without a desktop.
#
#   scripts/rehearse-screenshot.sh REPORT.html [OUT.png] [WIDTHxHEIGHT]
#   scripts/rehearse-screenshot.sh --demo [OUT_DIR]
#
# --demo builds the fixture service, rehearses a well-behaved, a request-dropping, a rolling
# deploy and a column rename that breaks the old version, and screenshots the reports into
# OUT_DIR (default target/rehearse-demo).
set -euo pipefail
cd "$(dirname "$0")/.."

chromium_bin=$(command -v chromium || command -v chromium-browser || true)
[ -n "$chromium_bin" ] || { echo "chromium is not installed (apt-get install chromium)" >&2; exit 1; }

shot() { # shot HTML PNG SIZE
  local profile
  profile=$(mktemp -d)
  # Root needs --no-sandbox; the rest keeps Chromium from reaching out to the network.
  "$chromium_bin" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --screenshot="$2" --window-size="${3/x/,}" \
    "file://$(realpath "$1")" >/dev/null 2>&1 || true
  rm -rf "$profile"
  [ -s "$2" ] || { echo "no screenshot written for $1" >&2; return 1; }
  echo "$2"
}

if [ "${1:-}" = "--demo" ]; then
  out=${2:-target/rehearse-demo}
  mkdir -p "$out"
  cargo build --quiet --bin render-deploy --example rehearse_fixture
  fixture=target/debug/examples/rehearse_fixture
  load=(--rate 40 --duration 4s --path / --path '/slow?ms=800' --drain 0.2s)
  target/debug/render-deploy rehearse "${load[@]}" --report "$out/well-behaved.html" -- "$fixture" well-behaved || true
  target/debug/render-deploy rehearse "${load[@]}" --report "$out/drops-in-flight.html" -- "$fixture" drops-in-flight || true
  target/debug/render-deploy rehearse --rate 40 --duration 5s --instances 3 --report "$out/rolling.html" -- "$fixture" well-behaved || true
  # Two versions and a migration that breaks the old one (README: the expand/contract example).
  target/debug/render-deploy rehearse --duration 6s --db-max-connections 20 --report "$out/rename.html" \
    --setup "$fixture sql \"CREATE TABLE users (id int PRIMARY KEY, name text); INSERT INTO users VALUES (1, 'Ada')\"" \
    --old "$fixture well-behaved --read-column users.name --connections 4" \
    --new "$fixture well-behaved --read-column users.full_name --connections 4" \
    --pre-deploy "$fixture sql \"ALTER TABLE users RENAME COLUMN name TO full_name\"" || true
  for name in well-behaved drops-in-flight rolling rename; do
    shot "$out/$name.html" "$out/$name.png" 1200x1400
  done
  exit 0
fi

[ $# -ge 1 ] || { sed -n '2,10p' "$0" >&2; exit 2; }
shot "$1" "${2:-${1%.html}.png}" "${3:-1200x1400}"
