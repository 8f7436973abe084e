"""Built-in programs standing in for well-known container images (run as ``python -m``).

They bind to ``$SERVICENET_BIND_IP`` (the pod IP in loopback mode; all addresses otherwise) and
answer with ``$HOSTNAME`` (set to the pod hostname) so they work without a UTS namespace.
"""

import os
import socket
from http.server import ThreadingHTTPServer


def bind_ip() -> str:
    return os.environ.get("SERVICENET_BIND_IP") or "0.0.0.0"


def hostname() -> str:
    return os.environ.get("HOSTNAME") or socket.gethostname()


def ports(default: int) -> list[int]:
    raw = os.environ.get("SERVICENET_PORTS") or ""
    got = [int(p) for p in raw.split(",") if p.strip().isdigit()]
    return got or [default]


def http_server(addr: tuple[str, int], handler: type) -> ThreadingHTTPServer:
    """A threading HTTP server with a real listen backlog (socketserver's default is 5)."""

    class _Server(ThreadingHTTPServer):
        request_queue_size = 128
        daemon_threads = True

    return _Server(addr, handler)
