"""The DNS responder: query bytes in, response bytes out (pure, no I/O).

Answers are rendered once per (lowercased qname, qtype, qclass) into a wire template —
flags, section counts and everything after the question. A query is then answered by
splicing its own ID, RD/CD bits, its question bytes (so the client's case is kept, and
names compressed against the question inherit it) and the OPT record. Watch events
invalidate exactly the templates built from the objects they touched.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .records import CNAME, NOERROR, RR, SERVFAIL, DepKey, Labels, RecordIndex, Result
from .wire import CLASS_IN, OPT_TYPE, Encoder, FormError, Query, opt_record, parse_query

Transport = Literal["udp", "tcp"]
FORMERR, NOTIMP, REFUSED, BADVERS = 1, 4, 5, 16
AXFR, IXFR, MAILB, MAILA, ANY = 252, 251, 253, 254, 255
QR, AA, TC, RA = 0x8000, 0x0400, 0x0200, 0x0080
_HD0 = b"\x00\x01\x00\x00\x00\x00\x00\x00"  # qd=1 an=0 ns=0 ar=0
_HD1 = b"\x00\x01\x00\x00\x00\x00\x00\x01"  # ... ar=1 (OPT)
MAX_CACHE = 200_000
MAX_EXACT = 50_000


@dataclass(frozen=True, slots=True)
class Forward:
    """The query must be answered (partly) by the upstream resolver."""

    query: Query
    transport: Transport
    limit: int
    prefix: tuple[RR, ...] = ()  # CNAME chain already answered from the zone
    target: Labels | None = None  # name to resolve upstream (None: the question itself)


class Responder:
    def __init__(self, index: RecordIndex, max_udp: int | None = None) -> None:
        self.index = index
        cfg = index.config
        self.max_udp = max(512, min(max_udp or cfg.max_udp, 4096))
        self.ra = RA if cfg.forward else 0
        self._cache: dict[bytes, tuple[int, int, bytes, bytes, bytes, list[int]]] = {}
        self._deps: dict[DepKey, list[bytes]] = {}
        self._opt = opt_record(self.max_udp, False)
        self._opt_do = opt_record(self.max_udp, True)
        self.stats: dict[tuple[int, int], list[int]] = {}  # (qtype, rcode) → [count]
        self.misses = 0
        self.internal_errors = 0
        self._exact: dict[bytes, tuple[bytes, list[int]]] = {}
        self._spliced: list[int] | None = None
        index.listeners.append(self.invalidate)

    # ------------------------------------------------------------ cache upkeep
    def invalidate(self, keys: Iterable[DepKey]) -> None:
        cache, deps = self._cache, self._deps
        self._exact.clear()
        for key in keys:
            if key == ("global",):
                cache.clear()
                deps.clear()
                return
            for ck in deps.pop(key, ()):
                cache.pop(ck, None)

    def cell(self, qtype: int, rcode: int) -> list[int]:
        c = self.stats.get((qtype, rcode))
        if c is None:
            c = self.stats[(qtype, rcode)] = [0]
        return c

    # ------------------------------------------------------------ entry points
    def answer(self, data: bytes, transport: Transport = "udp", max_udp: int | None = None) -> bytes | None:
        """Pure entry point: like ``handle`` but anything needing the upstream gets REFUSED
        (names outside the zone) or the in-zone part only (ExternalName CNAME)."""
        out = self.handle(data, transport, max_udp)
        if isinstance(out, Forward):
            if out.prefix:
                return self.render_records(out.query, NOERROR, list(out.prefix), out.transport, out.limit)
            return self.error(out.query, REFUSED)
        return out

    def handle_udp(self, data: bytes) -> bytes | Forward | None:
        """The UDP hot path: an exact-packet cache (everything but the ID) in front of
        ``handle``. Only answers spliced from a template are remembered; any index change
        clears it."""
        hit = self._exact.get(data[2:])
        if hit is not None:
            hit[1][0] += 1
            return data[:2] + hit[0]
        self._spliced = None
        out = self.handle(data, "udp")
        cell = self._spliced
        if cell is not None and out.__class__ is bytes:
            exact = self._exact
            if len(exact) >= MAX_EXACT:
                exact.clear()
            exact[data[2:]] = (out[2:], cell)  # type: ignore[index]
        return out

    def handle(self, data: bytes, transport: Transport = "udp",
               max_udp: int | None = None) -> bytes | Forward | None:
        """Answer one query. None = drop silently (unreadable header or a response)."""
        try:
            n = len(data)
            if n >= 17 and not data[2] & 0xF8:
                hd = data[4:12]
                e = data.find(0, 12)
                qend = e + 5
                if e >= 12 and qend <= n and (hd == _HD0 or hd == _HD1):
                    ent = self._cache.get(data[12:e + 1].lower() + data[e + 1:qend])
                    if ent is not None:
                        if hd == _HD0:
                            if qend == n:
                                return self._splice(data, qend, ent, transport, 512, None)
                        elif n >= qend + 11 and data[qend] == 0 and data[qend + 1] == 0 \
                                and data[qend + 2] == OPT_TYPE and data[qend + 6] == 0 \
                                and qend + 11 + (data[qend + 9] << 8 | data[qend + 10]) == n:
                            size = data[qend + 3] << 8 | data[qend + 4]
                            limit = self.max_udp if size >= self.max_udp else (size if size > 512 else 512)
                            if max_udp is not None and limit > max_udp:
                                limit = max(512, max_udp)
                            return self._splice(data, qend, ent, transport, limit, data[qend + 7] & 0x80)
            return self._slow(data, transport, max_udp)
        except Exception:  # never raise out of the responder
            self.internal_errors += 1
            return self._servfail(data)

    def _splice(self, data: bytes, qend: int, ent: tuple[int, int, bytes, bytes, bytes, list[int]],
                transport: Transport, limit: int, do: int | None) -> bytes:
        hi, lo, counts, counts_e, body, cell = ent
        cell[0] += 1
        self._spliced = cell
        flags = bytes((hi | (data[2] & 0x01), lo | (data[3] & 0x10)))
        if transport == "tcp" and qend + len(body) + 11 > 65535:
            limit, transport = 0, "udp"  # cannot fit one TCP message: answer truncated instead
        if do is None:
            if transport == "udp" and qend + len(body) > limit:
                return data[:2] + bytes((flags[0] | 0x02, flags[1])) + _HD0 + data[12:qend]
            return data[:2] + flags + counts + data[12:qend] + body
        opt = self._opt_do if do else self._opt
        if transport == "udp" and qend + len(body) + 11 > limit:
            return data[:2] + bytes((flags[0] | 0x02, flags[1])) + _HD1 + data[12:qend] + opt
        return data[:2] + flags + counts_e + data[12:qend] + body + opt

    # ------------------------------------------------------------ slow path
    def _slow(self, data: bytes, transport: Transport, max_udp: int | None) -> bytes | Forward | None:
        if len(data) < 12 or data[2] & 0x80:
            return None  # no readable header, or a response: never answer those
        opcode = (data[2] >> 3) & 0x0F
        try:
            q = parse_query(data)
        except FormError:
            return self._bare(data, FORMERR)
        if opcode != 0:
            return self.error(q, NOTIMP)
        if q.edns is not None and q.edns.version != 0:
            return self.error(q, BADVERS)
        if q.qclass != CLASS_IN:
            return self.error(q, REFUSED)
        if q.qtype == OPT_TYPE or q.qtype == 0:
            return self.error(q, FORMERR)
        if q.qtype in (MAILA, MAILB):
            return self.error(q, NOTIMP)
        limit = self._limit(q, transport, max_udp)
        idx = self.index
        if q.qtype in (AXFR, IXFR):
            if transport == "tcp" and idx.config.axfr and q.labels == idx.zone:
                return self.render_records(q, NOERROR, idx.axfr_records(), "tcp", 65535)
            return self.error(q, REFUSED)
        res = idx.resolve(q.labels, q.qtype)
        if res is None:
            return Forward(q, transport, limit) if idx.config.forward else self.error(q, REFUSED)
        if res.forward_target is not None:
            if idx.config.forward:
                return Forward(q, transport, limit, tuple(res.answer), res.forward_target)
            return self.render_records(q, res.rcode, res.answer, transport, limit)
        ent = self._template(q, res)
        if 0 not in q.qname_lower[:-1]:  # only names the fast path can match are cached
            self.misses += 1
            if len(self._cache) >= MAX_CACHE:
                self._cache.clear()
                self._deps.clear()
            key = q.question[:-4].lower() + q.question[-4:]
            self._cache[key] = ent
            for dep in res.deps:
                self._deps.setdefault(dep, []).append(key)
        qend = 12 + len(q.question)
        do = None if q.edns is None else int(q.edns.do)
        return self._splice(data[:qend], qend, ent, transport, limit, do)

    def _limit(self, q: Query, transport: Transport, max_udp: int | None) -> int:
        if transport == "tcp":
            return 65535
        if q.edns is None:
            return 512
        cap = self.max_udp if max_udp is None else max(512, min(self.max_udp, max_udp))
        return max(512, min(q.edns.udp_size, cap))

    def _template(self, q: Query, res: Result) -> tuple[int, int, bytes, bytes, bytes, list[int]]:
        flags = QR | AA | self.ra | (res.rcode & 0x0F)
        enc = Encoder(q.labels, 12 + len(q.question))
        for rr in res.answer:
            enc.rr(rr)
        for rr in res.authority:
            enc.rr(rr)
        for rr in res.additional:
            enc.rr(rr)
        an, ns, ar = len(res.answer), len(res.authority), len(res.additional)
        counts = struct.pack("!HHHH", 1, an, ns, ar)
        counts_e = struct.pack("!HHHH", 1, an, ns, ar + 1)
        return flags >> 8, flags & 0xFF, counts, counts_e, bytes(enc.buf), self.cell(q.qtype, res.rcode)

    # ------------------------------------------------------------ other answers
    def render_records(self, q: Query, rcode: int, records: list[RR], transport: Transport,
                       limit: int, authority: list[RR] | None = None) -> bytes:
        res = Result(rcode, list(records), list(authority or ()))
        ent = self._template(q, res)
        qend = 12 + len(q.question)
        head = q.qid + struct.pack("!H", q.flags) + b"\x00" * 8 + q.question
        return self._splice(head, qend, ent, transport, limit, None if q.edns is None else int(q.edns.do))

    def error(self, q: Query, rcode: int) -> bytes:
        """An error answer that echoes the question (and an OPT if the query had one)."""
        self.cell(q.qtype, rcode)[0] += 1
        flags = QR | self.ra | (q.flags & 0x7910) | (rcode & 0x0F)
        if q.edns is None:
            return q.qid + struct.pack("!HHHHH", flags, 1, 0, 0, 0) + q.question
        return (q.qid + struct.pack("!HHHHH", flags, 1, 0, 0, 1) + q.question
                + opt_record(self.max_udp, q.edns.do, rcode >> 4))

    def _bare(self, data: bytes, rcode: int) -> bytes:
        self.cell(-1, rcode)[0] += 1
        flags = QR | self.ra | ((data[2] << 8 | data[3]) & 0x7910) | rcode
        return data[:2] + struct.pack("!HHHHH", flags, 0, 0, 0, 0)

    def _servfail(self, data: bytes) -> bytes | None:
        try:
            if len(data) < 12 or data[2] & 0x80:
                return None
            return self._bare(data, SERVFAIL)
        except Exception:
            return None


__all__ = ["Forward", "Responder", "CNAME"]
