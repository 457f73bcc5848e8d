#!/usr/bin/env bash
# make dist: the release artifacts of nected-key-auth, in dist/.
#
#   nected_key_auth-<version>.wasm          the filter (release build)
#   nected_key_auth-<version>.wasm.sha256   its SHA-256, `sha256sum -c` format
#   nected-key-<version>-<host triple>      the CLI for the build machine
#   nected_key_auth-<version>.oci/          OCI image layout, tag <version>:
#                                           the Wasm image Istio (`oci://`) and
#                                           Envoy Gateway (`code.type: Image`) pull
#   nected_key_auth-<version>.oci.digest    the image's manifest digest (sha256:…)
#   SHA256SUMS                              every file above
#
# The image is the "compat" variant of the Wasm image format: one
# application/vnd.oci.image.layer.v1.tar+gzip layer holding `plugin.wasm` at
# the root. It is built by buildah (daemonless, no Docker engine), with its
# storage under .tools/containers, and stamped with the time of the last
# commit (SOURCE_DATE_EPOCH), so the same commit gives the same digest (the
# script builds it twice and fails if the two differ). tests/dist.rs reads it
# back.
set -euo pipefail
cd "$(dirname "$0")/.."

version=${1:?usage: scripts/dist.sh VERSION}
wasm=target/wasm32-wasip1/release/nected_key_auth.wasm
out=dist
name=nected_key_auth-$version
host=$(rustc -vV | sed -n 's/^host: //p')
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

[ -f "$wasm" ] || { echo "$wasm missing: run make build" >&2; exit 1; }
command -v buildah >/dev/null || { echo "buildah missing: run make dist" >&2; exit 1; }

cargo build --quiet --release --bin nected-key

rm -rf "$out"
mkdir -p "$out"
cp "$wasm" "$out/$name.wasm"
cp target/release/nected-key "$out/nected-key-$version-$host"

# buildah keeps its containers and layers in a project-local store (vfs: no
# overlay mount needed, so it also works inside unprivileged sandboxes).
store=$PWD/.tools/containers
bh() {
  buildah --root "$store/storage" --runroot "$store/run" --storage-driver vfs "$@"
}
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"; [ -n "${ctr:-}" ] && bh rm "$ctr" >/dev/null 2>&1 || true' EXIT
cp "$wasm" "$ctx/plugin.wasm"

# image DEST: the one-layer image of $ctx/plugin.wasm, committed to DEST.
image() {
  ctr=$(bh from --quiet scratch)
  bh copy --quiet --chmod 0444 "$ctr" "$ctx/plugin.wasm" /plugin.wasm
  bh config \
    --annotation "org.opencontainers.image.title=nected-key-auth" \
    --annotation "org.opencontainers.image.version=$version" \
    --annotation "org.opencontainers.image.licenses=Apache-2.0" \
    --annotation "org.opencontainers.image.description=proxy-wasm API-key authentication filter (plugin.wasm)" \
    --label "org.opencontainers.image.version=$version" \
    --created-by "make dist: plugin.wasm = nected_key_auth-$version.wasm" \
    "$ctr"
  bh commit --quiet --rm --format oci --disable-compression=false \
    --identity-label=false --timestamp "$epoch" "$ctr" "$1" >/dev/null
  ctr=
}
image "oci:$out/$name.oci:$version"
# Built twice: the same inputs must give the same image, byte for byte.
image "oci:$ctx/again.oci:$version"
cmp -s "$out/$name.oci/index.json" "$ctx/again.oci/index.json" \
  || { echo "dist: two builds of the image differ; it is not reproducible" >&2; exit 1; }

# The manifest digest, which WasmPlugin / EnvoyExtensionPolicy pin.
python3 - "$out/$name.oci" "$version" > "$out/$name.oci.digest" <<'PY'
import json, sys
index = json.load(open(sys.argv[1] + "/index.json"))
[m] = [m for m in index["manifests"]
       if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == sys.argv[2]]
print(m["digest"])
PY

(cd "$out" && sha256sum "$name.wasm" > "$name.wasm.sha256" \
  && sha256sum "$name.wasm" "nected-key-$version-$host" > SHA256SUMS)

echo "dist/ (version $version):"
(cd "$out" && for f in "$name.wasm" "nected-key-$version-$host"; do
  printf '  %-48s %9d bytes  sha256:%s\n' "$f" "$(stat -c %s "$f")" "$(sha256sum "$f" | cut -d' ' -f1)"
done)
printf '  %-48s manifest %s\n' "$name.oci (tag $version)" "$(cat "$out/$name.oci.digest")"
