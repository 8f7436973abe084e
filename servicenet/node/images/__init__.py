"""Built-in programs standing in for well-known container images (run as ``python -m``).

They bind to ``$SERVICENET_BIND_IP`` (the pod IP in loopback mode; all addresses otherwise) and
answer with ``$HOSTNAME`` (set to the pod hostname) so they work without a UTS namespace.
"""

import os
import socket


def bind_ip() -> str:
    return os.environ.get("SERVICENET_BIND_IP") or "0.0.0.0"


def hostname() -> str:
    return os.environ.get("HOSTNAME") or socket.gethostname()


def ports(default: int) -> list[int]:
    raw = os.environ.get("SERVICENET_PORTS") or ""
    got = [int(p) for p in raw.split(",") if p.strip().isdigit()]
    return got or [default]
