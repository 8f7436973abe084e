"""``nginx``: static files from ``/usr/share/nginx/html`` on the container ports (default 80)."""

from __future__ import annotations

import functools
import io
import os
import sys
import threading
from http.server import SimpleHTTPRequestHandler

from servicenet.node.images import bind_ip, http_server, ports

DEFAULT_PAGE = b"""<!DOCTYPE html>
<html><head><title>Welcome to nginx!</title></head>
<body><h1>Welcome to nginx!</h1><p>servicenet built-in nginx stand-in.</p></body></html>
"""


class _Handler(SimpleHTTPRequestHandler):
    server_version = "nginx"
    sys_version = ""

    def send_head(self):  # type: ignore[no-untyped-def]
        path = self.translate_path(self.path)
        if os.path.isdir(path) and not os.path.exists(os.path.join(path, "index.html")) and self.path in ("/", ""):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(DEFAULT_PAGE)))
            self.end_headers()
            return io.BytesIO(DEFAULT_PAGE)
        return super().send_head()

    def log_message(self, format: str, *args: object) -> None:
        sys.stdout.write(f'{self.client_address[0]} - - "{self.requestline}" {args[1] if len(args) > 1 else ""}\n')
        sys.stdout.flush()


def main() -> None:
    root = os.environ.get("SERVICENET_HTML_DIR") or "/usr/share/nginx/html"
    handler = functools.partial(_Handler, directory=root)
    servers = []
    for port in ports(80):
        srv = http_server((bind_ip(), port), handler)
        srv.daemon_threads = True
        servers.append(srv)
    for srv in servers[1:]:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
