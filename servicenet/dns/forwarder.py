"""Forwarding of names outside the cluster zone to upstream resolvers, with a cache.

Positive answers are cached for their smallest TTL, negative ones (NXDOMAIN/NODATA)
for the SOA minimum (RFC 2308). TTLs are served as received until the entry expires.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import socket
import struct
import time
from collections.abc import Iterable

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from servicenet.common.component import bounded

from .records import AAAA, CNAME, RR, SERVFAIL, A
from .responder import Forward, Responder
from .wire import age_ttls, opt_record

MAX_CACHE = 10_000
MAX_TTL = 3600


def resolv_conf_nameservers(path: str = "/etc/resolv.conf",
                            allow_external: bool | None = None) -> list[tuple[str, int]]:
    """The host's resolvers. Only loopback ones unless external upstreams are allowed
    (``SERVICENET_DNS_EXTERNAL_UPSTREAMS=1`` or ``allow_external=True``): servicenet never sends
    traffic off the machine on its own; pass ``--upstream`` to forward elsewhere explicitly."""
    if allow_external is None:
        allow_external = os.environ.get("SERVICENET_DNS_EXTERNAL_UPSTREAMS") == "1"
    out: list[tuple[str, int]] = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    try:
                        loopback = ipaddress.ip_address(parts[1].split("%")[0]).is_loopback
                    except ValueError:
                        continue
                    if loopback or allow_external:
                        out.append((parts[1], 53))
    except OSError:
        pass
    return out


def parse_upstream(text: str) -> tuple[str, int]:
    """``1.2.3.4``, ``1.2.3.4:53``, ``[::1]:53`` or ``::1``."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        return host, int(port.lstrip(":") or 53)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, 53


def _is_self(up: tuple[str, int], listens: Iterable[tuple[str, int]]) -> bool:
    for host, port in listens:
        if port == up[1] and (host == up[0] or host in ("0.0.0.0", "::", "")):
            return True
    return False


class _UdpOnce(asyncio.DatagramProtocol):
    def __init__(self, qid: bytes) -> None:
        self.qid = qid
        self.future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        # only a response (QR set) to our ID: a socket that happens to be connected to its own
        # address reads back its own query, which must never be relayed as the answer
        if len(data) >= 12 and data[:2] == self.qid and data[2] & 0x80 and not self.future.done():
            self.future.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class Forwarder:
    def __init__(self, upstreams: list[tuple[str, int]], listens: Iterable[tuple[str, int]] = (),
                 timeout: float = 2.0) -> None:
        listens = list(listens)
        # loop detection, static part: never forward to one of our own listen addresses
        self.upstreams = [u for u in upstreams if not _is_self(u, listens)]
        self.dropped = [u for u in upstreams if _is_self(u, listens)]
        self.timeout = timeout
        self._cache: dict[tuple[bytes, int], tuple[float, float, bytes]] = {}  # expiry, stored, answer
        self.hits = 0
        self.misses = 0
        self._probe_label = f"sn-loop-{random.getrandbits(48):x}"
        self.probe_name = f"{self._probe_label}.servicenet.invalid"
        self.probe_seen = 0

    async def query(self, wire: bytes) -> bytes:
        """Send ``wire`` to the upstreams in turn (UDP, TCP when truncated); raise on failure."""
        last: Exception = TimeoutError("no upstream")
        for host, port in self.upstreams:
            try:
                resp = await self._udp(wire, host, port)
                if resp[2] & 0x02:
                    resp = await self._tcp(wire, host, port)
                if len(resp) < 12 or resp[:2] != wire[:2] or not resp[2] & 0x80:
                    raise OSError(f"upstream {host}:{port} sent something that is not a response to the query")
                return resp
            except (OSError, TimeoutError, asyncio.IncompleteReadError, IndexError) as exc:
                last = exc
        raise last

    async def _udp(self, wire: bytes, host: str, port: int) -> bytes:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        transport, proto = await loop.create_datagram_endpoint(
            lambda: _UdpOnce(wire[:2]), remote_addr=(host, port), family=family)
        if transport.get_extra_info("sockname")[:2] == transport.get_extra_info("peername")[:2]:
            # the kernel gave us the upstream's own (unused) port: we would be talking to ourselves
            transport.close()
            raise OSError(f"upstream {host}:{port} is not listening (our socket got its address)")
        try:
            transport.sendto(wire)
            return await bounded(proto.future, self.timeout)
        finally:
            transport.close()

    async def _tcp(self, wire: bytes, host: str, port: int) -> bytes:
        reader, writer = await bounded(asyncio.open_connection(host, port), self.timeout)
        try:
            writer.write(struct.pack("!H", len(wire)) + wire)
            n = struct.unpack("!H", await bounded(reader.readexactly(2), self.timeout))[0]
            return await bounded(reader.readexactly(n), self.timeout)
        finally:
            writer.close()

    # ------------------------------------------------------------ cached lookups
    def _get(self, key: tuple[bytes, int]) -> bytes | None:
        hit = self._cache.get(key)
        if hit is None:
            return None
        now = time.monotonic()
        if hit[0] < now:
            del self._cache[key]
            return None
        self.hits += 1
        return age_ttls(hit[2], int(now - hit[1]))  # TTLs count down while cached

    def _put(self, key: tuple[bytes, int], resp: bytes) -> None:
        try:
            msg = dns.message.from_wire(resp)
        except dns.exception.DNSException:
            return
        rc = msg.rcode()
        if rc not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return
        if msg.answer and rc == dns.rcode.NOERROR:
            ttl = min(rrs.ttl for rrs in msg.answer)
        else:
            soa = [rrs for rrs in msg.authority if rrs.rdtype == dns.rdatatype.SOA]
            if not soa:
                return
            ttl = min(soa[0].ttl, soa[0][0].minimum)
        if ttl <= 0:
            return
        if len(self._cache) >= MAX_CACHE:
            self._cache.clear()
        now = time.monotonic()
        self._cache[key] = (now + min(ttl, MAX_TTL), now, resp)

    async def forward(self, f: Forward, responder: Responder) -> bytes | None:
        """Answer a ``Forward`` decision from the responder."""
        q = f.query
        if q.labels and q.labels[0] == self._probe_label:
            self.probe_seen += 1
            return responder.error(q, 5)  # our own loop probe came back: refuse it
        if f.target is not None:
            return await self._external(f, responder)
        edns = q.edns
        wire = q.qid + struct.pack("!HHHHH", q.flags & 0x0110, 1, 0, 0, 1 if edns else 0) + q.question
        if edns is not None:
            wire += b"\x00" + struct.pack("!HHBBHH", 41, max(512, min(edns.udp_size, 1232)), 0, 0,
                                          0x8000 if edns.do else 0, 0)
        key = (q.question[:-4].lower() + q.question[-4:], (edns.udp_size if edns else 0) << 1 | bool(edns and edns.do))
        resp = self._get(key)
        if resp is None:
            self.misses += 1
            try:
                resp = await self.query(wire)
            except Exception:
                return responder.error(q, SERVFAIL)
            self._put(key, resp)
        # our ID and the client's question (same length, client's case)
        out = q.qid + resp[2:12] + q.question + resp[12 + len(q.question):]
        responder.cell(q.qtype, out[3] & 0x0F)[0] += 1
        if f.transport == "udp" and len(out) > f.limit:
            opt = b"" if edns is None else opt_record(responder.max_udp, edns.do)
            return (q.qid + bytes((out[2] | 0x02, out[3])) + struct.pack("!HHHH", 1, 0, 0, 1 if opt else 0)
                    + q.question + opt)
        return out

    async def _external(self, f: Forward, responder: Responder) -> bytes:
        q = f.query
        assert f.target is not None
        target = ".".join(f.target) + "."
        key = (target.encode() + b"/ext", q.qtype)
        resp = self._get(key)
        if resp is None:
            self.misses += 1
            msg = dns.message.make_query(target, q.qtype, use_edns=0, payload=1232)
            msg.id = random.getrandbits(16)
            try:
                resp = await self.query(msg.to_wire())
            except Exception:
                return responder.render_records(q, SERVFAIL, list(f.prefix), f.transport, f.limit)
            self._put(key, resp)
        try:
            up = dns.message.from_wire(resp)
        except dns.exception.DNSException:
            return responder.render_records(q, SERVFAIL, list(f.prefix), f.transport, f.limit)
        records = list(f.prefix)
        for rrs in up.answer:
            name = tuple(rrs.name.to_text(omit_final_dot=True).lower().split("."))
            for rd in rrs:
                if rrs.rdtype in (A, AAAA):
                    records.append(RR(name, rrs.rdtype, rrs.ttl, rd.address))
                elif rrs.rdtype == CNAME:
                    records.append(RR(name, CNAME, rrs.ttl,
                                      tuple(rd.target.to_text(omit_final_dot=True).lower().split("."))))
        return responder.render_records(q, up.rcode() & 0x0F, records, f.transport, f.limit)

    async def probe(self) -> list[tuple[str, int]]:
        """Loop detection, dynamic part: ask each upstream for a random name; the caller
        notices if it arrives back at us (``forward`` refuses it and we drop the upstream)."""
        msg = dns.message.make_query(self.probe_name + ".", "HINFO")
        looped = []
        # only resolvers on this host can hand the query back to us (systemd-resolved style)
        for up in [u for u in self.upstreams if u[0].startswith("127.") or u[0] == "::1"]:
            before = self.probe_seen
            try:
                await self._udp(msg.to_wire(), *up)
            except Exception:
                pass
            if self.probe_seen > before:
                looped.append(up)
                self.upstreams.remove(up)
                self.dropped.append(up)
        return looped
