#!/usr/bin/env bash
# The service benchmark: start to healthy, idle memory, pooled vs unpooled `/`, SIGTERM to exit.
# Release build, throwaway PostgreSQL on loopback, wrk for requests per second (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin render-deploy --example bench_service
RENDER_DEPLOY_BIN=target/release/render-deploy target/release/examples/bench_service
