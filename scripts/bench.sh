#!/usr/bin/env bash
# Throughput of Envoy with nected-key-auth against Envoy without an auth
# filter and against Envoy's native api_key_auth filter, measured in one run
# with wrk (requests answered by a direct_response route, so the upstream
# does not dominate). Not a test: numbers vary with the machine; compare the
# ratios of one run.
#
#   make bench            (or: scripts/bench.sh ENVOY_BINARY [SECONDS] [ROUNDS])
set -euo pipefail
ENVOY=${1:?usage: bench.sh ENVOY_BINARY [SECONDS] [ROUNDS]}
SECONDS_PER_RUN=${2:-5}
ROUNDS=${3:-3}
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
ENVOY=$(realpath "$ENVOY")
WASM=$(realpath "${NKA_WASM:-target/wasm32-wasip1/release/nected_key_auth.wasm}")
# COMPARE_WASM=other.wasm adds a column for another build of the filter.
COMPARE_WASM=${COMPARE_WASM:+$(realpath "$COMPARE_WASM")}
# shellcheck source=perf-setup.sh
. scripts/perf-setup.sh
work=$(mktemp -d)
trap 'kill $envoy_pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
plugin_config=$(perf_plugin_config)

{
  echo "admin: { address: { socket_address: { address: 127.0.0.1, port_value: 19901 } } }"
  echo "static_resources:"
  echo "  listeners:"
  perf_listener none 19000 ""
  perf_listener nected 19001 "$(perf_wasm_filter "$WASM" "$plugin_config")"
  perf_listener native 19002 "$(perf_native_filter)"
  [ -z "$COMPARE_WASM" ] || perf_listener compare 19003 "$(perf_wasm_filter "$COMPARE_WASM" "$plugin_config")"
} > "$work/bench.yaml"

"$ENVOY" -c "$work/bench.yaml" --concurrency 1 --disable-hot-restart -l warn &
envoy_pid=$!
perf_wait_ready 19901

run() { # port path [header]
  local args=(-t1 -c16 -d"${SECONDS_PER_RUN}s" --latency)
  [ $# -ge 3 ] && args+=(-H "$3")
  wrk "${args[@]}" "http://127.0.0.1:$1$2" | awk '/Requests\/sec/ {print $2}'
}
check() { # port path want [header]
  local got
  got=$(curl -s -o /dev/null -w '%{http_code}' ${4:+-H "$4"} "http://127.0.0.1:$1$2")
  [ "$got" = "$3" ] || { echo "setup check failed: port $1 $2 -> $got, want $3" >&2; exit 1; }
}
check 19001 /api/v1/workflows/x 200 "nected-api-key: $KEY"
check 19001 /api/v1/workflows/x 401
check 19002 /api/v1/workflows/x 200 "nected-api-key: $KEY"

echo "wrk -t1 -c16 -d${SECONDS_PER_RUN}s, Envoy --concurrency 1, $ROUNDS rounds (requests/s)"
printf '%-5s %12s %16s %16s %16s %16s\n' round no-filter nected-allowed nected-401 native-allowed "${COMPARE_WASM:+compare-allowed}"
sum_none=0; sum_ok=0; sum_deny=0; sum_native=0; sum_cmp=0
for r in $(seq 1 "$ROUNDS"); do
  a=$(run 19000 /api/v1/workflows/x "nected-api-key: $KEY")
  b=$(run 19001 /api/v1/workflows/x "nected-api-key: $KEY")
  c=$(run 19001 /api/v1/workflows/x)
  d=$(run 19002 /api/v1/workflows/x "nected-api-key: $KEY")
  e=0; [ -z "$COMPARE_WASM" ] || e=$(run 19003 /api/v1/workflows/x "nected-api-key: $KEY")
  printf '%-5s %12s %16s %16s %16s %16s\n' "$r" "$a" "$b" "$c" "$d" "${COMPARE_WASM:+$e}"
  sum_cmp=$(echo "$sum_cmp + $e" | bc -l)
  sum_none=$(echo "$sum_none + $a" | bc -l); sum_ok=$(echo "$sum_ok + $b" | bc -l)
  sum_deny=$(echo "$sum_deny + $c" | bc -l); sum_native=$(echo "$sum_native + $d" | bc -l)
done
printf 'ratio to no-filter: nected-allowed %.3f, nected-401 %.3f, native-allowed %.3f\n' \
  "$(echo "$sum_ok / $sum_none" | bc -l)" "$(echo "$sum_deny / $sum_none" | bc -l)" "$(echo "$sum_native / $sum_none" | bc -l)"
[ -z "$COMPARE_WASM" ] || printf 'compare-allowed / nected-allowed: %.3f\n' "$(echo "$sum_cmp / $sum_ok" | bc -l)"
