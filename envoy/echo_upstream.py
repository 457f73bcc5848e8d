#!/usr/bin/env python3
"""Echo upstream for nected-key-auth demos and end-to-end tests.

Answers every request with JSON describing what reached it:
{"method": ..., "path": ..., "headers": [[name, value], ...]}.
Header names and values are the bytes received, decoded as ISO-8859-1 so
that any byte survives the round trip. Standard library only.

Usage: echo_upstream.py [--host 127.0.0.1] [--port 18080]
Port 0 picks a free port; the chosen port is printed as "listening on PORT".
"""

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are written separately; without this, Nagle and
    # delayed ACKs hold every keep-alive response back ~40 ms.
    disable_nagle_algorithm = True
    server_version = "echo-upstream"

    def log_message(self, *args):  # quiet: the proxy's access log is enough
        pass

    def _drain_body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                self.rfile.read(size + 2)
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)

    def _answer(self, with_body=True):
        self._drain_body()
        body = json.dumps(
            {
                "method": self.command,
                # The request target exactly as received (self.path may
                # have been rewritten by http.server, e.g. for "//x").
                "path": self.requestline.split(" ")[1],
                "headers": [[k, v] for k, v in self.headers.items()],
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_HEAD(self):
        self._answer(with_body=False)

    def __getattr__(self, name):
        # Every other method (GET, POST, lower-case ones, OPTIONS, ...).
        if name.startswith("do_"):
            return self._answer
        raise AttributeError(name)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Echo)
    server.daemon_threads = True
    print(f"listening on {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
