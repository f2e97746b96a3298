#!/usr/bin/env bash
# Fuel overhead: hello's req/s and p99 with fuel metering on (the default) vs off
# (`nimbus up --no-fuel-metering`), reported so operators can choose. Two micro clouds run side
# by side, idle but for the one being measured; hello is measured on each, directly at its DEA
# instance and through the router, with the same wrk settings, in the order on, off, on, off
# (ROUNDS=2) so that drift of the machine shows instead of biasing one side.
# A check first proves the switch works: hello pushed with `--fuel 1000` fails for lack of fuel
# where fuel is metered and is served where it is not.
# Results: bench/results/fuel.txt. Knobs: bench/lib.sh, plus ROUNDS (2).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

ROUNDS="${ROUNDS:-2}"
out=bench/results/fuel.txt

build_nimbus
hello=$(build_sample hello-rust)

start_cloud on
start_cloud off --no-fuel-metering
declare -A dea
for side in on off; do
  home_var=${side}_home port_var=${side}_port
  push_app "${!home_var}" hello "$hello"
  wait_200 "http://127.0.0.1:${!port_var}/" hello.localhost
  dea[$side]=$(instance_addr "${!home_var}" hello)
  cli "${!home_var}" push starved -p "$hello" --fuel 1000 >/dev/null
done
check() {
  local port_var=${1}_port
  curl -s -o /dev/null -w '%{http_code} %header{x-nimbus-error}' -H "Host: starved.localhost" \
    "http://127.0.0.1:${!port_var}/"
}
check_on=$(check on) check_off=$(check off)

declare -A rps p99
for round in $(seq 1 "$ROUNDS"); do
  for side in on off; do
    port_var=${side}_port
    run_wrk "$side-direct-$round" "http://${dea[$side]}/"
    rps[$side-direct-$round]=$RPS p99[$side-direct-$round]=$P99
    run_wrk "$side-router-$round" "http://127.0.0.1:${!port_var}/" hello.localhost
    rps[$side-router-$round]=$RPS p99[$side-router-$round]=$P99
  done
done

# Mean req/s over the rounds.
mean_rps() {
  local path=$1 side=$2 round values=()
  for round in $(seq 1 "$ROUNDS"); do values+=("${rps[$side-$path-$round]}"); done
  printf '%s\n' "${values[@]}" | awk '{s += $1} END {printf "%.2f", s / NR}'
}
{
  echo "# Nimbus fuel-metering benchmark: hello with fuel metering on vs off"
  machine_info
  echo
  echo "## Setup (two clouds side by side)"
  setup_commands
  echo "  check: nimbus push starved -p hello_rust.wasm --fuel 1000 on each, then curl -H 'Host: starved.localhost'"
  echo "    metering on:  $check_on"
  echo "    metering off: $check_off"
  echo
  echo "## hello (wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency); each round measured on-direct, on-router, off-direct, off-router"
  for round in $(seq 1 "$ROUNDS"); do
    for path in direct router; do
      for side in on off; do
        printf '  round %s  %-6s %-4s %10s req/s   p99 %9s\n' "$round" "$path" "$side" \
          "${rps[$side-$path-$round]}" "${p99[$side-$path-$round]}"
      done
    done
  done
  echo
  echo "## Mean req/s, off / on (no target: reported so operators can choose)"
  for path in direct router; do
    on_mean=$(mean_rps "$path" on) off_mean=$(mean_rps "$path" off)
    printf '  %-7s on %10s   off %10s   off/on = %sx\n' "$path" "$on_mean" "$off_mean" "$(ratio "$off_mean" "$on_mean")"
  done
  echo
  echo "## Raw wrk output"
  cat "$BENCH_TMP/raw.txt"
} >"$out"
cat "$out"
