#!/usr/bin/env python3
"""Soak load generator for nected-key-auth (`make soak`, scripts/soak.sh).

Two subcommands:

  soak_load.py gen-config DIR
      Writes DIR/plugin-config.json (the plugin configuration Envoy loads)
      and DIR/keys.json (the keys the load uses: fresh random ones, only
      their SHA-256 digests go into the plugin configuration).

  soak_load.py run --keys DIR/keys.json --admin HOST:PORT --port PORT
                   --pid ENVOY_PID [--seconds 180] [--warmup 30] ...
      Sends mixed traffic over HTTP/1.1 (keep-alive connections) and h2c
      (HTTP/2 with prior knowledge, several concurrent streams per
      connection), checks every response against what the contract
      predicts for its request, compares the filter's outcome counters in
      Envoy's admin /stats with what was sent, and samples Envoy's RSS.
      Prints a report; exit status 0 only when every criterion passes.

Needs the `h2` package (the Makefile installs a pinned version into
.tools/py; soak.sh puts it on PYTHONPATH). Otherwise standard library only.
"""

import argparse
import asyncio
import collections
import hashlib
import json
import os
import random
import secrets
import sys
import time
import urllib.request

KEY_HEADER = b"nected-api-key"
CLIENT_HEADER = b"x-nected-client"

# Local replies, as the contract (CONTRACT.md, "Local replies") spells them.
BODY_401 = b'{"error":"unauthorized","message":"unauthorized access"}'
BODY_403 = b'{"error":"forbidden","message":"api key not allowed for this route"}'
BODY_400 = b'{"error":"bad_request","message":"ambiguous request"}'
WWW_AUTH = b'ApiKey header="nected-api-key"'
# What the direct_response route behind the filter answers (soak.sh). It
# also reflects what reached it: x-soak-client = the x-nected-client header
# the filter set, x-soak-key = a key header that was not stripped.
BODY_UPSTREAM = b"ok"

# class -> the outcome counter it must move
CLASS_OUTCOME = collections.OrderedDict(
    [
        ("public", "public"),
        ("allowed", "allowed"),
        ("missing", "denied_missing"),
        ("invalid", "denied_invalid"),
        ("revoked", "denied_invalid"),
        ("forbidden", "denied_forbidden"),
        ("bad_request", "denied_bad_request"),
    ]
)
# relative share of each class in the mix
CLASS_WEIGHT = {
    "public": 20,
    "allowed": 30,
    "missing": 10,
    "invalid": 15,
    "revoked": 10,
    "forbidden": 10,
    "bad_request": 5,
}
OUTCOMES = [
    "public",
    "allowed",
    "denied_missing",
    "denied_invalid",
    "denied_forbidden",
    "denied_bad_request",
    "denied_tls",
    "denied_config",
]
PROTOS = ["http1", "h2c"]


# ---------------------------------------------------------------- config


def sha256_hex(key):
    return hashlib.sha256(key.encode()).hexdigest()


def gen_config(out_dir):
    keys = {
        # client billing: the current key and a rotated one (both valid)
        "billing": secrets.token_urlsafe(32),
        "billing_next": secrets.token_urlsafe(32),
        # client cron: valid, but not allowed on the rules route
        "cron": secrets.token_urlsafe(32),
        # refused: revoked, expired, not yet valid
        "revoked": secrets.token_urlsafe(32),
        "expired": secrets.token_urlsafe(32),
        "future": secrets.token_urlsafe(32),
    }
    entries = [
        {"id": "billing-soak", "client": "billing", "sha256": sha256_hex(keys["billing"]),
         "expires": "2099-01-01T00:00:00Z"},
        {"id": "billing-soak-next", "client": "billing",
         "sha256": sha256_hex(keys["billing_next"]), "not_before": "2020-01-01T00:00:00Z"},
        {"id": "cron-soak", "client": "cron", "sha256": sha256_hex(keys["cron"])},
        {"id": "leaked-soak", "client": "billing", "sha256": sha256_hex(keys["revoked"]),
         "revoked": True},
        {"id": "expired-soak", "client": "cron", "sha256": sha256_hex(keys["expired"]),
         "expires": "2020-01-01T00:00:00Z"},
        {"id": "future-soak", "client": "cron", "sha256": sha256_hex(keys["future"]),
         "not_before": "2099-01-01T00:00:00Z"},
    ]
    # Filler keys so the digest table is not trivially small.
    for i in range(200):
        entries.append(
            {"id": f"filler-{i}", "client": "filler", "sha256": sha256_hex(secrets.token_urlsafe(32))}
        )
    config = {
        "header": "nected-api-key",
        "default_auth": "private",
        "routes": [
            {"name": "health", "path": "/healthz", "auth": "none"},
            {"name": "rules", "prefix": "/api/v1/rules", "methods": ["POST"], "auth": "private",
             "allow_clients": ["billing"]},
            {"name": "workflows", "prefix": "/api/v1/workflows", "auth": "private"},
            {"name": "docs", "prefix": "/docs", "hosts": ["localhost", "127.0.0.1"], "auth": "none"},
        ],
        "keys": entries,
        "strip_key": True,
        "forward_client": "x-nected-client",
        "allow_cors_preflight": False,
        "require_tls": False,
        "mode": "enforce",
    }
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "plugin-config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    with open(os.path.join(out_dir, "keys.json"), "w") as f:
        json.dump(keys, f)
    return 0


# ---------------------------------------------------------------- cases


class Expect:
    """What the contract predicts for a request."""

    def __init__(self, status, body, headers=None, absent=()):
        self.status = status
        self.body = body
        self.headers = headers or {}  # name -> exact single value
        self.absent = absent  # names that must not be in the response


def local_reply(status):
    if status == 401:
        return Expect(401, BODY_401, {b"content-type": b"application/json", b"www-authenticate": WWW_AUTH})
    body = {403: BODY_403, 400: BODY_400}[status]
    return Expect(status, body, {b"content-type": b"application/json"}, absent=(b"www-authenticate",))


def passed(client):
    """The request reached the route behind the filter: key stripped, and
    the client header set to `client` (None: no client header at all)."""
    headers = {}
    absent = [b"x-soak-key", b"www-authenticate"]
    if client is None:
        absent.append(b"x-soak-client")
    else:
        headers[b"x-soak-client"] = client.encode()
    return Expect(200, BODY_UPSTREAM, headers, tuple(absent))


class Case:
    __slots__ = ("cls", "name", "method", "host", "path", "headers", "body", "expect")

    def __init__(self, cls, name, method, path, headers=(), expect=None, host=b"localhost", body=b""):
        self.cls = cls
        self.name = name
        self.method = method
        self.host = host
        self.path = path
        self.headers = list(headers)  # [(name bytes, value bytes or callable)]
        self.body = body
        self.expect = expect


def build_cases(keys):
    k = {name: value.encode() for name, value in keys.items()}
    kh = KEY_HEADER

    def random_key():
        return secrets.token_urlsafe(32).encode()

    post = {"method": b"POST", "body": b"{}"}
    cases = [
        # public: no key checked; a key sent anyway is stripped, a spoofed
        # client header removed
        Case("public", "healthz", b"GET", b"/healthz", expect=passed(None)),
        Case("public", "healthz+key+spoof", b"GET", b"/healthz?probe=1",
             [(kh, k["billing"]), (CLIENT_HEADER, b"admin")], passed(None)),
        Case("public", "docs-localhost", b"GET", b"/docs/guide/intro", expect=passed(None)),
        Case("public", "docs-127.0.0.1:port", b"GET", b"/docs", host=b"127.0.0.1:10000",
             expect=passed(None)),
        # allowed: valid key for the route; the upstream sees the key's client
        Case("allowed", "rules-billing", path=b"/api/v1/rules/evaluate",
             headers=[(kh, k["billing"])], expect=passed("billing"), **post),
        Case("allowed", "rules-billing-next", path=b"/api/v1/rules",
             headers=[(kh, k["billing_next"])], expect=passed("billing"), **post),
        Case("allowed", "workflows-cron", b"GET", b"/api/v1/workflows/run?id=7",
             [(kh, k["cron"])], passed("cron")),
        Case("allowed", "workflows-billing+spoof", b"GET", b"/api/v1/workflows/list",
             [(kh, k["billing"]), (CLIENT_HEADER, b"cron")], passed("billing")),
        # GET on the rules prefix is not the rules route (POST only): the
        # default (private, every client) applies
        Case("allowed", "default-cron", b"GET", b"/api/v1/rules/x", [(kh, k["cron"])], passed("cron")),
        # missing: no key header or an empty one
        Case("missing", "workflows-nokey", b"GET", b"/api/v1/workflows/run", expect=local_reply(401)),
        Case("missing", "rules-nokey", path=b"/api/v1/rules/evaluate", expect=local_reply(401), **post),
        Case("missing", "workflows-emptykey", b"GET", b"/api/v1/workflows/run", [(kh, b"")],
             local_reply(401)),
        Case("missing", "default-nokey", b"GET", b"/unrouted/thing", expect=local_reply(401)),
        Case("missing", "docs-otherhost-nokey", b"GET", b"/docs/guide", host=b"other.example",
             expect=local_reply(401)),
        # invalid: unknown, expired, not yet valid, too long, comma, repeated
        Case("invalid", "unknown-key", b"GET", b"/api/v1/workflows/run", [(kh, random_key)],
             local_reply(401)),
        Case("invalid", "unknown-key-rules", path=b"/api/v1/rules/evaluate",
             headers=[(kh, random_key)], expect=local_reply(401), **post),
        Case("invalid", "expired-key", b"GET", b"/api/v1/workflows/run", [(kh, k["expired"])],
             local_reply(401)),
        Case("invalid", "not-yet-valid-key", b"GET", b"/api/v1/workflows/run", [(kh, k["future"])],
             local_reply(401)),
        Case("invalid", "600-byte-key", b"GET", b"/api/v1/workflows/run", [(kh, b"k" * 600)],
             local_reply(401)),
        Case("invalid", "comma-key", b"GET", b"/api/v1/workflows/run",
             [(kh, k["cron"] + b"," + k["cron"])], local_reply(401)),
        Case("invalid", "repeated-key-header", b"GET", b"/api/v1/workflows/run",
             [(kh, k["cron"]), (kh, k["cron"])], local_reply(401)),
        # revoked: a revoked key is refused everywhere, before the client check
        Case("revoked", "workflows-revoked", b"GET", b"/api/v1/workflows/run",
             [(kh, k["revoked"])], local_reply(401)),
        Case("revoked", "rules-revoked", path=b"/api/v1/rules/evaluate",
             headers=[(kh, k["revoked"])], expect=local_reply(401), **post),
        # forbidden: a valid key of a client the route does not allow
        Case("forbidden", "rules-cron", path=b"/api/v1/rules/evaluate",
             headers=[(kh, k["cron"])], expect=local_reply(403), **post),
        Case("forbidden", "rules-cron-exact", path=b"/api/v1/rules",
             headers=[(kh, k["cron"])], expect=local_reply(403), **post),
        # bad request: method-override headers, on every route, key or not
        Case("bad_request", "override-healthz", b"GET", b"/healthz",
             [(b"x-http-method-override", b"DELETE")], local_reply(400)),
        Case("bad_request", "override-workflows-validkey", b"GET", b"/api/v1/workflows/run",
             [(kh, k["cron"]), (b"x-method-override", b"PUT")], local_reply(400)),
    ]
    by_class = collections.defaultdict(list)
    for case in cases:
        assert case.cls in CLASS_OUTCOME, case.cls
        by_class[case.cls].append(case)
    return by_class


class Picker:
    """Chooses a case: class by weight, then a variant uniformly."""

    def __init__(self, by_class, seed):
        self.rng = random.Random(seed)
        self.by_class = by_class
        self.classes = list(CLASS_WEIGHT)
        self.weights = [CLASS_WEIGHT[c] for c in self.classes]
        self.cum = []
        total = 0
        for w in self.weights:
            total += w
            self.cum.append(total)
        self.total = total

    def pick(self):
        r = self.rng.random() * self.total
        for cls, c in zip(self.classes, self.cum):
            if r < c:
                break
        return self.rng.choice(self.by_class[cls])


def header_values(case):
    return [(n, v() if callable(v) else v) for n, v in case.headers]


# ---------------------------------------------------------------- clients


class ProtocolError(Exception):
    pass


class Http1Conn:
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    proto = "http1"
    connects = 0  # connections opened, over all instances

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def connect(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        Http1Conn.connects += 1

    async def close(self):
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
            self.writer = None

    async def request(self, case):
        if self.writer is None:
            await self.connect()
        out = [case.method, b" ", case.path, b" HTTP/1.1\r\nhost: ", case.host, b"\r\n"]
        for name, value in header_values(case):
            out += [name, b": ", value, b"\r\n"]
        if case.body or case.method == b"POST":
            out += [b"content-length: ", str(len(case.body)).encode(), b"\r\n"]
        out += [b"\r\n", case.body]
        self.writer.write(b"".join(out))
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ProtocolError(f"bad status line {lines[0]!r}")
        status = int(parts[1])
        headers = collections.defaultdict(list)
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()].append(value.strip())
        if b"chunked" in b"".join(headers.get(b"transfer-encoding", [])).lower():
            body = await self._chunked()
        else:
            length = int(headers.get(b"content-length", [b"0"])[0])
            body = await self.reader.readexactly(length) if length else b""
        if b"close" in b"".join(headers.get(b"connection", [])).lower():
            await self.close()
        return status, headers, body

    async def _chunked(self):
        body = b""
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                while await self.reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                return body
            body += (await self.reader.readexactly(size + 2))[:-2]


class H2Conn:
    """One h2c (prior knowledge) connection shared by several workers, each
    with one stream in flight at a time."""

    proto = "h2c"

    def __init__(self, host, port):
        import h2.config
        import h2.connection

        self.host, self.port = host, port
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.streams = {}  # stream id -> [future, status, headers, body]
        self.reader = self.writer = None
        self.read_task = None
        self.dead = None

    async def connect(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.conn.initiate_connection()
        self.writer.write(self.conn.data_to_send())
        self.read_task = asyncio.ensure_future(self._read_loop())

    async def close(self):
        if self.read_task is not None:
            self.read_task.cancel()
        if self.writer is not None:
            try:
                self.conn.close_connection()
                self.writer.write(self.conn.data_to_send())
            except Exception:  # already closed by the peer
                pass
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass

    def _fail_all(self, exc):
        self.dead = exc
        for entry in self.streams.values():
            if not entry[0].done():
                entry[0].set_exception(exc)
        self.streams.clear()

    async def _read_loop(self):
        import h2.events as ev

        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    raise ProtocolError("h2c connection closed by Envoy")
                for event in self.conn.receive_data(data):
                    if isinstance(event, ev.ResponseReceived):
                        entry = self.streams.get(event.stream_id)
                        if entry is not None:
                            entry[1] = event.headers
                    elif isinstance(event, ev.DataReceived):
                        self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                        entry = self.streams.get(event.stream_id)
                        if entry is not None:
                            entry[2].append(event.data)
                    elif isinstance(event, ev.StreamEnded):
                        entry = self.streams.pop(event.stream_id, None)
                        if entry is not None and not entry[0].done():
                            entry[0].set_result((entry[1], b"".join(entry[2])))
                    elif isinstance(event, ev.StreamReset):
                        entry = self.streams.pop(event.stream_id, None)
                        if entry is not None and not entry[0].done():
                            entry[0].set_exception(
                                ProtocolError(f"stream reset, error code {event.error_code}")
                            )
                    elif isinstance(event, ev.ConnectionTerminated):
                        raise ProtocolError(f"GOAWAY from Envoy, error code {event.error_code}")
                out = self.conn.data_to_send()
                if out:
                    self.writer.write(out)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure fails the streams
            self._fail_all(exc if isinstance(exc, ProtocolError) else ProtocolError(repr(exc)))

    async def request(self, case):
        if self.reader is None:
            await self.connect()
        if self.dead is not None:
            raise self.dead
        sid = self.conn.get_next_available_stream_id()
        headers = [
            (b":method", case.method),
            (b":scheme", b"http"),
            (b":authority", case.host),
            (b":path", case.path),
        ]
        headers += header_values(case)
        if case.body or case.method == b"POST":
            headers.append((b"content-length", str(len(case.body)).encode()))
        fut = asyncio.get_running_loop().create_future()
        self.streams[sid] = [fut, None, []]
        self.conn.send_headers(sid, headers, end_stream=not case.body)
        if case.body:
            self.conn.send_data(sid, case.body, end_stream=True)
        self.writer.write(self.conn.data_to_send())
        resp_headers, body = await fut
        status = None
        headers_out = collections.defaultdict(list)
        for name, value in resp_headers or []:
            if name == b":status":
                status = int(value)
            else:
                headers_out[name.lower()].append(value)
        if status is None:
            raise ProtocolError("response without :status")
        return status, headers_out, body


# ---------------------------------------------------------------- checking


def check(case, status, headers, body):
    """None when the response is the predicted one, else what differs."""
    exp = case.expect
    problems = []
    if status != exp.status:
        problems.append(f"status {status}, want {exp.status}")
    if body != exp.body:
        problems.append(f"body {body[:120]!r}, want {exp.body!r}")
    for name, value in exp.headers.items():
        got = headers.get(name, [])
        if got != [value]:
            problems.append(f"{name.decode()} {got!r}, want [{value!r}]")
    for name in exp.absent:
        if name in headers:
            problems.append(f"unexpected {name.decode()}: {headers[name]!r}")
    return "; ".join(problems) or None


class Tally:
    def __init__(self):
        self.sent = collections.Counter()  # (class, proto) -> responses checked
        self.mismatch = collections.Counter()  # (class, proto)
        self.status5xx = collections.Counter()  # (class, proto)
        self.errors = collections.Counter()  # proto -> transport errors
        self.examples = []  # first mismatches / errors, for the report
        self.stop = False

    def note(self, text):
        if len(self.examples) < 12:
            self.examples.append(text)


async def worker(conn, picker, tally, deadline, owns_conn):
    try:
        while not tally.stop and time.monotonic() < deadline:
            case = picker.pick()
            key = (case.cls, conn.proto)
            try:
                status, headers, body = await conn.request(case)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ProtocolError) as exc:
                # A request without a response counts as sent and mismatched.
                tally.sent[key] += 1
                tally.mismatch[key] += 1
                tally.errors[conn.proto] += 1
                tally.note(f"{conn.proto} {case.cls}/{case.name}: transport error {exc!r}")
                if owns_conn:  # HTTP/1.1: reconnect; h2c: the shared connection is dead
                    await conn.close()
                    conn.writer = None
                    continue
                return
            tally.sent[key] += 1
            if status >= 500:
                tally.status5xx[key] += 1
            problem = check(case, status, headers, body)
            if problem is not None:
                tally.mismatch[key] += 1
                tally.note(f"{conn.proto} {case.cls}/{case.name} {case.method.decode()} "
                           f"{case.path.decode()}: {problem}")
    finally:
        if owns_conn:
            await conn.close()


# ---------------------------------------------------------------- Envoy


def admin_get(admin, path):
    with urllib.request.urlopen(f"http://{admin}{path}", timeout=10) as resp:
        return resp.read().decode()


def read_stats(admin, regex):
    stats = {}
    for line in admin_get(admin, f"/stats?filter={regex}").splitlines():
        name, sep, value = line.rpartition(": ")
        if sep and value.strip().isdigit():
            stats[name] = int(value)
    return stats


def outcome_counters(admin):
    stats = read_stats(admin, r"^wasmcustom\.nected_key_auth\.")
    return {o: stats.get(f"wasmcustom.nected_key_auth.{o}", 0) for o in OUTCOMES}


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def sampler(pid, start, warmup, interval, samples, stop_event):
    """RSS samples: the first when warm-up ends, then every `interval` s."""
    await asyncio.sleep(max(0.0, start + warmup - time.monotonic()))
    while True:
        samples.append((time.monotonic() - start, rss_kib(pid)))
        try:
            await asyncio.wait_for(stop_event.wait(), interval)
            return
        except asyncio.TimeoutError:
            pass


async def run_load(args, keys):
    by_class = build_cases(keys)
    tally = Tally()
    start = time.monotonic()
    deadline = start + args.seconds
    samples = []
    stop_event = asyncio.Event()
    sample_task = asyncio.ensure_future(
        sampler(args.pid, start, args.warmup, args.sample_every, samples, stop_event)
    )
    tasks, h2conns = [], []
    seed = args.seed
    for _ in range(args.h1_conns):
        conn = Http1Conn("127.0.0.1", args.port)
        seed += 1
        tasks.append(worker(conn, Picker(by_class, seed), tally, deadline, True))
    for _ in range(args.h2_conns):
        conn = H2Conn("127.0.0.1", args.port)
        await conn.connect()
        h2conns.append(conn)
        for _ in range(args.h2_streams):
            seed += 1
            tasks.append(worker(conn, Picker(by_class, seed), tally, deadline, False))
    hung = False
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), args.seconds + 30)
    except asyncio.TimeoutError:
        hung = True
        tally.stop = True
        tally.note("requests still unanswered 30 s after the end of the run")
    elapsed = time.monotonic() - start
    for conn in h2conns:
        await conn.close()
    stop_event.set()
    if not sample_task.done():
        await sample_task
    # The final sample after the load ended (the last in-run sample may be
    # up to `sample_every` seconds old).
    samples.append((time.monotonic() - start, rss_kib(args.pid)))
    return tally, samples, elapsed, hung


# ---------------------------------------------------------------- report


def report(args, tally, samples, elapsed, hung, before, after, envoy_stats):
    ok = True
    failures = []
    print()
    print(f"== nected-key-auth soak: {elapsed:.0f} s of load ({args.warmup:.0f} s warm-up), "
          f"Envoy --concurrency 2, {args.h1_conns} HTTP/1.1 connections, "
          f"{args.h2_conns} h2c connections x {args.h2_streams} streams")
    print()
    hdr = f"{'class':<12} {'outcome counter':<20}" + "".join(f"{p:>10}" for p in PROTOS)
    hdr += f"{'total':>10} {'mismatch':>9} {'5xx':>6}"
    print(hdr)
    print("-" * len(hdr))
    totals = collections.Counter()
    for cls, outcome in CLASS_OUTCOME.items():
        row = f"{cls:<12} {outcome:<20}"
        n = 0
        for p in PROTOS:
            row += f"{tally.sent[(cls, p)]:>10}"
            n += tally.sent[(cls, p)]
            totals[p] += tally.sent[(cls, p)]
        mm = sum(tally.mismatch[(cls, p)] for p in PROTOS)
        s5 = sum(tally.status5xx[(cls, p)] for p in PROTOS)
        print(row + f"{n:>10} {mm:>9} {s5:>6}")
    total = sum(totals.values())
    total_mm = sum(tally.mismatch.values())
    total_5xx = sum(tally.status5xx.values())
    print("-" * len(hdr))
    print(f"{'all':<12} {'':<20}" + "".join(f"{totals[p]:>10}" for p in PROTOS)
          + f"{total:>10} {total_mm:>9} {total_5xx:>6}")
    rate = total / elapsed if elapsed else 0.0
    print()
    print(f"requests/s: {rate:.0f} overall ("
          + ", ".join(f"{p} {totals[p] / elapsed:.0f}" for p in PROTOS) + ")")
    print(f"HTTP/1.1 connections opened: {Http1Conn.connects} (Envoy answers `connection: close` when it "
          "replies before reading a request body, and after any 400; the client then reconnects)")
    if tally.errors:
        print("transport errors: " + ", ".join(f"{p} {n}" for p, n in tally.errors.items()))
    if tally.examples:
        print("first problems:")
        for text in tally.examples:
            print("  " + text)

    # counters
    expected = collections.Counter()
    for cls, outcome in CLASS_OUTCOME.items():
        expected[outcome] += sum(tally.sent[(cls, p)] for p in PROTOS)
    print()
    print(f"{'counter wasmcustom.nected_key_auth.*':<38} {'expected':>10} {'actual':>10}")
    counters_ok = True
    for o in OUTCOMES:
        actual = after[o] - before[o]
        mark = "" if actual == expected[o] else "   <-- differs"
        counters_ok &= actual == expected[o]
        print(f"{o:<38} {expected[o]:>10} {actual:>10}{mark}")

    # Envoy's own view of the listener
    print()
    for name in sorted(envoy_stats):
        print(f"envoy {name}: {envoy_stats[name]}")

    # RSS
    print()
    print("Envoy RSS (VmRSS) samples, from the end of warm-up:")
    line = []
    for t, kib in samples:
        line.append(f"{t:.0f}s={kib / 1024:.1f}")
    for i in range(0, len(line), 8):
        print("  " + "  ".join(line[i:i + 8]) + " MiB")
    growth = (samples[-1][1] - samples[0][1]) if samples else None
    peak = max(k for _, k in samples) if samples else None
    if growth is not None:
        print(f"RSS after warm-up {samples[0][1] / 1024:.1f} MiB, at the end {samples[-1][1] / 1024:.1f} MiB, "
              f"peak {peak / 1024:.1f} MiB: growth {growth / 1024:+.2f} MiB (limit {args.rss_limit_mib} MiB)")

    # criteria
    criteria = [
        ("requests were sent over both protocols and every class",
         all(tally.sent[(c, p)] > 0 for c in CLASS_OUTCOME for p in PROTOS)),
        ("no request left unanswered, no transport error", not hung and not tally.errors),
        ("zero 5xx (load generator and Envoy's downstream_rq_5xx)",
         total_5xx == 0 and envoy_stats.get("http.soak.downstream_rq_5xx", 0) == 0),
        ("every response is the one the contract predicts", total_mm == 0),
        ("outcome counters equal what was sent per class", counters_ok),
        ("Envoy saw exactly the requests sent (http.soak.downstream_rq_total)",
         envoy_stats.get("http.soak.downstream_rq_total") == total),
        (f"Envoy RSS growth after warm-up under {args.rss_limit_mib} MiB",
         growth is not None and len(samples) >= 2 and growth < args.rss_limit_mib * 1024),
    ]
    print()
    print("pass criteria:")
    for text, passed_ in criteria:
        print(f"  [{'PASS' if passed_ else 'FAIL'}] {text}")
        if not passed_:
            ok = False
            failures.append(text)
    print()
    print("SOAK PASSED" if ok else f"SOAK FAILED ({len(failures)} criteria)")
    return ok


def run(args):
    with open(args.keys) as f:
        keys = json.load(f)
    before = outcome_counters(args.admin)
    before_rq = read_stats(args.admin, r"^http\.soak\.downstream_rq_total$").get("http.soak.downstream_rq_total", 0)
    tally, samples, elapsed, hung = asyncio.run(run_load(args, keys))
    after = outcome_counters(args.admin)
    envoy_stats = read_stats(
        args.admin,
        r"^(http\.soak\.downstream_rq_(total|[1-5]xx)|listener\..*worker_[0-9]+\.downstream_cx_total)$",
    )
    envoy_stats["http.soak.downstream_rq_total"] = envoy_stats.get("http.soak.downstream_rq_total", 0) - before_rq
    return 0 if report(args, tally, samples, elapsed, hung, before, after, envoy_stats) else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen-config", help="write plugin-config.json and keys.json into DIR")
    g.add_argument("dir")
    r = sub.add_parser("run", help="run the load and print the report")
    r.add_argument("--keys", required=True)
    r.add_argument("--admin", required=True, help="Envoy admin HOST:PORT")
    r.add_argument("--port", type=int, required=True, help="Envoy listener port on 127.0.0.1")
    r.add_argument("--pid", type=int, required=True, help="Envoy's process id (for VmRSS)")
    r.add_argument("--seconds", type=float, default=180, help="load duration, warm-up included")
    r.add_argument("--warmup", type=float, default=30, help="seconds before the first RSS sample")
    r.add_argument("--sample-every", type=float, default=10, help="RSS sample interval (s)")
    r.add_argument("--rss-limit-mib", type=float, default=5)
    r.add_argument("--h1-conns", type=int, default=6)
    r.add_argument("--h2-conns", type=int, default=3)
    r.add_argument("--h2-streams", type=int, default=4, help="concurrent streams per h2c connection")
    r.add_argument("--seed", type=int, default=4)
    args = parser.parse_args()
    if args.cmd == "gen-config":
        return gen_config(args.dir)
    if args.warmup >= args.seconds:
        parser.error("--warmup must be shorter than --seconds")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
