"""``serve_hostname``: answers every HTTP request (and TCP connection) on 9376 with the hostname."""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler

from servicenet.node.images import bind_ip, hostname, http_server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the Go original

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        body = hostname().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        return


def main(argv: list[str]) -> None:
    port = 9376
    for a in argv:
        if a.startswith("-port=") or a.startswith("--port="):
            port = int(a.split("=", 1)[1])
    srv = http_server((bind_ip(), port), _Handler)
    print(f"Serving on port {port}.", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
