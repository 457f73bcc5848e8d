#!/usr/bin/env python3
"""`make bench`: nected-key-auth side by side with Envoy's native
`api_key_auth`, a Lua filter, pass-through wasm filters (the floor of any
proxy-wasm filter, and the ABI floor: the host work the contract's defaults
make unavoidable) and, when its folder exists, Higress's `key-auth`. Not a
test: it measures and reports.

Six Envoys (one per variant, one worker each, pinned to CPU 0) answer with a
`direct_response`, so the filter chain is most of the work. wrk, pinned to
CPU 1, loads them in interleaved rounds; per run the Envoy process's
utime+stime (from /proc) divided by the requests wrk completed gives CPU µs
per request. Then every variant runs once more under valgrind's callgrind,
which counts instructions per request; the targets are judged on those,
because CPU time on a shared machine drifts by tens of percent.

Also: Envoy's RSS with 1, 2 and 4 workers (memory per worker), the
overhead with 8, 24 and 64 request headers, and nected-key-auth with
100,000 keys / 10,000 routes (on_configure time, peak RSS, scale).

Writes bench/results.json, bench/results.svg and the results block of
BENCHMARKS.md; prints the table and the ratios.

    python3 scripts/bench.py --envoy ENVOY [--seconds 5] [--rounds 5]
    python3 scripts/bench.py --envoy ENVOY --quick   # callgrind only: 1, 4c, 5
"""

import argparse
import datetime
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The bench key of the peers in bench-peers/ (their configs accept it).
KEY = "nk_bench_9fK2mQ7xLp4Rt8Vw3Zb6Nc1Yd5Hs0Ja"
WRONG = "nk_bench_9fK2mQ7xLp4Rt8Vw3Zb6Nc1Yd5Hs0Jb"
HEADER = "nected-api-key"
PATH = "/api/v1/workflows/run"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024

# Targets, judged on instruction counts (memory: on RSS).
TARGET_LOGIC_VS_ABI_FLOOR = 1.15
TARGET_VS_HIGRESS = 0.33
TARGET_SCALE = 1.03
TARGET_WORKER_MIB = 8.0
TARGET_CONFIGURE_MS = 50.0
# Request headers a client sends (Host and the key included), for the
# request-size rows; the main table's requests carry 2.
HEADER_COUNTS = (8, 24, 64)
WORKER_COUNTS = (1, 2, 4)
PEERS = [os.path.join(ROOT, "..", "shared", "bench-peers"),
         os.path.join(ROOT, "..", "..", "shared", "bench-peers")]


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


def small_config():
    """1 private route, 1 key; every option at its default."""
    return {
        "routes": [{"name": "workflows", "prefix": "/api/v1/workflows", "auth": "private"}],
        "keys": [{"id": "bench", "client": "billing", "sha256": sha256(KEY)}],
    }


def large_config(n_keys=10_000, n_routes=1_000):
    """10,000 keys (50 clients, some revoked or time-bounded) and 1,000
    routes of every shape; the benchmark request matches only the last."""
    clients = [f"client-{i:02d}" for i in range(50)]
    routes = []
    for i in range(n_routes - 1):
        shape = i % 5
        if shape == 0:
            routes.append({"name": f"r{i}", "path": f"/svc{i}/items", "auth": "private"})
        elif shape == 1:
            routes.append({"name": f"r{i}", "prefix": f"/svc{i}", "methods": ["GET", "POST"],
                           "auth": "private"})
        elif shape == 2:
            routes.append({"name": f"r{i}", "prefix": f"/svc{i}/v1",
                           "hosts": [f"h{i}.example.com", "*.svc.example.org"], "auth": "none"})
        elif shape == 3:
            # Same first segments as the benchmark path, other last segment.
            routes.append({"name": f"r{i}", "prefix": f"/api/v1/workflows{i}", "auth": "private",
                           "allow_clients": [clients[i % 50]]})
        else:
            routes.append({"name": f"r{i}", "prefix": f"/api/v1/workflows/run{i}",
                           "methods": ["DELETE"], "auth": "private"})
    routes.append({"name": "last", "prefix": "/api/v1/workflows", "auth": "private"})
    keys = []
    for i in range(n_keys - 1):
        key = {"id": f"k{i}", "client": clients[i % 50], "sha256": sha256(f"filler-{i}")}
        if i % 10 == 0:
            key["revoked"] = True
        elif i % 10 == 1:
            key["expires"] = "2099-01-01T00:00:00Z"
        keys.append(key)
    keys.insert(n_keys // 2, {"id": "bench", "client": "billing", "sha256": sha256(KEY)})
    return {"routes": routes, "keys": keys}


LUA = """
local keys = { ["%s"] = "billing" }
function envoy_on_request(handle)
  local key = handle:headers():get("%s")
  if key == nil or keys[key] == nil then
    handle:respond({[":status"] = "401"}, "unauthorized")
  end
end
""" % (KEY, HEADER)


def wasm_filter(path, configuration):
    config = {
        "failure_policy": "FAIL_RELOAD",
        "vm_config": {"runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": path}}},
    }
    if configuration is not None:
        config["configuration"] = {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": json.dumps(configuration),
        }
    return {
        "name": "wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": config,
        },
    }


def higress_peer(peers):
    """Higress's key-auth module and its configuration, when present."""
    for base in ([peers] if peers else PEERS):
        folder = os.path.join(base, "higress-key-auth")
        wasm, config = os.path.join(folder, "key-auth.wasm"), os.path.join(folder, "config.json")
        if os.path.isfile(wasm) and os.path.isfile(config):
            with open(config) as f:
                return os.path.abspath(wasm), json.load(f)
    return None


# Per-variant options: the status a wrong key gets, Envoy's level for the
# `wasm` component (Higress logs every request at info), readiness timeout.
OPTIONS = {
    "higress": {"wrong": 403, "wasm_log": "error", "ready": 120, "ready_callgrind": 1800},
    "nected-100k": {"ready": 120, "ready_callgrind": 1800},
}


def variants(nected_wasm, floor_wasm, floor_map_wasm, higress=None):
    native = {
        "name": "envoy.filters.http.api_key_auth",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth",
            "credentials": [{"key": KEY, "client": "billing"}],
            "key_sources": [{"header": HEADER}],
        },
    }
    lua = {
        "name": "envoy.filters.http.lua",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": LUA},
        },
    }
    return [
        ("no-filter", "1. no filter", None),
        ("native", "2. native api_key_auth", native),
        ("lua", "3. Lua table lookup", lua),
        ("floor", "4. pass-through wasm (floor)", wasm_filter(floor_wasm, None)),
        ("floor-map", "4b. wasm, whole header map", wasm_filter(floor_map_wasm, None)),
        ("floor-abi", "4c. ABI floor (map, strip, client, counter)", wasm_filter(floor_wasm, "abi")),
        ("nected-small", "5. nected, 1 route / 1 key", wasm_filter(nected_wasm, small_config())),
        ("nected-10k", "6. nected, 1k routes / 10k keys", wasm_filter(nected_wasm, large_config())),
        ("nected-100k", "6b. nected, 10k routes / 100k keys",
         wasm_filter(nected_wasm, large_config(100_000, 10_000))),
    ] + ([("higress", "7. Higress key-auth (Go)", wasm_filter(*higress))] if higress else [])


def build_floors():
    """bench/floor, plain (one header read) and with `--features map`."""
    out = []
    for name, features in (("plain", []), ("map", ["--features", "map"])):
        target = os.path.join(ROOT, "bench", "floor", "target", name)
        subprocess.run(["cargo", "build", "--quiet", "--release", "--target", "wasm32-wasip1",
                        "--manifest-path", os.path.join(ROOT, "bench", "floor", "Cargo.toml"),
                        "--target-dir", target] + features, check=True)
        out.append(os.path.join(target, "wasm32-wasip1", "release", "floor.wasm"))
    return out


def bootstrap(listen_port, admin_port, http_filter):
    filters = ([http_filter] if http_filter else []) + [{
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    }]
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bench",
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        "route_config": {"virtual_hosts": [{
            "name": "all",
            "domains": ["*"],
            "routes": [{"match": {"prefix": "/"},
                        "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}],
        }]},
        "http_filters": filters,
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {"listeners": [{
            "name": "bench",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": hcm,
            }]}],
        }]},
    }


class Envoy:
    """One Envoy with one worker, pinned to CPU 0 (or under callgrind)."""

    def __init__(self, work, name, index, envoy_bin, http_filter, callgrind=False,
                 concurrency=1, base=None):
        self.name = name
        self.options = OPTIONS.get(name, {})
        ports = base or (19500 if callgrind else 19400)
        self.port, self.admin = ports + index, ports + 50 + index
        self.dir = os.path.join(work, ("cg-" if callgrind else "") + name
                                + (f"-c{concurrency}" if base else ""))
        os.makedirs(self.dir)
        config = os.path.join(self.dir, "envoy.json")
        with open(config, "w") as f:
            json.dump(bootstrap(self.port, self.admin, http_filter), f)
        cmd = [envoy_bin, "-c", config, "--concurrency", str(concurrency), "--disable-hot-restart",
               "-l", "warn", "--component-log-level", f"wasm:{self.options.get('wasm_log', 'info')}"]
        if callgrind:
            cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={self.dir}/callgrind.%p"] + cmd
        elif concurrency == 1:
            cmd = ["taskset", "-c", "0"] + cmd
        self.log_path = os.path.join(self.dir, "envoy.log")
        self.log = open(self.log_path, "w")
        self.started = time.time()
        self.startup_s = None
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout):
        """Polls the admin `/ready` probe; records the start-up time."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name}: Envoy exited; log:\n{self.log_tail()}")
            try:
                if admin_get(self.admin, "/ready").strip() == "LIVE":
                    self.startup_s = time.time() - self.started
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"{self.name}: Envoy not ready after {timeout}s; log:\n{self.log_tail()}")

    def log_tail(self):
        with open(self.log_path) as f:
            return "".join(f.readlines()[-40:])

    def cpu_ticks(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    def rss_bytes(self, field="VmRSS"):
        """Resident memory (`VmHWM`: its peak) of the Envoy process."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def completed(self):
        stats = admin_get(self.admin, "/stats?filter=^http.bench.downstream_rq_completed$")
        return int(stats.split(":")[1])

    def configure_times(self):
        """Each VM's `on_configure` time, from the filter's log lines."""
        with open(self.log_path) as f:
            return [float(m) for m in re.findall(r"configured .* in ([0-9.]+) ms", f.read())]

    def configure_ms(self):
        return max(self.configure_times(), default=None)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def admin_get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    return conn.getresponse().read().decode()


def status(port, key):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", PATH, headers={HEADER: key} if key else {})
    resp = conn.getresponse()
    resp.read()
    return resp.status


def sanity(envoy):
    wrong = envoy.options.get("wrong", 401)
    want = {KEY: 200, WRONG: 200 if envoy.name == "no-filter" else wrong}
    for key, code in want.items():
        got = status(envoy.port, key)
        if got != code:
            raise SystemExit(f"sanity check failed: {envoy.name}, key {key[-4:]}: {got}, want {code}")


# Request headers as browsers, SDKs and tracing add them; past these,
# `x-custom-NN`.
PADDING = ["user-agent", "accept", "accept-encoding", "accept-language", "cache-control",
           "content-type", "cookie", "referer", "x-forwarded-for", "traceparent",
           "tracestate", "x-b3-traceid", "x-b3-spanid", "x-amzn-trace-id", "sec-fetch-mode",
           "sec-fetch-site", "sec-ch-ua", "sec-ch-ua-platform", "x-client-version", "pragma",
           "dnt", "x-correlation-id"]


def padding(headers):
    """wrk arguments for extra request headers, so that a request carries
    `headers` in all (wrk sends Host, and the key is one); values of 24
    bytes."""
    out = []
    for i in range(max(0, headers - 2)):
        name = PADDING[i] if i < len(PADDING) else f"x-custom-{i:02d}"
        out += ["-H", f"{name}: value-{i:02d}-abcdefghijklmnop"]
    return out


def wrk(port, seconds, connections, cpu="1", headers=2):
    out = subprocess.run(
        ["taskset", "-c", cpu, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
         "-H", f"{HEADER}: {KEY}"] + padding(headers) + [f"http://127.0.0.1:{port}{PATH}"],
        check=True, capture_output=True, text=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw errors on port {port}:\n{out}")
    return requests, rps


def timed_rounds(envoys, seconds, rounds):
    cpu = {e.name: [] for e in envoys}
    rps = {e.name: [] for e in envoys}
    for e in envoys:  # warm-up: JIT tiers, caches, connection pools
        wrk(e.port, 2, 16)
    for r in range(rounds):
        order = envoys if r % 2 == 0 else list(reversed(envoys))
        for e in order:
            before = e.cpu_ticks()
            n, rate = wrk(e.port, seconds, 16)
            ticks = e.cpu_ticks() - before
            cpu[e.name].append(ticks / CLK_TCK * 1e6 / n)
            rps[e.name].append(rate)
        print(f"  round {r + 1}/{rounds}: " + ", ".join(
            f"{e.name} {cpu[e.name][-1]:.1f}µs" for e in envoys), flush=True)
    return cpu, rps


def callgrind_instructions(envoy, seconds, keep_dumps=None, headers=2):
    """Instructions per request: zero the counters after a warm-up, run a
    fixed-duration load, dump, divide by the requests Envoy completed."""
    pid = str(envoy.proc.pid)
    wrk(envoy.port, 3, 1, cpu="0-1", headers=headers)  # warm-up under valgrind: JIT tiers
    done_before = envoy.completed()
    dumps_before = set(os.listdir(envoy.dir))
    subprocess.run(["callgrind_control", "--instr=on", pid], check=True, capture_output=True)
    subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
    wrk(envoy.port, seconds, 1, cpu="0-1", headers=headers)
    subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
    subprocess.run(["callgrind_control", "--instr=off", pid], check=True, capture_output=True)
    requests = envoy.completed() - done_before
    deadline = time.time() + 60
    while time.time() < deadline:
        new = [f for f in set(os.listdir(envoy.dir)) - dumps_before if f.startswith("callgrind.")]
        for name in new:
            with open(os.path.join(envoy.dir, name)) as f:
                m = re.search(r"^totals: (\d+)", f.read(), re.M)
            if m:
                if keep_dumps:
                    os.makedirs(keep_dumps, exist_ok=True)
                    suffix = f".h{headers}" if headers != 2 else ""
                    shutil.copy(os.path.join(envoy.dir, name),
                                os.path.join(keep_dumps, f"callgrind.{envoy.name}{suffix}"))
                return int(m.group(1)) / requests, requests
        time.sleep(0.2)
    raise SystemExit(f"{envoy.name}: no callgrind dump")


def criterion_results():
    """Median ns of each criterion benchmark (benches/core.rs)."""
    out = {}
    base = os.path.join(ROOT, "target", "criterion")
    for dirpath, _, files in os.walk(base):
        if dirpath.endswith(os.path.join("new")) and "estimates.json" in files:
            with open(os.path.join(dirpath, "estimates.json")) as f:
                median = json.load(f)["median"]["point_estimate"]
            with open(os.path.join(dirpath, "benchmark.json")) as f:
                name = json.load(f)["full_id"]
            out[name] = median
    return dict(sorted(out.items()))


def machine():
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release(),
            "rustc": rustc, "wrk": wrk_v.strip()}


def fmt_int(n):
    return f"{n:,.0f}"


def svg_chart(results, path):
    """Two bar charts: instructions per request and CPU µs per request."""
    rows = results["variants"]
    width, bar_h, gap, left = 860, 22, 8, 330
    charts = [("instructions per request (callgrind)", "instructions", fmt_int),
              ("Envoy CPU µs per request (median)", "cpu_us", lambda v: f"{v:.1f}")]
    height = 40 + len(charts) * (len(rows) * (bar_h + gap) + 50)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="13">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="10" y="22" font-size="15" font-weight="bold">nected-key-auth benchmark, '
             f'{results["date"]}</text>']
    y = 40
    for title, field, fmt in charts:
        parts.append(f'<text x="10" y="{y + 14}" font-weight="bold">{title}</text>')
        y += 26
        top = max(r[field] for r in rows) or 1
        for r in rows:
            w = (width - left - 90) * r[field] / top
            color = "#d9534f" if r["name"].startswith("nected") else "#5b8def"
            parts.append(f'<text x="10" y="{y + 15}">{r["label"]}</text>')
            parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>')
            parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 15}">{fmt(r[field])}</text>')
            y += bar_h + gap
        y += 24
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def verdict(ok):
    return "met" if ok else "missed"


def markdown(results):
    r = {v["name"]: v for v in results["variants"]}
    ratios = results["ratios"]
    t = results["targets"]
    base = r["no-filter"]["instructions"]
    lines = [
        f"Latest run: **{results['date']}**, `{results['command']}`.",
        "",
        f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores (shared), "
        f"Linux {results['machine']['kernel']}; Envoy {results['envoy']}, one worker pinned to "
        f"CPU 0, wrk pinned to CPU 1 (`-t1 -c16`, {results['seconds']} s per run, "
        f"{results['rounds']} interleaved rounds); {results['machine']['rustc']}. "
        f"Callgrind: `wrk -t1 -c1` for {results['callgrind_seconds']} s per variant after a "
        "3 s warm-up. Requests carry 2 headers (Host and the key) unless said.",
        "",
        "| variant | instructions/request | overhead vs 1 | CPU µs/request (median) | requests/s (median) | Envoy RSS MiB | start-up s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for v in results["variants"]:
        lines.append(f"| {v['label']} | {fmt_int(v['instructions'])} | "
                     f"{fmt_int(v['instructions'] - base)} | "
                     f"{v['cpu_us']:.1f} | {fmt_int(v['rps'])} | {v['rss_mib']:.1f} | "
                     f"{v['startup_s']:.1f} |")
    rows = [
        ("`logic_vs_abi_floor` = overhead(5) / overhead(4c)", "logic_vs_abi_floor",
         f"≤ {TARGET_LOGIC_VS_ABI_FLOOR} — {verdict(t['logic_vs_abi_floor'])}", 3),
    ]
    if "vs_higress" in ratios:
        rows.append(("`vs_higress` = overhead(5) / overhead(7)", "vs_higress",
                     f"≤ {TARGET_VS_HIGRESS} — {verdict(t['vs_higress'])}", 3))
    rows += [
        ("`logic_vs_floor` = overhead(5) / overhead(4)", "logic_vs_floor", "reported", 3),
        ("`vs_native` = cost(5) / cost(2)", "vs_native", "reported", 3),
        ("`vs_lua` = overhead(5) / overhead(3)", "vs_lua", "reported", 3),
        ("`scale` = cost(6) / cost(5)", "scale", f"≤ {TARGET_SCALE} — {verdict(t['scale'])}", 4),
        ("`scale_100k` = cost(6b) / cost(5)", "scale_100k", "reported", 4),
    ]
    lines += ["", "| ratio | instructions | CPU µs | target (instructions) |", "|---|---:|---:|---|"]
    for label, key, target, digits in rows:
        lines.append(f"| {label} | {ratios[key]:.{digits}f} | {ratios[key + '_cpu']:.{digits}f} | {target} |")
    lines += [
        "",
        f"- Duplicate-key detection: reading the whole header map instead of one header costs "
        f"{fmt_int(r['floor-map']['instructions'] - r['floor']['instructions'])} instructions per "
        f"request (4b − 4); the host work the contract's defaults add on top (strip, client "
        f"header, counter) {fmt_int(r['floor-abi']['instructions'] - r['floor-map']['instructions'])} "
        "(4c − 4b).",
        f"- 10k keys / 1k routes: `on_configure` {results['configure_ms']} ms "
        f"(target ≤ {TARGET_CONFIGURE_MS:.0f}) — {verdict(t['configure'])}. "
        f"100k keys / 10k routes: `on_configure` {results['configure_ms_100k']} ms, peak RSS "
        f"{results['peak_rss_mib_100k']:.1f} MiB (one worker; Envoy itself holds the "
        f"{results['config_bytes_100k'] / 1e6:.1f} MB configuration too).",
        f"- wasm: {fmt_int(results['wasm_bytes'])} bytes.",
    ]
    sizes = results.get("sizes")
    if sizes:
        lines += ["", "**Request size.** Overhead (instructions per request over no filter with "
                  "the same request) as the client sends more headers (common names: `user-agent`, `accept`, tracing headers…, then `x-custom-NN`; 24-byte values):", "",
                  "| request headers | no filter | 4c. ABI floor overhead | 5. nected overhead | "
                  "nected − floor | `logic_vs_abi_floor` |", "|---:|---:|---:|---:|---:|---:|"]
        for n in ["2"] + [str(h) for h in HEADER_COUNTS]:
            s = sizes[n]
            lines.append(f"| {n} | {fmt_int(s['no-filter'])} | {fmt_int(s['floor-abi'] - s['no-filter'])} | "
                         f"{fmt_int(s['nected-small'] - s['no-filter'])} | "
                         f"{fmt_int(s['nected-small'] - s['floor-abi'])} | "
                         f"{(s['nected-small'] - s['no-filter']) / (s['floor-abi'] - s['no-filter']):.3f} |")
    mem = results.get("memory")
    if mem:
        lines += ["", "**Memory per worker.** Envoy's RSS (MiB) after a 2 s load, by `--concurrency`; "
                  "floor and nected both get the 10k keys / 1k routes configuration (the floor "
                  "ignores it). Per worker = (RSS at 4 − RSS at 1) / 3:", "",
                  "| variant | " + " | ".join(f"{c} worker{'s' if c > 1 else ''}" for c in WORKER_COUNTS)
                  + " | per worker |", "|---|" + "---:|" * (len(WORKER_COUNTS) + 1)]
        for name, label in (("no-filter", "no filter"), ("floor-large", "floor, 10k/1k config"),
                            ("nected-10k", "nected, 10k/1k")):
            m = mem[name]
            lines.append(f"| {label} | " + " | ".join(f"{m[str(c)]:.1f}" for c in WORKER_COUNTS)
                         + f" | {m['per_worker']:.1f} |")
        lines.append("")
        lines.append(f"- nected's per-worker increment over the floor's: "
                     f"{mem['nected-10k']['per_worker'] - mem['floor-large']['per_worker']:+.1f} MiB "
                     f"(target ≤ {TARGET_WORKER_MIB:.0f}) — {verdict(t['worker_memory'])}; with one "
                     f"worker nected is {mem['nected-10k']['1'] - mem['floor-large']['1']:+.1f} MiB over "
                     "the floor.")
        for label, line in mem.get("compile", {}).items():
            lines.append(f"- Heap while compiling the {label} configuration (on the host, 64-bit; "
                         f"`cargo bench --bench compile_memory`): {line}.")
    if results["criterion"]:
        lines += ["", "Host micro-benchmarks of the core (criterion, `cargo bench --bench core`, median):", "",
                  "| benchmark | time |", "|---|---:|"]
        for name, ns in results["criterion"].items():
            shown = f"{ns / 1e6:.2f} ms" if ns >= 1e6 else f"{ns:.0f} ns"
            lines.append(f"| `{name}` | {shown} |")
    lines += ["", "![benchmark chart](bench/results.svg)"]
    return "\n".join(lines)


def write_benchmarks_md(block):
    path = os.path.join(ROOT, "BENCHMARKS.md")
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    with open(path) as f:
        text = f.read()
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w") as f:
        f.write(f"{head}{begin}\n{block}\n{end}{tail}")


def compile_memory(work):
    """Heap while compiling the 10k/1k and 100k/10k configurations, on the
    host (benches/compile_memory.rs): peak, kept, and what a streaming
    compile could save at most."""
    files = []
    for label, config in (("10k/1k", large_config()), ("100k/10k", large_config(100_000, 10_000))):
        path = os.path.join(work, f"compile-{label.replace('/', '-')}.json")
        with open(path, "w") as f:
            json.dump(config, f)
        files.append((label, path))
    # One copy of the library for the bench and the binary (see the Makefile).
    env = dict(os.environ, CARGO_PROFILE_BENCH_PANIC="unwind")
    run = subprocess.run(["cargo", "bench", "--quiet", "--bench", "compile_memory", "--"]
                         + [p for _, p in files], capture_output=True, text=True, cwd=ROOT, env=env)
    if run.returncode:
        print(run.stderr, file=sys.stderr)
        raise SystemExit("cargo bench --bench compile_memory failed")
    out = {}
    for label, path in files:
        m = re.search(re.escape(path) + r": (.*)", run.stdout)
        if m:
            out[label] = m.group(1).strip()
    return out


def memory_per_worker(work, envoy_bin, floor, nected):
    """Envoy's RSS with 1, 2 and 4 workers: no filter, the floor given the
    10k/1k configuration, nected with it."""
    large = large_config()
    cases = [("no-filter", None), ("floor-large", wasm_filter(floor, large)),
             ("nected-10k", wasm_filter(nected, large))]
    out = {}
    for i, (name, flt) in enumerate(cases):
        out[name] = {}
        for c in WORKER_COUNTS:
            e = Envoy(work, name, i * 10 + c, envoy_bin, flt, concurrency=c, base=19600)
            try:
                e.wait_ready(120)
                wrk(e.port, 2, 8 * c, cpu="0-1")
                out[name][str(c)] = e.rss_bytes() / MIB
            finally:
                e.stop()
        out[name]["per_worker"] = (out[name][str(WORKER_COUNTS[-1])] - out[name][str(WORKER_COUNTS[0])]) \
            / (WORKER_COUNTS[-1] - WORKER_COUNTS[0])
        print(f"  {name}: " + ", ".join(f"{c} workers {out[name][str(c)]:.1f} MiB" for c in WORKER_COUNTS)
              + f"; per worker {out[name]['per_worker']:.1f} MiB", flush=True)
    return out


QUICK = ["no-filter", "floor-abi", "nected-small"]
SIZED = ["no-filter", "floor-abi", "nected-small"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--envoy", required=False)
    ap.add_argument("--wasm", default=os.path.join(ROOT, "target/wasm32-wasip1/release/nected_key_auth.wasm"))
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--callgrind-seconds", type=int, default=5)
    ap.add_argument("--only", help="comma-separated variant names (default: all)")
    ap.add_argument("--no-write", action="store_true", help="print only; keep BENCHMARKS.md")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=WASM[:CONFIG]",
                    help="another wasm (a path, or floor / floor-map) with the small, large, abi or "
                         "empty plugin config, or a .json file (default small; repeatable)")
    ap.add_argument("--callgrind-only", action="store_true", help="skip the timed rounds")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: memory, sizes")
    ap.add_argument("--quick", action="store_true",
                    help=f"iterate: callgrind only, variants {','.join(QUICK)} (unless --only), "
                         "no memory or request-size rows, nothing written")
    ap.add_argument("--sized", default=",".join(SIZED),
                    help="variants also measured with 8, 24 and 64 request headers")
    ap.add_argument("--peers", help="folder of peer modules (default: ../shared/bench-peers)")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite BENCHMARKS.md and bench/results.svg from bench/results.json")
    ap.add_argument("--keep-dumps", metavar="DIR",
                    help="keep each variant's callgrind dump (callgrind_annotate DIR/callgrind.NAME)")
    args = ap.parse_args()
    if args.render:
        with open(os.path.join(ROOT, "bench", "results.json")) as f:
            results = json.load(f)
        svg_chart(results, os.path.join(ROOT, "bench", "results.svg"))
        write_benchmarks_md(markdown(results))
        return
    if not args.envoy:
        raise SystemExit("--envoy ENVOY is needed")
    skip = set(filter(None, args.skip.split(",")))
    if args.quick:
        args.callgrind_only = args.no_write = True
        args.only = args.only or ",".join(QUICK)
        skip |= {"memory", "sizes"}
    for tool in ("wrk", "valgrind", "callgrind_control", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed (make bench installs it)")
    envoy_bin = os.path.abspath(args.envoy)
    version = subprocess.run([envoy_bin, "--version"], capture_output=True, text=True).stdout
    version = re.search(r"/(\d+\.\d+\.\d+)/", version).group(1)
    floor, floor_map = build_floors()
    higress = higress_peer(args.peers)
    if not higress:
        print("no Higress peer (bench-peers/higress-key-auth): variant 7 left out", flush=True)
    chosen = variants(os.path.abspath(args.wasm), floor, floor_map, higress)
    if args.only:
        keep = args.only.split(",")
        chosen = [v for v in chosen if v[0] in keep]
    configs = {"small": small_config, "large": large_config, "empty": dict, "abi": lambda: "abi"}
    for extra in args.extra:
        name, path = extra.split("=", 1)
        path, _, config = path.partition(":")
        path = {"floor": floor, "floor-map": floor_map}.get(path, path)
        if config.endswith(".json"):
            with open(config) as f:
                configuration = json.load(f)
        else:
            configuration = configs[config or "small"]()
        chosen.append((name, name, wasm_filter(os.path.abspath(path), configuration)))
    work = tempfile.mkdtemp(prefix="nka-bench-")
    envoys = []
    memory = None
    sizes = {}
    try:
        print(f"== timed: {len(chosen)} Envoys, wrk {args.seconds}s x {args.rounds} rounds", flush=True)
        # One at a time: `on_configure` and start-up are wall-clock times,
        # and every Envoy is pinned to the same CPU.
        for i, (name, _, flt) in enumerate(chosen):
            e = Envoy(work, name, i, envoy_bin, flt)
            envoys.append(e)
            e.wait_ready(e.options.get("ready", 60))
            sanity(e)
        configure_ms = {e.name: e.configure_ms() for e in envoys}
        startup = {e.name: e.startup_s for e in envoys}
        for e in envoys:
            if e.configure_times():
                print(f"  {e.name}: on_configure " + ", ".join(f"{t} ms" for t in e.configure_times()))
        if args.callgrind_only:
            cpu = {e.name: [0.0] for e in envoys}
            rps = dict(cpu)
        else:
            cpu, rps = timed_rounds(envoys, args.seconds, args.rounds)
        rss = {e.name: e.rss_bytes() / MIB for e in envoys}
        peak = {e.name: e.rss_bytes("VmHWM") / MIB for e in envoys}
        for e in envoys:
            e.stop()
        envoys = []

        if "memory" not in skip:
            print("== memory per worker: --concurrency " + ", ".join(map(str, WORKER_COUNTS)), flush=True)
            memory = memory_per_worker(work, envoy_bin, floor, os.path.abspath(args.wasm))
            memory["compile"] = compile_memory(work)

        print("== callgrind: instructions per request", flush=True)
        instructions = {}
        # Higress takes minutes to start under valgrind: start it first, so
        # that it compiles while the others are measured, and measure it last.
        order = [v for v in chosen if v[0] != "higress"]
        late = [(i, v) for i, v in enumerate(chosen) if v[0] == "higress"]
        pending = [(Envoy(work, v[0], i, envoy_bin, v[2], callgrind=True), v) for i, v in late]
        envoys = [e for e, _ in pending]
        for name, _, flt in order:
            i = [v[0] for v in chosen].index(name)
            e = Envoy(work, name, i, envoy_bin, flt, callgrind=True)
            envoys.append(e)
            e.wait_ready(e.options.get("ready_callgrind", 600))
            instructions[e.name], n = callgrind_instructions(e, args.callgrind_seconds, args.keep_dumps)
            print(f"  {e.name}: {instructions[e.name]:,.0f} instructions/request ({n} requests)", flush=True)
            if name in args.sized.split(",") and "sizes" not in skip:
                sizes.setdefault("2", {})[name] = instructions[name]
                for h in HEADER_COUNTS:
                    got, n = callgrind_instructions(e, args.callgrind_seconds, args.keep_dumps, headers=h)
                    sizes.setdefault(str(h), {})[name] = got
                    print(f"  {e.name}, {h} headers: {got:,.0f} instructions/request ({n} requests)",
                          flush=True)
            e.stop()
            envoys.remove(e)
        for e, _ in pending:
            e.wait_ready(e.options.get("ready_callgrind", 600))
            instructions[e.name], n = callgrind_instructions(e, args.callgrind_seconds, args.keep_dumps)
            print(f"  {e.name}: {instructions[e.name]:,.0f} instructions/request ({n} requests)", flush=True)
            e.stop()
            envoys.remove(e)
    finally:
        for e in envoys:
            e.stop()
        shutil.rmtree(work, ignore_errors=True)

    rows = [{"name": n, "label": label, "instructions": instructions[n],
             "overhead": instructions[n] - instructions.get("no-filter", 0),
             "cpu_us": statistics.median(cpu[n]), "cpu_us_runs": cpu[n],
             "rps": statistics.median(rps[n]), "rss_mib": rss[n], "peak_rss_mib": peak[n],
             "startup_s": startup[n]} for n, label, _ in chosen]
    print()
    print(f"{'variant':44} {'instr/req':>10} {'overhead':>10} {'CPU µs':>8} {'req/s':>9} {'RSS MiB':>8} {'start s':>7}")
    base = instructions.get("no-filter", 0)
    for r in rows:
        print(f"{r['label']:44} {r['instructions']:>10,.0f} {r['instructions'] - base:>10,.0f} "
              f"{r['cpu_us']:>8.1f} {r['rps']:>9,.0f} {r['rss_mib']:>8.1f} {r['startup_s']:>7.1f}")
    i = instructions
    if {"no-filter", "floor-abi", "nected-small"} <= set(i):
        print(f"\nlogic_vs_abi_floor {(i['nected-small'] - i['no-filter']) / (i['floor-abi'] - i['no-filter']):.4f}")
    for h, s in sizes.items():
        print(f"{h:>3} headers: abi floor overhead {s['floor-abi'] - s['no-filter']:,.0f}, nected overhead "
              f"{s['nected-small'] - s['no-filter']:,.0f}, ratio "
              f"{(s['nected-small'] - s['no-filter']) / (s['floor-abi'] - s['no-filter']):.4f}")
    full = {"no-filter", "native", "lua", "floor", "floor-map", "floor-abi", "nected-small",
            "nected-10k", "nected-100k"}
    if not full <= set(instructions):
        return
    c = {n: statistics.median(cpu[n]) for n in cpu}
    if args.callgrind_only:
        c = i  # no timed rounds: CPU ratios repeat the instruction ratios

    def over(d, name, floor_name):
        return (d[name] - d["no-filter"]) / (d[floor_name] - d["no-filter"])

    ratios = {}
    for key, fn in {
        "logic_vs_abi_floor": lambda d: over(d, "nected-small", "floor-abi"),
        "logic_vs_floor": lambda d: over(d, "nected-small", "floor"),
        "map_vs_floor": lambda d: over(d, "floor-map", "floor"),
        "vs_native": lambda d: d["nected-small"] / d["native"],
        "vs_lua": lambda d: over(d, "nected-small", "lua"),
        "scale": lambda d: d["nected-10k"] / d["nected-small"],
        "scale_100k": lambda d: d["nected-100k"] / d["nected-small"],
        "vs_higress": lambda d: over(d, "nected-small", "higress"),
    }.items():
        if key == "vs_higress" and "higress" not in i:
            continue
        ratios[key], ratios[key + "_cpu"] = fn(i), fn(c)
    wasm_bytes = os.path.getsize(args.wasm)
    cfg_ms = configure_ms.get("nected-10k")
    targets = {
        "logic_vs_abi_floor": ratios["logic_vs_abi_floor"] <= TARGET_LOGIC_VS_ABI_FLOOR,
        "scale": ratios["scale"] <= TARGET_SCALE,
        "configure": cfg_ms is not None and cfg_ms <= TARGET_CONFIGURE_MS,
    }
    if "vs_higress" in ratios:
        targets["vs_higress"] = ratios["vs_higress"] <= TARGET_VS_HIGRESS
    if memory:
        targets["worker_memory"] = (memory["nected-10k"]["per_worker"]
                                    - memory["floor-large"]["per_worker"]) <= TARGET_WORKER_MIB
    print()
    for k, v in ratios.items():
        print(f"{k:24} {v:.4f}")
    print(f"{'on_configure 10k/1k':24} {cfg_ms} ms")
    print(f"{'on_configure 100k/10k':24} {configure_ms.get('nected-100k')} ms")
    print(f"{'wasm bytes':24} {wasm_bytes}")
    print("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in targets.items()))
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "make bench",
        "envoy": version,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "callgrind_seconds": args.callgrind_seconds,
        "machine": machine(),
        "variants": rows,
        "ratios": ratios,
        "targets": targets,
        "configure_ms": cfg_ms,
        "configure_ms_100k": configure_ms.get("nected-100k"),
        "peak_rss_mib_100k": peak["nected-100k"],
        "config_bytes_100k": len(json.dumps(large_config(100_000, 10_000))),
        "memory": memory,
        "sizes": sizes,
        "wasm_bytes": wasm_bytes,
        "criterion": criterion_results(),
    }
    if args.no_write:
        return
    os.makedirs(os.path.join(ROOT, "bench"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results.json"), "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    svg_chart(results, os.path.join(ROOT, "bench", "results.svg"))
    write_benchmarks_md(markdown(results))
    print("wrote bench/results.json, bench/results.svg, BENCHMARKS.md")


if __name__ == "__main__":
    sys.exit(main())
