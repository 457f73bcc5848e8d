#!/usr/bin/env bash
# Builds the second proxy-wasm host used by the test suite: nginx 1.22.1 with
# Kong's ngx_wasm_module (the engine inside Kong Gateway 3.4-3.9) and
# Wasmtime's C API 26.0.0, and caches it outside the clone. Only the first
# run pays the build (about 8 minutes on 2 cores); later runs print the path.
#
#   scripts/nginx/build-host.sh        # prints the nginx binary's path last
#
# Sources (variables; defaults are the vendored copies beside the clone,
# else these URLs, downloaded once into the cache):
#   NGINX_TARBALL     https://nginx.org/download/nginx-1.22.1.tar.gz
#   NGX_WASM_TARBALL  https://github.com/Kong/ngx_wasm_module/archive/
#                     3bed27836bb402143c6cbde17994b1d11a1084bc.tar.gz
#   Wasmtime's C API  crates.io crate wasmtime-c-api-impl =26.0.0 (cargo)
#   NKA_CACHE         where built hosts are kept (~/.cache/nected-key-auth)
#   NKA_SKIP_CHECKSUMS=1  accept tarballs whose SHA-256 differs from the
#                     vendored ones
set -euo pipefail

NGINX_VERSION=1.22.1
NGX_WASM_COMMIT=3bed27836bb402143c6cbde17994b1d11a1084bc
NGX_WASM_SHORT=${NGX_WASM_COMMIT:0:7}
WASMTIME_VERSION=26.0.0

repo=$(cd "$(dirname "$0")/../.." && pwd)
vendor="$repo/../shared/vendor"
[ -d "$vendor" ] || vendor=/work/shared/vendor
NGINX_TARBALL=${NGINX_TARBALL:-$vendor/nginx-$NGINX_VERSION.tar.gz}
NGX_WASM_TARBALL=${NGX_WASM_TARBALL:-$vendor/ngx_wasm_module-$NGX_WASM_SHORT.tar.gz}

cache=${NKA_CACHE:-$HOME/.cache/nected-key-auth}
prefix="$cache/nginx-$NGINX_VERSION-ngxwasm-$NGX_WASM_SHORT-wasmtime-$WASMTIME_VERSION"
bin="$prefix/sbin/nginx"

if [ -x "$bin" ] && [ -f "$prefix/.complete" ]; then
  echo "$bin"
  exit 0
fi

NGINX_URL=https://nginx.org/download/nginx-$NGINX_VERSION.tar.gz
NGX_WASM_URL=https://github.com/Kong/ngx_wasm_module/archive/$NGX_WASM_COMMIT.tar.gz

# A source that is neither given nor vendored is downloaded once into the
# cache, then checked against the same checksums.
fetch() { # URL FILE
  [ -f "$2" ] && return 0
  command -v curl >/dev/null || return 1
  mkdir -p "$(dirname "$2")"
  echo "== downloading $1" >&2
  curl -fsSL --retry 2 --connect-timeout 20 -o "$2.part" "$1" && mv "$2.part" "$2"
}
if [ ! -f "$NGINX_TARBALL" ]; then
  got="$cache/sources/nginx-$NGINX_VERSION.tar.gz"
  fetch "$NGINX_URL" "$got" && NGINX_TARBALL=$got
fi
if [ ! -f "$NGX_WASM_TARBALL" ]; then
  got="$cache/sources/ngx_wasm_module-$NGX_WASM_SHORT.tar.gz"
  fetch "$NGX_WASM_URL" "$got" && NGX_WASM_TARBALL=$got
fi

missing=0
for f in "$NGINX_TARBALL" "$NGX_WASM_TARBALL"; do
  [ -f "$f" ] || { echo "missing source: $f (download failed)" >&2; missing=1; }
done
# The vendored files' checksums (shared/vendor/SHA256SUMS); other
# downloads of the same versions may differ (GitHub's archives): set
# NKA_SKIP_CHECKSUMS=1 to build from them anyway.
NGINX_SHA256=9ebb333a9e82b952acd3e2b4aeb1d4ff6406f72491bab6cd9fe69f0dea737f31
NGX_WASM_SHA256=90f8b14b1629c75d9908af897c2972d57a37c315882e4f966b4880ad8c520487
if [ "$missing" = 0 ] && [ -z "${NKA_SKIP_CHECKSUMS:-}" ]; then
  for pair in "$NGINX_TARBALL:$NGINX_SHA256" "$NGX_WASM_TARBALL:$NGX_WASM_SHA256"; do
    f=${pair%:*} want=${pair##*:}
    got=$(sha256sum "$f" | cut -d' ' -f1)
    [ "$got" = "$want" ] || { echo "$f: sha256 $got, expected $want (NKA_SKIP_CHECKSUMS=1 to skip)" >&2; exit 1; }
  done
fi
if [ "$missing" = 1 ]; then
  cat >&2 <<MSG
Download the sources on a machine that can, and point the variables at them:
  NGINX_TARBALL=...    $NGINX_URL
  NGX_WASM_TARBALL=... $NGX_WASM_URL
MSG
  exit 1
fi

# Debian build packages, installed when missing (as the Makefile does).
need=()
command -v cmake >/dev/null || need+=(cmake)
for p in libpcre2-dev zlib1g-dev libssl-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "== installing ${need[*]}" >&2
  sudo=$([ "$(id -u)" = 0 ] || echo sudo)
  apt() { $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "$@"; }
  apt "${need[@]}" >&2 || { $sudo apt-get update -q >&2 && apt "${need[@]}" >&2; }
fi

work="$cache/build-$NGINX_VERSION-$NGX_WASM_SHORT-$WASMTIME_VERSION"
# Kept between runs so that a failed build resumes (cargo's target is the
# expensive part); removed once the host is installed.
mkdir -p "$work"
step() { echo "== [$(date -u +%H:%M:%S)] $*" >&2; }

# 1. Wasmtime's C API as a static library, from crates.io.
step "1/4 Wasmtime C API $WASMTIME_VERSION (cargo, the long step)"
mkdir -p "$work/wasmtime/src"
cat > "$work/wasmtime/Cargo.toml" <<TOML
[package]
name = "wasmtime-static"
version = "0.0.0"
edition = "2021"
publish = false

[lib]
name = "wasmtime"
crate-type = ["staticlib"]
path = "src/lib.rs"

[dependencies]
wasmtime-c-api = { package = "wasmtime-c-api-impl", version = "=$WASMTIME_VERSION", features = ["cranelift", "wat", "wasi", "async", "cache", "parallel-compilation", "threads"] }

[workspace]
TOML
echo 'pub use wasmtime_c_api::*;' > "$work/wasmtime/src/lib.rs"
(cd "$work/wasmtime" && cargo build --release 2>&1 | grep -E '^ *(Compiling|Finished|error|warning: unused)' >&2)
lib="$work/wasmtime/target/release/libwasmtime.a"
[ -f "$lib" ] || { echo "libwasmtime.a was not built" >&2; exit 1; }

step "2/4 Wasmtime headers"
src_dir=$(cd "$work/wasmtime" && cargo metadata --format-version 1 2>/dev/null |
  python3 -c 'import json,sys; print([p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="wasmtime-c-api-impl"][0])')
inc="$work/include"
rm -rf "$inc"
cp -r "$(dirname "$src_dir")/include" "$inc"
conf=$(ls "$work"/wasmtime/target/release/build/wasmtime-c-api-impl-*/out/include/wasmtime/conf.h | head -n 1)
cp "$conf" "$inc/wasmtime/conf.h"
# The 26.0.0 build script does not know the `wat` feature, although the
# library exports wasmtime_wat2wasm; ngx_wasm_module needs the define.
grep -q '^#define WASMTIME_FEATURE_WAT' "$inc/wasmtime/conf.h" ||
  sed -i '/^#define WASMTIME_CONF_H/a #define WASMTIME_FEATURE_WAT' "$inc/wasmtime/conf.h"
grep -q '^#define WASMTIME_FEATURE_WAT' "$inc/wasmtime/conf.h" ||
  { echo "could not add WASMTIME_FEATURE_WAT to conf.h" >&2; exit 1; }

step "3/4 unpacking nginx $NGINX_VERSION and ngx_wasm_module $NGX_WASM_SHORT"
rm -rf "$work/nginx" "$work/ngx_wasm_module"
mkdir -p "$work/nginx" "$work/ngx_wasm_module"
tar -xzf "$NGINX_TARBALL" -C "$work/nginx" --strip-components=1
tar -xzf "$NGX_WASM_TARBALL" -C "$work/ngx_wasm_module" --strip-components=1

step "4/4 nginx configure + make"
(cd "$work/nginx" &&
  NGX_WASM_RUNTIME=wasmtime ./configure --prefix="$prefix" \
    --with-http_ssl_module --with-http_v2_module \
    --add-module="$work/ngx_wasm_module" \
    --with-cc-opt="-I$inc -O2 -g" \
    --with-ld-opt="$lib -ldl -lm -lpthread" >"$work/configure.log" 2>&1 ||
    { tail -n 30 "$work/configure.log" >&2; exit 1; }
  make -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -n 40 "$work/make.log" >&2; exit 1; }
  make install >>"$work/make.log" 2>&1)
"$bin" -V >&2
touch "$prefix/.complete"
# Keep the sources (gdb wants them for backtraces), not cargo's target.
rm -rf "$work/wasmtime/target"
step "done: $bin"
echo "$bin"
