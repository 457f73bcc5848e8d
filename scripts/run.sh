#!/usr/bin/env bash
# `make run`: the echo upstream, Envoy with the filter, and a watcher that
# makes every change to envoy/plugin-config.json live (ECDS from a watched
# folder, scripts/watch-config.sh), in the foreground. Prints curl lines
# that work against it; Ctrl-C stops everything it started.
set -euo pipefail
ENVOY=${1:?usage: run.sh ENVOY_BINARY NECTED_KEY_BINARY}
NECTED_KEY=${2:?usage: run.sh ENVOY_BINARY NECTED_KEY_BINARY}
cd "$(dirname "$0")/.."
# shellcheck source=../envoy/demo-keys.env
. envoy/demo-keys.env

for port in 10000 9901 18080; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port on 127.0.0.1 is in use (another make run?); stop it first" >&2
    exit 1
  fi
done

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

python3 envoy/echo_upstream.py --port 18080 >/dev/null &
pids+=($!)
# The ECDS resource Envoy reads, rendered from envoy/plugin-config.json now
# and on every change.
if ! "$NECTED_KEY" render --gateway envoy-ecds --config envoy/plugin-config.json \
    >envoy/ecds/.nected-key-auth.yaml.next; then
  rm -f envoy/ecds/.nected-key-auth.yaml.next
  echo "envoy/plugin-config.json is not a valid configuration; fix it first" >&2
  exit 1
fi
mv -f envoy/ecds/.nected-key-auth.yaml.next envoy/ecds/nected-key-auth.yaml
scripts/watch-config.sh envoy/plugin-config.json envoy/ecds/nected-key-auth.yaml "$NECTED_KEY" &
pids+=($!)
"$ENVOY" -c envoy/envoy.yaml --log-level info --component-log-level wasm:debug &
envoy_pid=$!
pids+=("$envoy_pid")

# Ready when the admin endpoint says LIVE.
for _ in $(seq 1 100); do
  if ! kill -0 "$envoy_pid" 2>/dev/null; then
    echo "Envoy exited; see its log above" >&2
    exit 1
  fi
  # LIVE, and the filter's configuration has arrived over ECDS.
  if curl -fs http://127.0.0.1:9901/ready 2>/dev/null | grep -q LIVE &&
    curl -fs 'http://127.0.0.1:9901/stats?filter=nected_key_auth.config_reload$' 2>/dev/null |
    grep -q 'config_reload: [1-9]'; then
    break
  fi
  sleep 0.1
done

cat <<TXT

nected-key-auth is running: Envoy on http://127.0.0.1:10000, admin on 127.0.0.1:9901.
envoy/plugin-config.json is live: save a change, or let nected-key make one,
and it serves within a second (a rejected change is printed here, and the
previous configuration keeps serving).
Try (demo keys: envoy/demo-keys.env):

  # public route -> 200
  curl -i http://127.0.0.1:10000/healthz
  # private route without a key -> 401
  curl -i -X POST http://127.0.0.1:10000/api/v1/rules/demo
  # with the demo key of client "billing" -> 200 (upstream sees x-nected-client: billing, no key)
  curl -i -X POST -H 'nected-api-key: ${DEMO_KEY_BILLING}' http://127.0.0.1:10000/api/v1/rules/demo
  # a valid key of another client ("cron") on a billing-only route -> 403
  curl -i -X POST -H 'nected-api-key: ${DEMO_KEY_CRON}' http://127.0.0.1:10000/api/v1/rules/demo
  # a revoked key -> 401
  curl -i -H 'nected-api-key: ${DEMO_KEY_LEAKED}' http://127.0.0.1:10000/api/v1/workflows/demo
  # counters
  curl -s http://127.0.0.1:9901/stats | grep nected_key_auth

Keys, from another shell (nected-key is $NECTED_KEY):

  key=\$($NECTED_KEY add --config envoy/plugin-config.json --id me)
  curl -i -H "nected-api-key: \$key" http://127.0.0.1:10000/api/v1/workflows/demo   # 200
  $NECTED_KEY revoke --config envoy/plugin-config.json me                          # then 401
  $NECTED_KEY list --config envoy/plugin-config.json
  $NECTED_KEY usage --admin http://127.0.0.1:9901 --config envoy/plugin-config.json

Ctrl-C stops Envoy, the upstream and the watcher.
TXT
wait "$envoy_pid"
