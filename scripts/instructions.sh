#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind (repeatable to
# ~0.1% on a noisy shared machine, unlike wall-clock throughput). One Envoy
# under callgrind serves four listeners with a direct_response route:
#   none    no auth filter
#   noop    a proxy-wasm filter that only returns Continue (the cost of
#           running any wasm filter in Envoy)
#   nected  nected-key-auth (allowed request, and 401 request)
#   native  Envoy's native api_key_auth filter
# Not a test. Usage: scripts/instructions.sh ENVOY_BINARY [REQUESTS]
set -euo pipefail
ENVOY=$(realpath "${1:?usage: instructions.sh ENVOY_BINARY [REQUESTS]}")
N=${2:-2000}
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 1; }
WASM=$(realpath "${NKA_WASM:-target/wasm32-wasip1/release/nected_key_auth.wasm}")
# COMPARE_WASM="a.wasm b.wasm" adds an allowed-request row for other builds.
COMPARE_WASM=${COMPARE_WASM:-}
work=$(mktemp -d)
trap 'kill $vg_pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

# The noop filter: the smallest proxy-wasm filter, built from source here.
mkdir -p "$work/noop/src"
cat > "$work/noop/Cargo.toml" <<'TOML'
[package]
name = "noop"
version = "0.1.0"
edition = "2021"
[lib]
crate-type = ["cdylib"]
[dependencies]
proxy-wasm = "0.2.5"
[profile.release]
lto = true
opt-level = 3
codegen-units = 1
panic = "abort"
strip = "debuginfo"
[workspace]
TOML
cat > "$work/noop/src/lib.rs" <<'RS'
use proxy_wasm::traits::*;
use proxy_wasm::types::*;
proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(R) });
}}
struct R;
impl Context for R {}
impl RootContext for R {
    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> { Some(Box::new(H)) }
    fn get_type(&self) -> Option<ContextType> { Some(ContextType::HttpContext) }
}
struct H;
impl Context for H {}
impl HttpContext for H {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action { Action::Continue }
}
RS
cargo build --quiet --release --target wasm32-wasip1 --manifest-path "$work/noop/Cargo.toml" --target-dir "$work/noop/target"
NOOP="$work/noop/target/wasm32-wasip1/release/noop.wasm"

# shellcheck source=perf-setup.sh
. scripts/perf-setup.sh
plugin_config=$(perf_plugin_config)

{
  echo "admin: { address: { socket_address: { address: 127.0.0.1, port_value: 19911 } } }"
  echo "static_resources:"
  echo "  listeners:"
  perf_listener none 19010 ""
  perf_listener noop 19011 "$(perf_wasm_filter "$NOOP" "")"
  perf_listener nected 19012 "$(perf_wasm_filter "$WASM" "$plugin_config")"
  port=19020
  for w in $COMPARE_WASM; do
    perf_listener "compare$port" $port "$(perf_wasm_filter "$(realpath "$w")" "$plugin_config")"
    port=$((port + 1))
  done
  perf_listener native 19013 "$(perf_native_filter)"
} > "$work/envoy.yaml"

valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" --instr-atstart=no \
  "$ENVOY" -c "$work/envoy.yaml" --concurrency 1 --disable-hot-restart -l error >"$work/vg.log" 2>&1 &
vg_pid=$!
perf_wait_ready 19911

load() { # port path header -> sends N requests over one keep-alive connection
  python3 - "$1" "$2" "$3" "$N" <<'PY'
import http.client, sys
port, path, header, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
c = http.client.HTTPConnection("127.0.0.1", port)
headers = dict([header.split(": ", 1)]) if header else {}
for _ in range(n):
    c.request("GET", path, headers=headers)
    c.getresponse().read()
PY
}
measure() { # label port path header
  load "$2" "$3" "$4"                       # warm up (JIT, caches)
  callgrind_control --instr=on "$vg_pid" >/dev/null
  callgrind_control -z "$vg_pid" >/dev/null
  load "$2" "$3" "$4"
  local before total file
  before=$(ls "$work"/cg.* 2>/dev/null | wc -l)
  callgrind_control -d "$vg_pid" >/dev/null
  # The dump is written when Envoy next runs; wait for the file.
  for _ in $(seq 1 300); do
    [ "$(ls "$work"/cg.* 2>/dev/null | wc -l)" -gt "$before" ] && break
    sleep 0.1
  done
  file=$(ls -t "$work"/cg.* | head -1)
  for _ in $(seq 1 100); do grep -q '^totals:' "$file" && break; sleep 0.1; done
  callgrind_control --instr=off "$vg_pid" >/dev/null
  total=$(grep -h '^totals:' "$file" | awk '{print $2}' | head -1)
  printf '%-16s %12d instructions/request\n' "$1" $((total / N))
}
echo "callgrind, Envoy --concurrency 1, $N requests per case (keep-alive, direct_response)"
measure none 19010 /api/v1/workflows/x "nected-api-key: $KEY"
measure noop-wasm 19011 /api/v1/workflows/x "nected-api-key: $KEY"
measure nected-allowed 19012 /api/v1/workflows/x "nected-api-key: $KEY"
measure nected-401 19012 /api/v1/workflows/x ""
measure nected-public 19012 /healthz ""
measure native-allowed 19013 /api/v1/workflows/x "nected-api-key: $KEY"
port=19020
for w in $COMPARE_WASM; do
  measure "$(basename "$w" .wasm)" $port /api/v1/workflows/x "nected-api-key: $KEY"
  port=$((port + 1))
done
