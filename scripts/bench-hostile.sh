#!/usr/bin/env bash
# Benchmark: the release binary under hostile load (examples/bench_hostile.rs): RSS before,
# during and after a flood of 400 x 3 unsigned 1 MiB uploads, answer times of /livez and
# /health throughout, the in-flight budget under well-formed unsigned uploads, and /livez
# with 600 connections held under a file limit of 256. Loopback only, bounded counts; needs
# PostgreSQL's server binaries (initdb, pg_ctl) and util-linux's prlimit.
#
#   scripts/bench-hostile.sh
#   RENDER_DEPLOY_BIN=path/to/another/render-deploy scripts/bench-hostile.sh   # compare a build
set -euo pipefail
cd "$(dirname "$0")/.."
command -v prlimit >/dev/null 2>&1 || { echo "prlimit not found: apt-get install util-linux" >&2; exit 1; }
cargo build --quiet --release --bin render-deploy --example bench_hostile
exec target/release/examples/bench_hostile
