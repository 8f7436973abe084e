"""Enter network namespaces for one operation without moving the whole process.

``setns(2)`` changes only the calling thread, so sockets are created in a short-lived
worker thread that joins the namespace; a socket stays in the namespace it was created in.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(name: str) -> str:
    return f"/var/run/netns/{name}"


def _setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def run_in_netns(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a thread that has joined network namespace ``name``; return its result."""
    result: list[T] = []
    error: list[BaseException] = []

    def worker() -> None:
        try:
            fd = os.open(netns_path(name), os.O_RDONLY)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as exc:  # re-raised in the caller
            error.append(exc)

    t = threading.Thread(target=worker, name=f"netns-{name}")
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


def socket_in_netns(name: str | None, family: int, type_: int, bind: tuple[str, int] | None = None,
                    reuse_port: bool = False) -> socket.socket:
    """Create (and optionally bind) a socket inside namespace ``name`` (None = this namespace)."""

    def share(s: socket.socket) -> None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)

    def make() -> socket.socket:
        s = socket.socket(family, type_)
        if bind is not None and bind[1] == 0:
            # Port 0 asks for a port of our own. With SO_REUSEADDR/SO_REUSEPORT set before the
            # bind, Linux may hand out a port another such socket of this user already holds,
            # and the two then share (or steal) each other's datagrams. Bind first, share after:
            # later sockets can still join this one's SO_REUSEPORT group.
            s.bind(bind)
            share(s)
            return s
        share(s)
        if bind is not None:
            s.bind(bind)
        return s

    return make() if name is None else run_in_netns(name, make)


def exec_in_netns(name: str | None, argv: list[str], input: bytes | None = None,
                  check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[bytes]:
    """Run a command inside namespace ``name`` (``ip netns exec``)."""
    full = argv if name is None else ["ip", "netns", "exec", name, *argv]
    return subprocess.run(full, input=input, capture_output=True, check=check, timeout=timeout)


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir("/var/run/netns"))
    except FileNotFoundError:
        return []


def is_root() -> bool:
    return os.geteuid() == 0
