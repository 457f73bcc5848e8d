#!/usr/bin/env bash
# Keeps an ECDS resource in step with a plugin configuration file: whenever
# CONFIG changes (by hand or by a `nected-key` command), it is rendered with
# `nected-key render --gateway envoy-ecds` and moved over RESOURCE in one
# rename, which the Envoy watching that folder picks up. A configuration
# the filter's parser rejects is not published: its errors (with their JSON
# paths) are printed and the previous configuration keeps serving.
# Used by `make run` (scripts/run.sh); runs until killed.
set -uo pipefail
CONFIG=${1:?usage: watch-config.sh CONFIG RESOURCE NECTED_KEY}
RESOURCE=${2:?usage: watch-config.sh CONFIG RESOURCE NECTED_KEY}
NECTED_KEY=${3:?usage: watch-config.sh CONFIG RESOURCE NECTED_KEY}

dir=$(dirname "$RESOURCE")
tmp="$dir/.$(basename "$RESOURCE").next"
errors=$(mktemp)
trap 'rm -f "$tmp" "$errors"' EXIT

seen=""
while :; do
  # Content, not mtime: an editor may write the same bytes again.
  now=$(cksum <"$CONFIG" 2>/dev/null || echo missing)
  if [ "$now" != "$seen" ]; then
    seen=$now
    if "$NECTED_KEY" render --gateway envoy-ecds --config "$CONFIG" >"$tmp" 2>"$errors"; then
      if cmp -s "$tmp" "$RESOURCE"; then
        rm -f "$tmp"
      else
        mv -f "$tmp" "$RESOURCE"
        fingerprint=$(grep -o '(config [0-9a-f]*)' "$RESOURCE" | head -n 1)
        echo "watch: $CONFIG changed: published $fingerprint"
      fi
    else
      rm -f "$tmp"
      echo "watch: $CONFIG rejected; the previous configuration keeps serving:" >&2
      sed 's/^/watch:   /' "$errors" >&2
    fi
  fi
  sleep 0.3
done
