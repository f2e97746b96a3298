#!/usr/bin/env bash
# Density (issue 3, benchmark 4): resident memory of one DEA process with 1,000 deployed idle
# apps. Starts its own nats-server and an in-process DEA with the default configuration, deploys
# APPS distinct apps of hello, requests every SAMPLE_EVERY-th, reads VmRSS at each step.
# Results go to bench/results/density.txt. Release build; cleans up after itself.
#
#   bench/density.sh            # 1,000 apps, one request to every 10th
#   APPS=200 bench/density.sh   # fewer
set -euo pipefail
cd "$(dirname "$0")/.."

APPS="${APPS:-1000}"
SAMPLE_EVERY="${SAMPLE_EVERY:-10}"

scripts/setup
# Every instance holds a listening socket: 65,536 open files, or the hard limit if lower.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# Built together with nimbus-cli so cargo resolves the same features as the other benchmarks and
# reuses their release build of wasmtime instead of compiling another one.
cargo build --release --quiet -p nimbus-cli -p nimbus-dea-wasm --example density
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
"$target_dir/release/examples/density" "$APPS" "$SAMPLE_EVERY"
