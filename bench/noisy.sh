#!/usr/bin/env bash
# Noisy neighbours: hello's p99 alone, then while two fuel-heavy tenants burn CPU on the same
# DEA. The tenants are sample-apps/abuse pushed twice (noisy-1, noisy-2, each with a large fuel
# budget and a 10 s timeout); NOISY_CLIENTS curl loops per tenant keep `/loop` requests (a busy
# loop ended only by fuel or the timeout) running for the whole noisy measurement.
# hello is measured with the same wrk settings, directly at its DEA instance and through the
# router, alone and with the neighbours. Target (issue 3): noisy p99 <= 2x solo p99.
# Results: bench/results/noisy.txt. Knobs: bench/lib.sh, plus NOISY_FUEL (20G),
# NOISY_TIMEOUT (10s), NOISY_CLIENTS (2 concurrent /loop requests per tenant).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

NOISY_FUEL="${NOISY_FUEL:-20G}"
NOISY_TIMEOUT="${NOISY_TIMEOUT:-10s}"
NOISY_CLIENTS="${NOISY_CLIENTS:-2}"
out=bench/results/noisy.txt

build_nimbus
hello=$(build_sample hello-rust)
abuse=$(build_sample abuse)

start_cloud cloud
push_app "$cloud_home" hello "$hello"
push_app "$cloud_home" noisy-1 "$abuse" --fuel "$NOISY_FUEL" --timeout "$NOISY_TIMEOUT"
push_app "$cloud_home" noisy-2 "$abuse" --fuel "$NOISY_FUEL" --timeout "$NOISY_TIMEOUT"
for app in hello noisy-1 noisy-2; do
  wait_200 "http://127.0.0.1:$cloud_port/" "$app.localhost"
done
dea=$(instance_addr "$cloud_home" hello)

# Solo.
run_wrk solo-direct "http://$dea/"
solo_direct_rps=$RPS solo_direct_p99=$P99
run_wrk solo-router "http://127.0.0.1:$cloud_port/" hello.localhost
solo_router_rps=$RPS solo_router_p99=$P99

# The neighbours: bounded curl loops, each ending at the deadline (the loop) or after the
# tenant's timeout plus a margin (each request). Their status codes are kept for the report.
seconds() { awk -v d="$1" 'BEGIN { n = d + 0; if (d ~ /m$/) n *= 60; printf "%d", n }'; }
noise_seconds=$((2 * ($(seconds "$WARMUP") + $(seconds "$DURATION")) + 5))
request_limit=$(($(seconds "$NOISY_TIMEOUT") + 5))
noise_end=$((SECONDS + noise_seconds))
noise_pids=()
for app in noisy-1 noisy-2; do
  for client in $(seq 1 "$NOISY_CLIENTS"); do
    (
      while ((SECONDS < noise_end)); do
        curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -m "$request_limit" \
          -H "Host: $app.localhost" "http://127.0.0.1:$cloud_port/loop" || true
      done >"$BENCH_TMP/noise-$app-$client.txt"
    ) &
    noise_pids+=($!)
    track "$!"
  done
done
sleep 1
# The neighbours must really be burning CPU: the DEA process should use well over one core.
cpu_before=$(awk '{print $14 + $15}' "/proc/$cloud_pid/stat")
sleep 2
cpu_after=$(awk '{print $14 + $15}' "/proc/$cloud_pid/stat")
noise_cores=$(awk -v a="$cpu_before" -v b="$cpu_after" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / hz / 2 }')

run_wrk noisy-direct "http://$dea/"
noisy_direct_rps=$RPS noisy_direct_p99=$P99
run_wrk noisy-router "http://127.0.0.1:$cloud_port/" hello.localhost
noisy_router_rps=$RPS noisy_router_p99=$P99

# Let the loops end by themselves (bounded by noise_end and curl's -m), then summarise.
for pid in "${noise_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
noise_summary=$(cat "$BENCH_TMP"/noise-*.txt | awk '{n[$1]++; t[$1] += $2} END {
  for (c in n) printf "%s x%d (mean %.1f s)  ", c, n[c], t[c] / n[c] }')

row() { printf '  %-28s %10s req/s   p99 %9s\n' "$@"; }
verdict() {
  local solo noisy r
  solo=$(to_us "$1") noisy=$(to_us "$2")
  r=$(ratio "$noisy" "$solo")
  echo "${r}x (target <= 2.0x: $(meets "$r" '<=' 2.0))"
}
{
  echo "# Nimbus noisy-neighbour benchmark: hello's p99 alone vs beside two CPU-burning tenants"
  machine_info
  echo
  echo "## Setup"
  setup_commands
  echo "  noise: $NOISY_CLIENTS loop(s) per tenant of"
  echo "    curl -m $request_limit -H 'Host: noisy-N.localhost' http://127.0.0.1:$cloud_port/loop"
  echo "  for ${noise_seconds} s around the noisy measurements. With only the neighbours running, the"
  echo "  nimbus process used $noise_cores cores (CPU time over 2 s of wall time)."
  echo "  /loop answers (status x count, mean time): $noise_summary"
  echo
  echo "## hello (wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency)"
  row "solo, DEA direct" "$solo_direct_rps" "$solo_direct_p99"
  row "noisy, DEA direct" "$noisy_direct_rps" "$noisy_direct_p99"
  row "solo, through the router" "$solo_router_rps" "$solo_router_p99"
  row "noisy, through the router" "$noisy_router_rps" "$noisy_router_p99"
  echo
  echo "## Target: noisy p99 <= 2x solo p99"
  echo "  DEA direct:         $(verdict "$solo_direct_p99" "$noisy_direct_p99")"
  echo "  through the router: $(verdict "$solo_router_p99" "$noisy_router_p99")"
  echo
  echo "## Raw wrk output"
  cat "$BENCH_TMP/raw.txt"
} >"$out"
cat "$out"
