#!/usr/bin/env bash
# Staging and first-request time per language (issue 4).
#
# 1. One release micro cloud; every sample app pushed from source with `nimbus push` (which
#    waits until the app answers through the router). Reported per app: the stager's
#    "staged in" time (fetch, unpack, build, validate + precompile, store) and the whole push
#    until the first 200.
# 2. The droplets those pushes produced (`nimbus download-droplet`), started on fresh
#    DEA runtimes (`dea-wasm/examples/first_request.rs`): time to the end of the first response
#    when the DEA compiles the droplet (cold) and when it loads the stager's precompiled
#    artifact. Median of 3 each.
# Results: bench/results/staging.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

out=bench/results/staging.txt
build_nimbus
start_cloud c

# name, sample directory.
apps=(
  "rust hello-rust"
  "rust-wagi hello-wagi-rust"
  "c hello-c"
  "wat hello-wat"
  "python hello-python"
  "js hello-js"
)
pushes="$BENCH_TMP/pushes.txt"
triples=()
for app in "${apps[@]}"; do
  set -- $app
  name=$1 dir=sample-apps/$2
  say "pushing $dir as $name"
  started=$(date +%s.%N)
  cli "$c_home" push "$name" -p "$dir" >"$BENCH_TMP/push-$name.txt"
  total=$(echo "$(date +%s.%N) - $started" | bc)
  staged=$(sed -n 's/.*staged in \([0-9.]*\)s.*/\1/p' "$BENCH_TMP/push-$name.txt")
  read -r kind language < <(cli "$c_home" app "$name" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)["app"]["droplet"]
print(d["kind"], d["language"])')
  cli "$c_home" download-droplet "$name" -o "$BENCH_TMP/$name.wasm" >/dev/null
  size=$(stat -c %s "$BENCH_TMP/$name.wasm")
  printf '%-10s %-11s %-15s %8.1fMB %9ss %11.1fs\n' "$name" "$language" "$kind" \
    "$(echo "$size / 1000000" | bc -l)" "$staged" "$total" >>"$pushes"
  triples+=("$name" "$kind" "$BENCH_TMP/$name.wasm")
done

say "building the first-request example"
cargo build --release --quiet -p nimbus-cli -p nimbus-dea-wasm --example first_request
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
say "starting each droplet on fresh DEA runtimes"
starts=$("$target_dir/release/examples/first_request" "${triples[@]}")

{
  echo "# Staging and first request per language ($(date -u +%Y-%m-%dT%H:%MZ), $NIMBUS_VERSION, $(nproc) cores)"
  echo
  echo "## nimbus push from source (release micro cloud)"
  printf '%-10s %-11s %-15s %10s %10s %12s\n' app language kind droplet "staged in" "push→200"
  cat "$pushes"
  echo
  echo "## First request after start on a fresh DEA runtime (median of 3)"
  echo "$starts"
  echo
  echo "Commands: ${BENCH_COMMANDS[*]}; nimbus push NAME -p sample-apps/<dir>;"
  echo "cargo run --release -p nimbus-dea-wasm --example first_request -- NAME KIND DROPLET..."
} >"$out"
cat "$out"
