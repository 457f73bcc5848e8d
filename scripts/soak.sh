#!/usr/bin/env bash
# `make soak`: Envoy with 2 workers, the built filter and a generated plugin
# config, under mixed HTTP/1.1 and h2c traffic for SOAK_SECONDS (warm-up
# included) from scripts/soak_load.py, which checks every response against
# the contract, the outcome counters against what it sent, and Envoy's RSS
# growth after the warm-up. Exit status 0 only when every criterion passes.
#
#   make soak                    (or: scripts/soak.sh ENVOY_BINARY)
#   SOAK_SECONDS=180 SOAK_WARMUP=30 make soak
#
# Needs the h2 package on PYTHONPATH (the Makefile installs it into .tools/py).
# Envoy's listener and admin ports are picked by the kernel, so a soak can run
# next to `make run` or the tests.
set -euo pipefail
ENVOY=${1:?usage: soak.sh ENVOY_BINARY}
SOAK_SECONDS=${SOAK_SECONDS:-180}
SOAK_WARMUP=${SOAK_WARMUP:-30}
cd "$(dirname "$0")/.."
ENVOY=$(realpath "$ENVOY")
WASM=$(realpath "${NKA_WASM:-target/wasm32-wasip1/release/nected_key_auth.wasm}")
[ -f "$WASM" ] || { echo "no $WASM: run make build" >&2; exit 1; }
python3 -c 'import h2' 2>/dev/null || { echo "the h2 package is missing: run make soak" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/nka-soak.XXXXXX")
envoy_pid=
load_pid=
status=1
# shellcheck disable=SC2329  # invoked by the EXIT trap
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$load_pid" ]; then
    kill "$load_pid" 2>/dev/null || true
    wait "$load_pid" 2>/dev/null || true
  fi
  if [ -n "$envoy_pid" ]; then
    kill "$envoy_pid" 2>/dev/null || true
    wait "$envoy_pid" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] && [ -f "$work/envoy.log" ]; then
    echo "--- last 40 lines of the Envoy log ---" >&2
    tail -n 40 "$work/envoy.log" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Fresh keys and the plugin config holding their digests.
python3 scripts/soak_load.py gen-config "$work"

# The bootstrap: one listener, the filter, and a direct_response route behind
# it (no upstream to become the bottleneck). The route reflects what reached
# it in response headers, so the load generator can check that a passing
# request lost its key header and carries the client the filter set.
{
  cat <<YAML
node: { id: nka-soak, cluster: nka-soak }
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
static_resources:
  listeners:
  - name: soak
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    # Spread the connections evenly over the 2 workers.
    connection_balance_config: { exact_balance: {} }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: soak
          codec_type: AUTO
          normalize_path: true
          merge_slashes: true
          path_with_escaped_slashes_action: REJECT_REQUEST
          route_config:
            name: soak
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: "ok" } }
                response_headers_to_add:
                - header: { key: x-soak-client, value: "%REQ(x-nected-client)%" }
                - header: { key: x-soak-key, value: "%REQ(nected-api-key)%" }
          http_filters:
          - name: nected_key_auth
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: nected_key_auth
                root_id: nected_key_auth
                failure_policy: FAIL_RELOAD
                vm_config:
                  vm_id: nected_key_auth
                  runtime: envoy.wasm.runtime.v8
                  code: { local: { filename: "$WASM" } }
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: |
YAML
  sed 's/^/                    /' "$work/plugin-config.json"
  cat <<YAML
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
YAML
} > "$work/soak.yaml"

"$ENVOY" -c "$work/soak.yaml" --concurrency 2 --disable-hot-restart \
  --admin-address-path "$work/admin.txt" \
  --log-level warning --component-log-level wasm:info \
  --log-path "$work/envoy.log" &
envoy_pid=$!

# Ready when the admin endpoint (its address file appears once it listens)
# answers LIVE; curl probes with HTTP/1.1 and a host header.
admin=
for _ in $(seq 1 300); do
  if ! kill -0 "$envoy_pid" 2>/dev/null; then
    echo "Envoy exited during start-up" >&2
    exit 1
  fi
  if [ -z "$admin" ] && [ -s "$work/admin.txt" ]; then
    admin=$(cat "$work/admin.txt")
  fi
  if [ -n "$admin" ] && curl -fs "http://$admin/ready" 2>/dev/null | grep -qx LIVE; then
    break
  fi
  sleep 0.1
done
if [ -z "$admin" ] || ! curl -fs "http://$admin/ready" 2>/dev/null | grep -qx LIVE; then
  echo "Envoy did not become ready within 30 s" >&2
  exit 1
fi
port=$(curl -fs "http://$admin/listeners?format=json" | python3 -c '
import json, sys
for s in json.load(sys.stdin)["listener_statuses"]:
    if s["name"] == "soak":
        print(s["local_address"]["socket_address"]["port_value"])')
[ -n "$port" ] || { echo "could not find the soak listener's port" >&2; exit 1; }
echo "Envoy $("$ENVOY" --version | grep -o '[0-9.]*/Clean/[A-Z]*' || true) pid $envoy_pid: listener 127.0.0.1:$port, admin $admin, 2 workers"
echo "soak: ${SOAK_SECONDS} s of load, the first ${SOAK_WARMUP} s warm-up ..."

# In the background so that a signal to this script runs the trap at once.
python3 scripts/soak_load.py run --keys "$work/keys.json" --admin "$admin" --port "$port" \
  --pid "$envoy_pid" --seconds "$SOAK_SECONDS" --warmup "$SOAK_WARMUP" &
load_pid=$!
set +e
wait "$load_pid"
status=$?
set -e
load_pid=
if ! kill -0 "$envoy_pid" 2>/dev/null; then
  echo "Envoy is no longer running" >&2
  status=1
fi
exit "$status"
