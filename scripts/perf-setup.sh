# Shared by scripts/bench.sh and scripts/instructions.sh (sourced): the
# benchmark key, the plugin config and Envoy listener snippets. Every
# listener answers with a direct_response, so no upstream is measured.

KEY=bench_key_0123456789abcdefghijklmnopqrstuvwxyz
DIGEST=$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)

# The contract example, with 100 keys so the lookup is not trivial.
perf_plugin_config() {
  local keys="" i
  for i in $(seq 1 99); do
    keys+="{ \"id\": \"filler-$i\", \"client\": \"filler\", \"sha256\": \"$(printf 'filler-%s' "$i" | sha256sum | cut -d' ' -f1)\" }, "
  done
  printf '%s' "{ \"routes\": [ { \"name\": \"health\", \"path\": \"/healthz\", \"auth\": \"none\" }, { \"name\": \"rules\", \"prefix\": \"/api/v1/rules\", \"methods\": [\"POST\"], \"auth\": \"private\", \"allow_clients\": [\"billing\"] }, { \"name\": \"workflows\", \"prefix\": \"/api/v1/workflows\", \"auth\": \"private\" }, { \"name\": \"docs\", \"prefix\": \"/docs\", \"hosts\": [\"api.example.com\"], \"auth\": \"none\" } ], \"keys\": [ $keys{ \"id\": \"bench\", \"client\": \"billing\", \"sha256\": \"$DIGEST\" } ] }"
}

perf_listener() { # name port http-filters-yaml
  cat <<YAML
  - name: $1
    address: { socket_address: { address: 127.0.0.1, port_value: $2 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: $1
          normalize_path: true
          merge_slashes: true
          path_with_escaped_slashes_action: REJECT_REQUEST
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [ { match: { prefix: "/" }, direct_response: { status: 200, body: { inline_string: "ok" } } } ]
          http_filters:
$3
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
YAML
}

perf_wasm_filter() { # wasm-file plugin-config-json
  cat <<YAML
          - name: nected_key_auth
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                failure_policy: FAIL_RELOAD
                vm_config: { runtime: envoy.wasm.runtime.v8, code: { local: { filename: $1 } } }
                configuration: { "@type": type.googleapis.com/google.protobuf.StringValue, value: '$2' }
YAML
}

perf_native_filter() {
  cat <<YAML
          - name: envoy.filters.http.api_key_auth
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth
              credentials: [ { key: "$KEY", client: billing } ]
              key_sources: [ { header: nected-api-key } ]
YAML
}

perf_wait_ready() { # admin-port
  local _
  for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$1/ready" 2>/dev/null | grep -q LIVE && return 0
    sleep 0.2
  done
  echo "Envoy did not become ready" >&2
  return 1
}
