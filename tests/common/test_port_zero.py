"""Port 0 means a port of our own: sockets that share (SO_REUSEPORT) must never be handed a
port another socket already holds, yet workers can still join a bound socket's group."""

from __future__ import annotations

import socket

from servicenet.common.netns import socket_in_netns


def test_port_zero_sockets_never_share_a_port() -> None:
    socks = [socket_in_netns(None, socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 0), reuse_port=True)
             for _ in range(600)]
    try:
        ports = [s.getsockname()[1] for s in socks]
        assert len(set(ports)) == len(ports)
    finally:
        for s in socks:
            s.close()


def test_a_worker_can_join_a_port_zero_socket() -> None:
    first = socket_in_netns(None, socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 0), reuse_port=True)
    port = first.getsockname()[1]
    second = socket_in_netns(None, socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", port), reuse_port=True)
    try:
        assert second.getsockname()[1] == port
    finally:
        first.close()
        second.close()
