"""The real UDP/TCP server, queried with dig, nslookup and dnspython."""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket
import struct
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from dns_fixtures import cluster, ep, eps, ns, svc

from servicenet.dns.model import DnsConfig
from servicenet.dns.server import DnsServer

Z = "cluster.local."


class Upstream(asyncio.DatagramProtocol):
    """A tiny upstream resolver: www.example.org A/AAAA, everything else NXDOMAIN."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        q = dns.message.from_wire(data)
        name, rdtype = q.question[0].name, q.question[0].rdtype
        self.queries.append(f"{str(name).lower()} {dns.rdatatype.to_text(rdtype)}")
        r = dns.message.make_response(q)
        if str(name).lower() == "www.example.org." and rdtype == dns.rdatatype.A:
            r.answer.append(dns.rrset.from_text(name, 300, "IN", "A", "192.0.2.53"))
        elif str(name).lower() != "www.example.org.":
            r.set_rcode(dns.rcode.NXDOMAIN)
            r.authority.append(dns.rrset.from_text("example.org.", 60, "IN", "SOA",
                                                   "ns.example.org. h.example.org. 1 2 3 4 30"))
        self.transport.sendto(r.to_wire(), addr)


async def run(*argv: str, timeout: float = 20) -> str:
    p = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(p.communicate(), timeout)
    return out.decode()


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Upstream, int]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Upstream, local_addr=("127.0.0.53", 0))
    yield proto, transport.get_extra_info("sockname")[1]
    transport.close()


@pytest.fixture
async def server(upstream: tuple[Upstream, int]) -> AsyncIterator[DnsServer]:
    idx, _ = cluster(DnsConfig(forward=True))
    idx.upsert_service(svc("big", headless=True))
    idx.upsert_slice(eps("big-1", "big", [ep(f"10.1.{i // 250}.{i % 250 + 1}") for i in range(200)]))
    s = DnsServer(index=idx, listen=[("127.0.0.1", 0)], upstreams=[("127.0.0.53", upstream[1])],
                  health_listen=("127.0.0.1", 0), tcp_idle_timeout=0.5)
    await s.start()
    yield s
    await s.stop()


def port(s: DnsServer) -> int:
    return s.bound[0][2]


def dig(s: DnsServer, *args: str) -> list[str]:
    return ["dig", "-p", str(port(s)), "@127.0.0.1", "+time=2", "+tries=1", *args]


async def test_dig_answers(server: DnsServer) -> None:
    assert (await run(*dig(server, "+short", f"web.default.svc.{Z}", "A"))).split() == ["10.96.0.20"]
    assert (await run(*dig(server, "+short", f"web.default.svc.{Z}", "AAAA"))).split() == ["fd00::20"]
    assert sorted((await run(*dig(server, "+short", f"_peer._tcp.hl.default.svc.{Z}", "SRV"))).splitlines()) == \
        sorted(f"0 25 2380 {h}.hl.default.svc.{Z}" for h in ("10-244-2-4", "db-0", "db-1", "db-5"))
    assert (await run(*dig(server, "+short", "-x", "10.96.0.1"))).split() == [f"kubernetes.default.svc.{Z}"]
    assert (await run(*dig(server, "+short", f"ext-in.default.svc.{Z}", "A"))).split() == [
        f"web.default.svc.{Z}", "10.96.0.20"]
    assert (await run(*dig(server, "+short", "-x", "fd00::20"))).split() == [f"web.default.svc.{Z}"]
    out = await run(*dig(server, f"NoPe.Default.svc.{Z}", "A"))
    assert "status: NXDOMAIN" in out and f"{Z}\t\t5\tIN\tSOA\tns.dns.{Z}" in out.replace("  ", "\t")
    out = await run(*dig(server, f"WEB.default.svc.{Z}", "A"))
    assert re.search(r"^WEB\.default\.svc\.cluster\.local\.\s+5\s+IN\s+A\s+10\.96\.0\.20$", out, re.M)
    assert "flags: qr aa rd ra" in out and "EDNS: version: 0" in out and "udp: 1232" in out
    out = await run(*dig(server, "+noedns", f"web.default.svc.{Z}", "A"))
    assert "OPT PSEUDOSECTION" not in out and "10.96.0.20" in out


async def test_truncated_udp_answer_retried_over_tcp_by_dig(server: DnsServer) -> None:
    out = await run(*dig(server, f"big.default.svc.{Z}", "A"))
    assert "Truncated, retrying in TCP mode" in out
    assert len(re.findall(r"^big\.default\.svc\.cluster\.local\.\s+5\s+IN\s+A\s+10\.1\.", out, re.M)) == 200


async def test_nslookup(server: DnsServer) -> None:
    out = await run("nslookup", f"-port={port(server)}", f"web.default.svc.{Z.rstrip('.')}", "127.0.0.1")
    assert "Address: 10.96.0.20" in out and "Address: fd00::20" in out
    out = await run("nslookup", f"-port={port(server)}", f"nope.default.svc.{Z.rstrip('.')}", "127.0.0.1")
    assert "NXDOMAIN" in out


async def test_dnspython_udp_tcp_and_pipelining(server: DnsServer) -> None:
    q = dns.message.make_query(f"hl.default.svc.{Z}", "A")
    for fn in (dns.asyncquery.udp, dns.asyncquery.tcp):
        m = await fn(q, "127.0.0.1", port=port(server), timeout=2)
        assert sorted(rd.address for rd in m.answer[0]) == ["10.244.2.1", "10.244.2.2", "10.244.2.4"]
    reader, writer = await asyncio.open_connection("127.0.0.1", port(server))
    names = [f"web.default.svc.{Z}", f"kubernetes.default.svc.{Z}", f"nope.default.svc.{Z}", "www.example.org."]
    queries = [dns.message.make_query(n, "A") for n in names]
    writer.write(b"".join(struct.pack("!H", len(w)) + w for w in (x.to_wire() for x in queries)))
    got = {}
    for _ in names:
        n = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 3))[0]
        m = dns.message.from_wire(await reader.readexactly(n))
        got[m.id] = m
    assert {q.id for q in queries} == set(got)
    assert got[queries[0].id].answer[0][0].address == "10.96.0.20"
    assert got[queries[2].id].rcode() == dns.rcode.NXDOMAIN
    assert got[queries[3].id].answer[0][0].address == "192.0.2.53"
    # the idle timeout closes the connection
    t0 = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 3) == b""
    assert time.monotonic() - t0 < 2.5
    writer.close()


async def test_forwarding_external_name_and_cache(server: DnsServer, upstream: tuple[Upstream, int]) -> None:
    proto = upstream[0]
    out = await run(*dig(server, f"ext.default.svc.{Z}", "A"))
    assert re.search(r"ext\.default\.svc\.cluster\.local\.\s+5\s+IN\s+CNAME\s+www\.example\.org\.", out)
    assert re.search(r"www\.example\.org\.\s+\d+\s+IN\s+A\s+192\.0\.2\.53", out)
    assert (await run(*dig(server, "+short", "WWW.example.org", "A"))).split() == ["192.0.2.53"]
    assert (await run(*dig(server, "+short", "www.example.org", "A"))).split() == ["192.0.2.53"]
    out = await run(*dig(server, "nx.example.org", "A"))
    assert "status: NXDOMAIN" in out
    await run(*dig(server, "nx.example.org", "A"))
    # the upstream saw each external question once: the rest came from the cache
    assert proto.queries.count("www.example.org. A") == 2  # ExternalName lookup + the plain forward
    assert proto.queries.count("nx.example.org. A") == 1
    # an unknown reverse name falls through to the upstream as well
    assert "NXDOMAIN" in await run(*dig(server, "-x", "10.99.99.99"))
    assert "99.99.99.10.in-addr.arpa. PTR" in proto.queries


async def test_no_forward_refuses() -> None:
    idx, _ = cluster(DnsConfig(forward=False))
    s = DnsServer(index=idx, listen=[("127.0.0.1", 0)])
    await s.start()
    try:
        out = await run(*dig(s, "www.example.org", "A"))
        assert "status: REFUSED" in out
    finally:
        await s.stop()


def free_udp_tcp_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
            u.bind(("127.0.0.1", 0))
            try:
                t.bind(("127.0.0.1", u.getsockname()[1]))
            except OSError:
                continue
            return u.getsockname()[1]
    raise RuntimeError("no free port")


async def test_loop_detection_drops_self() -> None:
    p = free_udp_tcp_port()
    idx, _ = cluster(DnsConfig(forward=True))
    s = DnsServer(index=idx, listen=[("127.0.0.1", p)], upstreams=[("127.0.0.1", p)])
    await s.start()
    try:
        assert s.forwarder is not None and s.forwarder.upstreams == []
        out = await run(*dig(s, "www.example.org", "A"))
        assert "status: SERVFAIL" in out
    finally:
        await s.stop()


class Relay(asyncio.DatagramProtocol):
    """A resolver that forwards everything to ``target`` (a forwarding loop when that is us)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.clients: dict[bytes, Any] = {}

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if addr == self.target:
            client = self.clients.pop(data[:2], None)
            if client is not None:
                self.transport.sendto(data, client)
        else:
            self.clients[data[:2]] = addr
            self.transport.sendto(data, self.target)


async def test_loop_probe_drops_upstream_that_forwards_back() -> None:
    p = free_udp_tcp_port()
    loop = asyncio.get_running_loop()
    relay_t, _ = await loop.create_datagram_endpoint(lambda: Relay(("127.0.0.1", p)), local_addr=("127.0.0.54", 0))
    relay_port = relay_t.get_extra_info("sockname")[1]
    idx, _ = cluster(DnsConfig(forward=True))
    s = DnsServer(index=idx, listen=[("127.0.0.1", p)], upstreams=[("127.0.0.54", relay_port)])
    await s.start()
    try:
        assert s.forwarder is not None and s.forwarder.upstreams == []
        assert s.forwarder.dropped == [("127.0.0.54", relay_port)]
        assert "status: SERVFAIL" in await run(*dig(s, "www.example.org", "A"))
    finally:
        await s.stop()
        relay_t.close()


async def test_health_and_metrics(server: DnsServer) -> None:
    await run(*dig(server, "+short", f"web.default.svc.{Z}", "A"))
    await run(*dig(server, "+short", f"nope.default.svc.{Z}", "A"))
    async with aiohttp.ClientSession() as http:
        for path in ("/healthz", "/readyz"):
            async with http.get(server.health.url + path) as r:
                assert r.status == 200
        async with http.get(server.health.url + "/metrics") as r:
            text = await r.text()
    assert re.search(r'servicenet_dns_requests_total\{qtype="A",rcode="NOERROR"\} [1-9]', text)
    assert re.search(r'servicenet_dns_requests_total\{qtype="A",rcode="NXDOMAIN"\} [1-9]', text)
    assert "servicenet_dns_answer_cache_hits_total" in text
    assert "servicenet_dns_request_duration_seconds_bucket" in text
    assert "servicenet_dns_programming_latency_seconds_bucket" in text


def _mutate(rng: random.Random, pkt: bytes) -> bytes:
    b = bytearray(pkt)
    for _ in range(rng.randrange(1, 4)):
        b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b[: rng.randrange(1, len(b) + 1)]) if rng.random() < 0.3 else bytes(b)


async def test_garbage_over_the_socket_keeps_valid_answers(server: DnsServer) -> None:
    rng = random.Random(7)
    seeds = [dns.message.make_query(f"web.default.svc.{Z}", "A", use_edns=e).to_wire() for e in (-1, 0)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        for i in range(20_000):
            sock.sendto(_mutate(rng, seeds[i % 2]), ("127.0.0.1", port(server)))
            if i % 1000 == 999:  # between bursts the server must still answer correctly
                m = await dns.asyncquery.udp(dns.message.make_query(f"web.default.svc.{Z}", "A"), "127.0.0.1",
                                             port=port(server), timeout=5)
                assert m.answer[0][0].address == "10.96.0.20"
                while True:  # drain the answers to the garbage so our buffer never fills
                    try:
                        sock.recv(4096)
                    except BlockingIOError:
                        break
        assert server.responder is not None and server.responder.internal_errors == 0
    finally:
        sock.close()


class FakeInformer:
    def __init__(self) -> None:
        self.handlers: list[Any] = []
        self.objects: dict[tuple[str, str], dict] = {}

    def add_handler(self, fn: Any) -> None:
        self.handlers.append(fn)

    def list(self) -> list[dict]:
        return list(self.objects.values())

    def emit(self, event: str, obj: dict) -> None:
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        old = self.objects.get(key)
        if event == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        for fn in self.handlers:
            fn(event, obj, old)


class FakeFactory:
    """Stands in for servicenet.client.InformerFactory (same methods)."""

    def __init__(self) -> None:
        self.informers: dict[str, FakeInformer] = {}
        self.synced = asyncio.Event()

    def informer(self, api: str, plural: str) -> FakeInformer:
        return self.informers.setdefault(plural, FakeInformer())

    async def start(self) -> None:
        pass

    async def wait_synced(self) -> None:
        await self.synced.wait()

    async def stop(self) -> None:
        pass


async def wait_for_answer(p: int, name: str, want: list[str], timeout: float = 5.0) -> float:
    t0 = time.monotonic()
    while True:
        m = await dns.asyncquery.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=p, timeout=1,
                                     source_port=random.randrange(20000, 60000))
        got = sorted(rd.address for rrs in m.answer for rd in rrs)
        if got == want:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{name}: {got} != {want}")
        await asyncio.sleep(0.002)


async def test_informer_events_and_workers() -> None:
    factory = FakeFactory()
    s = DnsServer(informers=factory, config=DnsConfig(forward=False), listen=[("127.0.0.1", 0)], workers=2)
    factory.informer("v1", "namespaces").emit("ADDED", ns("default"))
    factory.informer("v1", "services").emit("ADDED", svc("web", ips=["10.96.0.20"]))
    await s.start()
    try:
        p = port(s)
        out = await run(*dig(s, f"nope.default.svc.{Z}", "A"))
        assert "status: SERVFAIL" in out  # not synced yet
        factory.synced.set()
        await s.wait_ready()
        # many source ports so SO_REUSEPORT spreads the queries over both processes
        await wait_for_answer(p, f"web.default.svc.{Z}", ["10.96.0.20"])
        assert "status: NXDOMAIN" in await run(*dig(s, f"nope.default.svc.{Z}", "A"))
        factory.informer("v1", "services").emit("ADDED", svc("hl", headless=True))
        factory.informer("discovery.k8s.io/v1", "endpointslices").emit(
            "ADDED", eps("hl-1", "hl", [ep("10.244.0.7"), ep("10.244.0.8")]))
        for _ in range(30):  # every process serves the new answer quickly
            assert await wait_for_answer(p, f"hl.default.svc.{Z}", ["10.244.0.7", "10.244.0.8"]) < 0.1
        factory.informer("discovery.k8s.io/v1", "endpointslices").emit(
            "MODIFIED", eps("hl-1", "hl", [ep("10.244.0.7"), ep("10.244.0.8", ready=False)]))
        for _ in range(30):
            assert await wait_for_answer(p, f"hl.default.svc.{Z}", ["10.244.0.7"]) < 0.1
        served = [sum(v for v in w[0].values()) for w in s._worker_stats.values()]
        assert len(served) == 1
    finally:
        await s.stop()
    assert all(not proc.is_alive() for proc, _ in s._children)


@pytest.mark.root
async def test_serves_kube_dns_ip_inside_netns() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("needs root")
        pytest.skip("needs root")
    name = f"sn-{uuid.uuid4().hex[:6]}-dns"
    assert "" == await run("ip", "netns", "add", name)
    try:
        await run("ip", "-n", name, "link", "set", "lo", "up")
        await run("ip", "-n", name, "addr", "add", "10.96.0.10/32", "dev", "lo")
        idx, _ = cluster(DnsConfig(forward=False))
        s = DnsServer(index=idx, listen=[("127.0.0.1", 0)], netns=name, dns_ip="10.96.0.10")
        await s.start()
        try:
            assert (None, "127.0.0.1", port(s)) in s.bound and (name, "10.96.0.10", 53) in s.bound
            out = await run("ip", "netns", "exec", name, "dig", "+short", "+time=2", "+tries=1", "@10.96.0.10",
                            f"web.default.svc.{Z}", "A")
            assert out.split() == ["10.96.0.20"]
            out = await run("ip", "netns", "exec", name, "dig", "+short", "+tcp", "+time=2", "@10.96.0.10",
                            f"kubernetes.default.svc.{Z}", "A")
            assert out.split() == ["10.96.0.1"]
        finally:
            await s.stop()
    finally:
        await run("ip", "netns", "del", name)
