# Shared by the load benchmarks (http.sh, noisy.sh, fuel.sh); sourced, not run.
#
# What it gives a script: the tools installed (wrk), release binaries built, the hello (and
# abuse) components built for wasm32-wasip2, free loopback ports below 32768, private micro
# clouds in temporary NIMBUS_HOMEs, a `wrk` wrapper that keeps the raw output, and one EXIT trap
# that stops every child it started (SIGTERM, then wait) and removes its temporary files.
#
# Knobs (environment): DURATION (10s), WARMUP (2s), THREADS (2), CONNECTIONS (32),
# PROFILE (release; `debug` for quick runs while developing), NIMBUS_BIN (a prebuilt `nimbus`
# to use instead of building one).

DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-32}"
PROFILE="${PROFILE:-release}"

# Every process measured runs as nimbus does by default (it sets this itself when unset): no
# backtrace captured per error value, which wasmtime makes one of per store it drops. Panics
# still print backtraces under RUST_BACKTRACE.
export RUST_LIB_BACKTRACE=0

BENCH_TMP=$(mktemp -d /tmp/nimbus-bench.XXXXXX)
# Builds run as an unprivileged user when the stager runs as root; it must get through.
chmod 711 "$BENCH_TMP"
BENCH_PIDS=()
BENCH_COMMANDS=()

say() { printf '==> %s\n' "$*" >&2; }

bench_cleanup() {
  local i pid
  for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
    pid=${BENCH_PIDS[i]}
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${BENCH_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$BENCH_TMP"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# Remembers a child so the EXIT trap stops it.
track() { BENCH_PIDS+=("$1"); }

# Stops one tracked child now (SIGTERM, then wait).
stop_child() {
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# Installs a Debian package when its command is missing.
need() {
  command -v "$1" >/dev/null 2>&1 && return
  say "installing $2"
  apt-get install -y -qq "$2" >/dev/null
}

# Builds nimbus (unless NIMBUS_BIN is given) and sets NIMBUS to its path.
build_nimbus() {
  scripts/setup >&2
  need wrk wrk
  if [ -n "${NIMBUS_BIN:-}" ]; then
    NIMBUS=$NIMBUS_BIN
  else
    local flag=()
    [ "$PROFILE" = release ] && flag=(--release)
    say "building nimbus ($PROFILE)"
    cargo build "${flag[@]}" --quiet -p nimbus-cli
    local target_dir
    target_dir=$(cargo metadata --format-version 1 --no-deps |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    NIMBUS="$target_dir/$PROFILE/nimbus"
  fi
  NIMBUS_VERSION=$("$NIMBUS" --version)
}

# Builds a sample app for wasm32-wasip2 and prints the component's path.
build_sample() {
  local dir=sample-apps/$1
  say "building $dir for wasm32-wasip2"
  # In the app's own target dir: a shared CARGO_TARGET_DIR may be locked by a long build.
  (cd "$dir" && env -u CARGO_TARGET_DIR cargo build --release --quiet --target wasm32-wasip2 >&2)
  echo "$dir/target/wasm32-wasip2/release/${1//-/_}.wasm"
}

# A free loopback TCP port in 20000–32767 (below the ephemeral range, so wrk's and the router's
# outgoing connections cannot take it between now and its use).
free_port() {
  python3 - <<'EOF'
import random, socket
for _ in range(200):
    port = random.randint(20000, 32767)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    raise SystemExit("no free port in 20000-32767")
EOF
}

# Waits until URL answers 200 (with an optional Host header), polling every 10 ms, at most 60 s.
wait_200() {
  local url=$1 host=${2:-} header=() deadline=$((SECONDS + 60))
  [ -n "$host" ] && header=(-H "Host: $host")
  while ((SECONDS < deadline)); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "${header[@]}" "$url")" = 200 ]; then
      return 0
    fi
    sleep 0.01
  done
  echo "no 200 from $url ${host:+(Host: $host)} within 60 s" >&2
  return 1
}

# Starts a micro cloud: `start_cloud VAR [nimbus up flags…]` sets VAR_home, VAR_port, VAR_pid.
# Its NIMBUS_HOME, data and log live in the bench's temporary directory.
start_cloud() {
  local var=$1
  shift
  local home="$BENCH_TMP/$var" port
  port=$(free_port)
  mkdir -p "$home"
  NIMBUS_HOME=$home "$NIMBUS" up --port "$port" --nats-port 0 --data-dir "$home/cloud" "$@" \
    >"$home/up.log" 2>&1 &
  local pid=$!
  track "$pid"
  BENCH_COMMANDS+=("NIMBUS_HOME=<tmp> nimbus up --port $port --nats-port 0 --data-dir <tmp>/cloud${*:+ $*}")
  printf -v "${var}_home" '%s' "$home"
  printf -v "${var}_port" '%s' "$port"
  printf -v "${var}_pid" '%s' "$pid"
  if ! wait_200 "http://127.0.0.1:$port/v1/info" "api.localhost"; then
    cat "$home/up.log" >&2
    return 1
  fi
  # The CLI reads the API address from NIMBUS_HOME/config.json, written once the cloud is up.
  local i
  for i in $(seq 1 100); do
    [ -s "$home/config.json" ] && return 0
    sleep 0.1
  done
  echo "nimbus up did not write $home/config.json" >&2
  return 1
}

# `cli HOME args…`: the nimbus CLI against the cloud whose NIMBUS_HOME is HOME.
cli() {
  local home=$1
  shift
  NIMBUS_HOME=$home "$NIMBUS" "$@"
}

# `push_app HOME NAME WASM [push flags…]`: pushes a prebuilt component (push waits until it
# runs) and notes the command.
push_app() {
  local home=$1 name=$2 wasm=$3
  shift 3
  cli "$home" push "$name" -p "$wasm" "$@" >/dev/null
  BENCH_COMMANDS+=("nimbus push $name -p $(basename "$wasm")${*:+ $*}")
}

# `instance_addr HOME NAME` prints host:port of the app's first instance (the DEA's listener).
instance_addr() {
  cli "$1" app "$2" --json |
    python3 -c 'import json,sys; i=json.load(sys.stdin)["instances"][0]; print(i["host"] + ":" + str(i["port"]))'
}

# `run_wrk LABEL URL [Host]`: a warm-up, then the measured run; keeps the output in
# $BENCH_TMP/wrk-LABEL.txt and sets RPS, P99, ERRORS (non-2xx + socket errors, as wrk says).
run_wrk() {
  local label=$1 url=$2 host=${3:-}
  local header=()
  [ -n "$host" ] && header=(-H "Host: $host")
  BENCH_LOADAVG=${BENCH_LOADAVG:-$(cut -d' ' -f1-3 /proc/loadavg)}
  # Other processes busy at that moment (ps's %CPU is over each one's lifetime; wrk is not running).
  BENCH_BUSY=${BENCH_BUSY:-$(ps -eo pcpu=,comm= --sort=-pcpu | awk '$1 > 20 {printf "%s%s (%s%%)", sep, $2, $1; sep = ", "}')}
  BENCH_BUSY=${BENCH_BUSY:-none}
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "${header[@]}" "$url" >/dev/null
  local command="wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency ${host:+-H 'Host: $host' }$url"
  say "$label: $command"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "${header[@]}" "$url" \
    >"$BENCH_TMP/wrk-$label.txt"
  local out
  out=$(cat "$BENCH_TMP/wrk-$label.txt")
  RPS=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  P99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  ERRORS=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}' <<<"$out")
  printf '%s\n' "## $label" "\$ $command" "$out" "" >>"$BENCH_TMP/raw.txt"
}

# wrk's latency ("812.00us", "1.20ms", "2.01s") in microseconds.
to_us() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) m = 1; else if (v ~ /ms$/) m = 1000; else if (v ~ /m$/) m = 60e6; else if (v ~ /s$/) m = 1e6; else m = 1
    printf "%.0f", n * m }'
}

# `ratio A B`: A / B to two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# `meets A OP B`: "met" or "MISSED" for A OP B (OP one of >= <=).
meets() {
  awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN {
    ok = (op == ">=") ? (a >= b) : (a <= b)
    print ok ? "met" : "MISSED" }'
}

# The header every result file starts with: what ran, where, when, with what.
machine_info() {
  echo "date:     $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "machine:  $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo) RAM, $(uname -sr)"
  echo "commit:   $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "nimbus:   $NIMBUS_VERSION ($PROFILE build)"
  echo "rustc:    $(rustc --version)"
  echo "wrk:      $(wrk -v 2>&1 | head -1 | awk '{print $2}') (-t$THREADS -c$CONNECTIONS -d$DURATION --latency, after a $WARMUP warm-up at the same settings)"
  echo "setting:  every process on this one machine, over loopback; wrk competes for the same cores"
  echo "load avg: $BENCH_LOADAVG before the first measurement (1, 5, 15 min; wrk-free, so near 0 means a quiet machine)"
  echo "busy then: $BENCH_BUSY (processes over 20% CPU, ours included)"
  echo "env:      RUST_LIB_BACKTRACE=0 for every process (no backtrace per error value; nimbus sets it by default)"
}

# Prints the commands that set up the measured system (a command repeated on several clouds once).
setup_commands() {
  printf '  $ %s\n' "${BENCH_COMMANDS[@]}" | awk '!seen[$0]++'
}
