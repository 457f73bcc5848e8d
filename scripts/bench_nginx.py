#!/usr/bin/env python3
"""Instructions per request on the second proxy-wasm host: nginx 1.22.1 +
ngx_wasm_module 3bed278 + Wasmtime 26.0.0 (`make nginx-host`), for

  1. no filter (nginx proxying to the echo upstream),
  2. the pass-through floor (bench/floor: one header read, one comparison),
  3. nected-key-auth with a small configuration (1 private route, 1 key),

each request carrying a valid key, over one keep-alive connection. nginx
runs as a single process (`master_process off`) under valgrind's callgrind,
instrumentation switched on after a warm-up; instructions / requests wrk
completed. Writes bench/results-nginx.json and the section "Second host"
at the end of docs/performance.md. Not a test.

Usage: scripts/bench_nginx.py --nginx PATH [--seconds 5]
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The same key as scripts/bench.py and bench/floor (the peers' bench key).
KEY = "nk_bench_9fK2mQ7xLp4Rt8Vw3Zb6Nc1Yd5Hs0Ja"
HEADER = "nected-api-key"
PATH = "/api/v1/workflows/run"
HEADING = "## Second host: nginx + ngx_wasm_module + Wasmtime"


def sha256(s):
    return hashlib.sha256(s.encode()).hexdigest()


def small_config():
    """1 private route, 1 key; every option at its default (as make bench)."""
    return {
        "routes": [{"name": "workflows", "prefix": "/api/v1/workflows", "auth": "private"}],
        "keys": [{"id": "bench", "client": "billing", "sha256": sha256(KEY)}],
    }


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def conf(port, upstream, wasm, config, work):
    """deploy/kong/nginx.conf for one variant: its ports, no filter or the
    given module, a single process, the log in the work folder."""
    text = open(os.path.join(ROOT, "deploy", "kong", "nginx.conf")).read()
    start = text.index("proxy_wasm nected_key_auth '")
    end = text.index("';", start) + 2
    if wasm is None:
        text = text[:start] + "# no filter" + text[end:]
        text = re.sub(r"wasm \{\n[^}]*\}\n", "", text)
    else:
        quoted = json.dumps(config, separators=(",", ":")) if config is not None else ""
        line = "proxy_wasm nected_key_auth" + (f" '{quoted}';" if quoted else ";")
        text = text[:start] + line + text[end:]
        text = text.replace("target/wasm32-wasip1/release/nected_key_auth.wasm", wasm)
    return (text.replace("daemon off;", "daemon off;\nmaster_process off;")
            .replace("listen 127.0.0.1:8000;", f"listen 127.0.0.1:{port};")
            .replace("server 127.0.0.1:18080;", f"server 127.0.0.1:{upstream};")
            .replace("error_log stderr info;", f"error_log {work}/error.log warn;")
            .replace("pid /tmp/nected-key-auth-nginx.pid;", f"pid {work}/nginx.pid;"))


def wrk(port, seconds):
    out = subprocess.run(
        ["wrk", "-t1", "-c1", f"-d{seconds}s", "-H", f"{HEADER}: {KEY}",
         f"http://127.0.0.1:{port}{PATH}"],
        check=True, capture_output=True, text=True).stdout
    return int(re.search(r"(\d+) requests in", out).group(1)), out


def wait_ok(port, deadline):
    """Waits until a request with the key reaches the upstream (200)."""
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(f"GET {PATH} HTTP/1.1\r\nhost: localhost\r\n{HEADER}: {KEY}\r\n"
                          "connection: close\r\n\r\n".encode())
                head = s.recv(64)
                if head.startswith(b"HTTP/1.1 200"):
                    return
                if head.startswith(b"HTTP/1."):
                    # Serving, but not letting the bench key through.
                    status = head.split(b"\r")[0].decode()
                    raise SystemExit(f"nginx answered {status!r} to the bench key, not 200")
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("nginx did not answer 200 in time")


def measure(nginx, name, wasm, config, upstream, seconds, work_root):
    work = os.path.join(work_root, name)
    os.makedirs(os.path.join(work, "logs"), exist_ok=True)
    port = free_port()
    with open(os.path.join(work, "nginx.conf"), "w") as f:
        f.write(conf(port, upstream, wasm, config, work))
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no",
         f"--callgrind-out-file={work}/callgrind.%p",
         nginx, "-p", work, "-c", os.path.join(work, "nginx.conf"), "-e", f"{work}/error.log"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "valgrind.log"), "w"))
    try:
        wait_ok(port, time.time() + 600)
        wrk(port, 3)  # warm-up
        pid = str(proc.pid)
        subprocess.run(["callgrind_control", "--instr=on", pid], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
        requests, _ = wrk(port, seconds)
        subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            for f in os.listdir(work):
                if f.startswith("callgrind."):
                    m = re.search(r"^totals: (\d+)", open(os.path.join(work, f)).read(), re.M)
                    if m:
                        return int(m.group(1)) / requests, requests, os.path.join(work, f)
            time.sleep(0.2)
        raise SystemExit(f"{name}: no callgrind dump")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def inclusive(dump, function):
    """Inclusive instructions of one function (all calls), from the dump."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", dump],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+\S*:" + re.escape(function) + r"\b", line)
        if m:
            return int(m.group(1).replace(",", ""))
    return 0


def top_functions(dump, n=5):
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", dump],
                         capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+\S*:(\S+)", line)
        if m:
            rows.append((int(m.group(1).replace(",", "")), m.group(2)))
    return rows[:n]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nginx", required=True)
    ap.add_argument("--seconds", type=int, default=5)
    args = ap.parse_args()

    floor_target = os.path.join(ROOT, "bench", "floor", "target", "plain")
    subprocess.run(["cargo", "build", "--quiet", "--release", "--target", "wasm32-wasip1",
                    "--manifest-path", os.path.join(ROOT, "bench", "floor", "Cargo.toml"),
                    "--target-dir", floor_target], check=True)
    floor = os.path.join(floor_target, "wasm32-wasip1", "release", "floor.wasm")
    nected = os.path.join(ROOT, "target", "wasm32-wasip1", "release", "nected_key_auth.wasm")

    echo = subprocess.Popen([sys.executable, os.path.join(ROOT, "envoy", "echo_upstream.py"),
                             "--port", "0"], stdout=subprocess.PIPE, text=True)
    upstream = int(echo.stdout.readline().split()[-1])
    work_root = tempfile.mkdtemp(prefix="bench-nginx-")
    variants = [
        ("no-filter", "1. no filter", None, None),
        ("floor", "2. pass-through wasm (floor)", floor, None),
        ("nected-small", "3. nected, 1 route / 1 key", nected, small_config()),
    ]
    results = {"host": "nginx 1.22.1 + ngx_wasm_module 3bed278 + Wasmtime 26.0.0",
               "seconds": args.seconds, "variants": {}}
    try:
        for name, label, wasm, config in variants:
            print(f"== {label}", flush=True)
            per_req, requests, dump = measure(args.nginx, name, wasm, config, upstream,
                                              args.seconds, work_root)
            results["variants"][name] = {
                "label": label, "instructions_per_request": round(per_req),
                "requests": requests,
                "log_error_inclusive_per_request": round(
                    inclusive(dump, "ngx_proxy_wasm_log_error") / requests),
                "top_self": [{"instructions_per_request": round(i / requests), "function": f}
                             for i, f in top_functions(dump)],
            }
            print(f"   {per_req:,.0f} instructions/request ({requests} requests)", flush=True)
    finally:
        echo.terminate()
        shutil.rmtree(work_root, ignore_errors=True)

    with open(os.path.join(ROOT, "bench", "results-nginx.json"), "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    write_section(results)


def write_section(results):
    v = results["variants"]
    base = v["no-filter"]["instructions_per_request"]
    rows = "\n".join(
        f"| {x['label']} | {x['instructions_per_request']:,} | "
        f"{'' if k == 'no-filter' else '+' + format(x['instructions_per_request'] - base, ',')} |"
        for k, x in v.items())
    top = "\n".join(f"| `{t['function']}` | {t['instructions_per_request']:,} |"
                    for t in v["nected-small"]["top_self"])
    section = f"""{HEADING}

The same filter on a second engine: nginx 1.22.1 + ngx_wasm_module 3bed278
(the proxy-wasm host inside Kong) + Wasmtime 26.0.0, built by
`make nginx-host`, running [`deploy/kong/nginx.conf`](../deploy/kong/nginx.conf)
as a single process (`master_process off`) under callgrind, one keep-alive
connection (`wrk -t1 -c1`, {results['seconds']} s after a 3 s warm-up), every
request with a valid key. `make bench-nginx` (scripts/bench_nginx.py) writes
this section and [`bench/results-nginx.json`](../bench/results-nginx.json).

| variant | instructions / request | over no filter |
|---|---|---|
{rows}

In this run the filter logs nothing per request (the requests pass, with
`log_requests` off), yet `ngx_proxy_wasm_log_error` runs on every request
for any filter — {v['floor']['log_error_inclusive_per_request']:,} instructions per request inclusive
for the pass-through floor, {v['nected-small']['log_error_inclusive_per_request']:,} for nected-key-auth, with
`error_log … warn`: ngx_wasm_module formats its own messages before the
level check. A debug line from the filter (every refused request; with
`log_requests: true`, every request) goes the same way, so it costs far
more here than in Envoy, which drops it by its own level. Where
nected-key-auth's instructions go (self cost per request, top 5; `0x…` is
Wasmtime's compiled code):

| function | instructions / request |
|---|---|
{top}
"""
    path = os.path.join(ROOT, "docs", "performance.md")
    text = open(path).read()
    if HEADING in text:
        text = text[:text.index(HEADING)].rstrip("\n") + "\n"
    with open(path, "w") as f:
        f.write(text.rstrip("\n") + "\n\n" + section)


if __name__ == "__main__":
    main()
