"""The forwarder relays only responses: a datagram that is not a response to our query (an upstream
echoing it, or a UDP socket that the kernel connected to its own address because the upstream's
port was free) is never taken for the answer. Before, the client got its own query back, which
``dig`` reports as "query response not set"."""

from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import sys
import uuid

import pytest

from servicenet.dns.forwarder import Forwarder

QUERY = b"\x12\x34" + struct.pack("!HHHHH", 0x0100, 1, 0, 0, 0) + b"\x07example\x03org\x00\x00\x01\x00\x01"


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


async def test_an_echoed_query_is_not_an_answer() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        with pytest.raises((TimeoutError, OSError)):
            await Forwarder([("127.0.0.1", port)], timeout=0.5).query(QUERY)
    finally:
        transport.close()


SELF_CONNECT = """
import asyncio, sys
from servicenet.dns.forwarder import Forwarder
try:
    r = asyncio.run(Forwarder([("127.0.0.1", 40000)], timeout=1.0).query(bytes.fromhex(sys.argv[1])))
    print("answer", r.hex())
except Exception as e:
    print("error", type(e).__name__, e)
"""


@pytest.mark.root
def test_a_socket_connected_to_itself_is_not_an_upstream() -> None:
    # in a namespace of our own whose only ephemeral port is the upstream's (nothing listens there),
    # the forwarder's socket is bound to 127.0.0.1:40000 and connected to 127.0.0.1:40000
    ns = f"sn-fwd{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_local_port_range=40000 40000"],
                       check=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", SELF_CONNECT, QUERY.hex()],
                             capture_output=True, text=True, timeout=30, env=env).stdout
        assert out.startswith("error OSError"), out
        assert QUERY.hex() not in out
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
