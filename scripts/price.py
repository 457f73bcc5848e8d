#!/usr/bin/env python3
"""`make bench-price`: what each piece of the filter costs per request.

Builds one variant of the filter per piece, from a copy of this tree with
that piece taken out (or, for SHA-256, done twice), then runs them all under
callgrind in one `scripts/bench.py --quick` run beside no filter, the ABI
floor and the filter itself (valid key, the small configuration). A piece's
price is the difference to the full filter, so it includes what V8 and the
host spend on it. `skeleton` takes every piece but SHA-256 out at once:
what it costs over the ABI floor, less SHA-256, is the glue (the filter's
contexts, the decision's plumbing, the bigger module). Not a test; writes
nothing in the tree.

One more variant is the unchanged source built with other flags (wasm
SIMD), to price that choice. The callgrind dumps also split the
instructions of no filter, the floor and the filter by where they ran
(Envoy, V8's code, libc).

Every variant still answers a valid key 200 and a wrong one 401 (bench.py
checks that first); an edit that no longer applies to the source stops the
run, naming the piece.

    python3 scripts/price.py --envoy ENVOY [--keep DIR]
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DECIDE = "src/decide.rs"
GLUE = "src/filter/mod.rs"

# name -> (what it prices, [(file, old, new)]). `old` must occur exactly once.
PIECES = {
    "no-filter-state": (
        "the filter-state property: its value formatted and one set_property",
        [(GLUE, '    buf.clear();\n    d.write_filter_state(&mut buf);\n'
                '    abi::set_property("nected_key_auth", &buf);\n', "    buf.clear();\n")],
    ),
    "fixed-filter-state": (
        "formatting the filter-state value (set_property of a constant instead)",
        [(GLUE, "    d.write_filter_state(&mut buf);\n",
          '    buf.extend_from_slice(b"outcome=allowed route=workflows key_id=bench");\n')],
    ),
    "sha256-twice": (
        "SHA-256 of the presented key (priced by hashing it twice: negative)",
        [(DECIDE, "        let digest: [u8; 32] = Sha256::digest(value).into();\n",
          "        std::hint::black_box(Sha256::digest(std::hint::black_box(value)));\n"
          "        let digest: [u8; 32] = Sha256::digest(value).into();\n")],
    ),
    "no-detail-counters": (
        "per-key and per-reason counters (id lookup, one more increment)",
        [(GLUE, "    state.count_detail(d);\n", "")],
    ),
    "no-header-rules": (
        "the header scan's checks beyond the key and pseudo-headers "
        "(host, origin, method overrides, rewrite hints, client header)",
        [(DECIDE, "if self.scan_lengths & length_bit(name.len()) == 0",
          "if length_bit(key_name.len()) & length_bit(name.len()) == 0")],
    ),
    "no-trim": (
        "trimming header values",
        [(DECIDE, "            let value = trim(raw);\n", "            let value = raw;\n")],
    ),
    "no-path": (
        "path canonicalization (the raw :path used as it is)",
        [(DECIDE, "let canonical = match req.path.map(path::canonical) {",
          "let canonical = match req.path.map(|p| Ok::<_, PathError>(std::borrow::Cow::Borrowed(p))) {")],
    ),
    "no-host": (
        "host normalization (the raw :authority used as it is)",
        [(DECIDE, "let Some(host) = host::normalize(authority) else {",
          "let Some(host) = Some(authority) else {")],
    ),
    "no-route-match": (
        "route match (the default, private, instead)",
        [(DECIDE, "        let route = self\n            .route_index\n"
                  "            .find(&self.routes, &path, method, host)\n"
                  "            .and_then(|i| self.routes.get(i));\n",
          "        let route: Option<&Route> = None;\n        let _ = (&path, host);\n")],
    ),
    "no-revocation": (
        "the VM-wide revocation lookup",
        [(DECIDE, "KeyState::Valid if env.revoked_elsewhere(&digest) =>",
          "KeyState::Valid if std::hint::black_box(false) =>")],
    ),
    "no-query-key": (
        "looking for the key in the query string",
        [(GLUE, "        if policy.strip_key {\n", "        if false {\n")],
    ),
}
# name -> (what it measures, extra RUSTFLAGS): the same source, built
# otherwise; its price is what the build would save (or cost, negative).
BUILDS = {
    "simd128": ("built with wasm SIMD (`-C target-feature=+simd128`: sha2's simd128 backend, "
                "auto-vectorized loops); not shipped", "-C target-feature=+simd128"),
    "opt-s": ("built for size (`opt-level = \"s\"`): a smaller module; not shipped",
              "-C opt-level=s"),
}
SKELETON = ["no-filter-state", "no-detail-counters", "no-header-rules", "no-trim", "no-path",
            "no-host", "no-route-match", "no-revocation", "no-query-key"]


def apply(tree, edits, name):
    for file, old, new in edits:
        path = os.path.join(tree, file)
        with open(path) as f:
            text = f.read()
        if text.count(old) != 1:
            raise SystemExit(f"price: the edit for {name!r} no longer applies to {file}; "
                             "update PIECES in scripts/price.py")
        with open(path, "w") as f:
            f.write(text.replace(old, new))


def build(work, name, edits, rustflags=""):
    tree = os.path.join(work, name)
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
        "target", ".git", ".tools", "bench", "dist"))
    apply(tree, edits, name)
    print(f"== building {name}", flush=True)
    # A variant leaves code unused: its warnings are expected.
    flags = " ".join(filter(None, [os.environ.get("RUSTFLAGS", ""), "-A warnings", rustflags]))
    env = dict(os.environ, RUSTFLAGS=flags)
    # Each set of flags has its own target folder (a change of flags
    # rebuilds every dependency).
    target = os.path.join(work, "target", re.sub(r"\W+", "-", rustflags) or "plain")
    subprocess.run(["cargo", "build", "--quiet", "--lib", "--release", "--target", "wasm32-wasip1",
                    "--manifest-path", os.path.join(tree, "Cargo.toml"), "--target-dir", target],
                   check=True, env=env)
    out = os.path.join(work, name + ".wasm")
    shutil.copy(os.path.join(target, "wasm32-wasip1", "release", "nected_key_auth.wasm"), out)
    return out


def self_cost_by_object(path):
    """Self instructions per object file in a callgrind dump: the `ob=` in
    force when each cost line is read; a cost line right after `calls=` is a
    call's inclusive cost and is skipped."""
    names, current, totals, skip = {}, "?", {}, False
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith(("ob=", "cob=")):
                # `(n) name` defines n (in either), `(n)` refers to it.
                m = re.match(r"c?ob=(?:\((\d+)\))?\s*(.*)", line.rstrip("\n"))
                ident, name = m.group(1), m.group(2)
                if ident and name:
                    names[ident] = name
                if line.startswith("ob="):
                    current = names.get(ident, name) if ident else name
            elif line.startswith("calls="):
                skip = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                if skip:
                    skip = False
                    continue
                parts = line.split()
                if len(parts) >= 2:
                    totals[current] = totals.get(current, 0) + int(parts[1])
    return totals


def where(name):
    base = os.path.basename(name)
    if "envoy" in base:
        return "Envoy (C++: HTTP, and the host side of every proxy-wasm call)"
    if base.startswith("libc") or base.startswith("libm") or base.startswith("ld-"):
        return "libc, ld.so"
    if not os.path.exists(name):
        return "anonymous mappings (V8: the wasm code, its stubs and builtins)"
    return "other"


def by_object(dumps, requests, names):
    """Per request, by where the instructions ran."""
    rows = {}
    for name in names:
        path = os.path.join(dumps, f"callgrind.{name}")
        if not os.path.exists(path) or not requests.get(name):
            continue
        for obj, cost in self_cost_by_object(path).items():
            row = rows.setdefault(where(obj), {})
            row[name] = row.get(name, 0) + cost / requests[name]
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--envoy", required=True)
    ap.add_argument("--keep", metavar="DIR", help="build in DIR and keep it (default: a temp dir)")
    ap.add_argument("--only", help="comma-separated pieces (default: all, and the skeleton)")
    ap.add_argument("--callgrind-seconds", type=int, default=5)
    args = ap.parse_args()
    work = args.keep or tempfile.mkdtemp(prefix="nka-price-")
    os.makedirs(work, exist_ok=True)
    names = args.only.split(",") if args.only else list(PIECES) + ["skeleton"] + list(BUILDS)
    wasm = {}
    try:
        for name in names:
            if name == "skeleton":
                wasm[name] = build(work, name, [e for p in SKELETON for e in PIECES[p][1]])
            elif name in PIECES:
                wasm[name] = build(work, name, PIECES[name][1])
            elif name in BUILDS:
                wasm[name] = build(work, name, [], BUILDS[name][1])
            else:
                raise SystemExit(f"price: no piece {name!r}; pieces: "
                                 f"{', '.join(list(PIECES) + ['skeleton'] + list(BUILDS))}")
        cmd = [sys.executable, os.path.join(ROOT, "scripts", "bench.py"), "--envoy", args.envoy,
               "--quick", "--callgrind-seconds", str(args.callgrind_seconds),
               "--keep-dumps", os.path.join(work, "dumps")]
        for name, path in wasm.items():
            cmd += ["--extra", f"{name}={path}"]
        print("== callgrind: " + " ".join(cmd[2:]), flush=True)
        run = subprocess.run(cmd, capture_output=True, text=True)
        sys.stdout.write(run.stdout)
        if run.returncode:
            sys.stderr.write(run.stderr)
            raise SystemExit(run.returncode)
        # bench.py prints "  <name>: <instructions> instructions/request (<n> requests)".
        found = re.findall(r"^\s*([\w.-]+): ([\d,]+) instructions/request \((\d+) requests\)",
                           run.stdout, re.M)
        got = {name: int(n.replace(",", "")) for name, n, _ in found}
        requests = {name: int(r) for name, _, r in found}
        full, floor = got.get("nected-small"), got.get("floor-abi")
        if not full or not floor or "no-filter" not in got:
            raise SystemExit("price: bench.py did not report no-filter, floor-abi and nected-small")
        module = os.path.join(ROOT, "target", "wasm32-wasip1", "release", "nected_key_auth.wasm")
        print(f"\nnected {full:,}; ABI floor {floor:,}; gap {full - floor:,} instructions/request; "
              f"module {os.path.getsize(module):,} bytes\n")
        print("| piece | instructions/request | variant |")
        print("|---|---:|---:|")
        for name in names:
            if name not in got or name == "skeleton":
                continue
            price = got[name] - full if name == "sha256-twice" else full - got[name]
            what = PIECES[name][0] if name in PIECES else BUILDS[name][0]
            if name in BUILDS:
                what += f" ({os.path.getsize(wasm[name]):,}-byte module)"
            print(f"| {name}: {what} | {price:,} | {got[name]:,} |")
        if "skeleton" in got:
            print(f"| skeleton: every piece but SHA-256 out at once, over the floor | "
                  f"{got['skeleton'] - floor:,} | {got['skeleton']:,} |")
            if "sha256-twice" in got:
                glue = got["skeleton"] - floor - (got["sha256-twice"] - full)
                print(f"| the glue: the skeleton less SHA-256 | {glue:,} | |")
        shown = ["no-filter", "floor-abi", "nected-small"]
        rows = by_object(os.path.join(work, "dumps"), requests, shown)
        if rows:
            print("\nBy where they ran (self instructions per request, from the callgrind dumps):\n")
            print("| where | " + " | ".join(shown) + " | nected − floor |")
            print("|---|" + "---:|" * (len(shown) + 1))
            for place, costs in sorted(rows.items(), key=lambda r: -r[1].get("nected-small", 0)):
                cells = [f"{costs.get(n, 0):,.0f}" for n in shown]
                diff = costs.get("nected-small", 0) - costs.get("floor-abi", 0)
                print(f"| {place} | " + " | ".join(cells) + f" | {diff:+,.0f} |")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
