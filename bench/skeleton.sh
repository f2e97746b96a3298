#!/usr/bin/env bash
# Walking-skeleton figures, in one run on this machine:
#   1. time from `nimbus push` of the prebuilt hello .wasm to its first 200 through the router
#      (a fresh app name each time; median of 5);
#   2. wrk against hello through the Nimbus router (req/s, p99).
# Results go to bench/results/skeleton.txt. Uses release builds; starts and stops its own cloud.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-2}"
out=bench/results/skeleton.txt

scripts/setup
command -v wrk >/dev/null || apt-get install -y -qq wrk
cargo build --release --quiet -p nimbus-cli
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
nimbus="$target_dir/release/nimbus"
wasm=$(cd sample-apps/hello-rust && cargo build --release --quiet --target wasm32-wasip2 && pwd)/target/wasm32-wasip2/release/hello_rust.wasm

export NIMBUS_HOME=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$nimbus" up --port "$port" --nats-port 0 >"$NIMBUS_HOME/up.log" 2>&1 &
up_pid=$!
trap 'kill -TERM $up_pid 2>/dev/null; wait $up_pid 2>/dev/null; rm -rf "$NIMBUS_HOME"' EXIT
for _ in $(seq 1 300); do
  curl -fsS "http://api.localhost:$port/v1/info" >/dev/null 2>&1 && break
  sleep 0.1
done

now_ms() { date +%s%3N; }
times=()
for i in 1 2 3 4 5; do
  start=$(now_ms)
  "$nimbus" push "bench-$i" -p "$wasm" >/dev/null
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://bench-$i.localhost:$port/")" = 200 ]; do sleep 0.01; done
  times+=($(( $(now_ms) - start )))
done
median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)

wrk_out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$port/" -H "Host: bench-1.localhost")
rps=$(awk '/Requests\/sec/ {print $2}' <<<"$wrk_out")
p99=$(awk '$1 == "99%" {print $2}' <<<"$wrk_out")

{
  echo "# Nimbus walking skeleton — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, release build"
  echo "push of prebuilt hello .wasm -> first 200 (ms, 5 runs): ${times[*]}; median ${median} ms"
  echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency through the router: ${rps} req/s, p99 ${p99}"
  echo
  echo "$wrk_out"
} | tee "$out"
