"""The netfilter netlink socket (I/O): sends batches made by :mod:`nft_encode`, lists names.

:class:`NetlinkSession` is a netfilter netlink socket opened inside a network namespace. Batch
messages ask for no ACK (100k ACKs would overflow the socket); a GETGEN request sent right
after the batch is the barrier: the kernel answers it only after it has processed (and
reported any error of) the whole batch.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterable, Sequence

from servicenet.common.netns import run_in_netns
from servicenet.proxy import nft_live
from servicenet.proxy.nft_commands import Command
from servicenet.proxy.nft_encode import (
    F_ACK,
    F_DUMP,
    F_REQUEST,
    FAMILIES,
    GETCHAIN,
    GETGEN,
    GETRULE,
    GETSET,
    GETSETELEM,
    GETTABLE,
    NFNL_SUBSYS_NFTABLES,
    nfmsg,
    s,
)
from servicenet.proxy.nft_encode import encode as encode_batch
from servicenet.proxy.nft_live import LiveTable

NETLINK_NETFILTER = 12
NLM_F_DUMP_INTR = 0x10
_NLMSG = struct.Struct("=IHHII")
_HDR = struct.Struct("=HH")


class NetlinkError(OSError):
    """The kernel rejected the batch."""


class NetlinkSession:
    """A netfilter netlink socket bound inside ``netns`` (None: the current namespace)."""

    def __init__(self, netns: str | None) -> None:
        # in a short-lived thread that joins the namespace: a thread never has to switch back
        # (which a user-namespace root may not do: the host's namespace is not its own)
        self.sock = self._open() if netns is None else run_in_netns(netns, self._open)
        self._seq = 1
        self._sndbuf = 0

    @staticmethod
    def _open() -> socket.socket:
        sk = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            sk.setsockopt(socket.SOL_SOCKET, 33, 1 << 24)  # SO_RCVBUFFORCE: room for error reports
        except PermissionError:  # needs CAP_NET_ADMIN of the host (absent in a user namespace)
            sk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
        sk.bind((0, 0))
        sk.settimeout(60)
        return sk

    def apply(self, cmds: Sequence[Command], family: str = "ip", table: str = "kube-proxy") -> int:
        """Encode and send ``cmds`` as one batch (atomic); returns the number of messages. Blocking."""
        return self.send(*encode_batch(cmds, family, table, self.next_seq()))

    def next_seq(self) -> int:
        return self._seq

    def reserve(self, seqs: list[int]) -> None:
        """Skip the sequence numbers of a batch encoded but not sent yet (to encode the next one)."""
        if seqs:
            self._seq = max(self._seq, seqs[-1] + 3)  # batch end, barrier

    def send(self, batch: bytes, seqs: list[int]) -> int:
        """Send a batch made by :func:`nft_encode.encode` (with ``seq=next_seq()``); wait until it is processed.

        A GETGEN request (with ACK) follows the batch; its answer arrives after every error
        the batch produced, so errors for the batch's sequence numbers, or for the batch
        itself (a failed commit), are all collected by then.
        """
        barrier = (seqs[-1] if seqs else self._seq) + 2
        self._seq = max(self._seq, barrier + 1)
        if not seqs:
            return 0
        need = len(batch) + 4096
        if need > self._sndbuf:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, 32, need)  # SO_SNDBUFFORCE: the batch goes in one send
            except PermissionError:  # in a user namespace: up to net.core.wmem_max (batches beyond fail)
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, need)
            self._sndbuf = need
        self.sock.send(batch)
        self.sock.send(nfmsg((NFNL_SUBSYS_NFTABLES << 8) | GETGEN, F_REQUEST | F_ACK, barrier, 0, b""))
        first, last = seqs[0] - 1, seqs[-1] + 1
        errors: list[tuple[int, int]] = []
        done = False
        while not done:
            try:
                data = self.sock.recv(1 << 20)
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # too many error reports: the batch failed anyway
                    self._drain(barrier)
                    raise NetlinkError(errno.ENOBUFS, "batch rejected (error reports overflowed)") from None
                raise
            for kind, seq, err in _replies(data):
                if seq == barrier:
                    done = done or kind == 2  # the GETGEN ACK comes last
                elif kind == 2 and err and first <= seq <= last:
                    errors.append((seq, err))
        if errors:
            seq, err = errors[0]
            where = "the commit" if seq in (first, last) else f"message {seq - first} of {len(seqs)}"
            raise NetlinkError(-err, f"{os.strerror(-err)} ({len(errors)} errors; first at {where})")
        return len(seqs)

    def names(self, what: str, family: str = "ip", table: str = "kube-proxy") -> list[str] | None:
        """Names of the chains (``what="chains"``) or sets and maps (``"sets"``) of ``table``,
        from a netlink dump (declarations only: no rules, no elements), or None if there is no
        such table. Blocking."""
        kind, name_attr = (GETCHAIN, 3) if what == "chains" else (GETSET, 2)
        bodies = self.dump(kind, family, s(1, table))
        if bodies is None:
            return None
        out: list[str] = []
        for body in bodies:
            attrs = _attrs(body)
            if attrs.get(1, b"").rstrip(b"\0").decode() == table and name_attr in attrs:
                out.append(attrs[name_attr].rstrip(b"\0").decode())
        return out

    def dump(self, kind: int, family: str, body: bytes) -> list[bytes] | None:
        """The messages of a netlink dump request (``kind``: GETCHAIN, GETRULE, GETSETELEM, ...,
        filtered by the attributes in ``body``), each without its netlink and nfgenmsg headers;
        None if the kernel says there is no such object (ENOENT). Blocking."""
        seq = self._seq
        self._seq += 1
        self.sock.send(nfmsg((NFNL_SUBSYS_NFTABLES << 8) | kind, F_REQUEST | F_DUMP, seq, FAMILIES[family], body))
        out: list[bytes] = []
        interrupted = False
        while True:
            data = self.sock.recv(1 << 20)
            off = 0
            while off + 16 <= len(data):
                ln, typ, flags, mseq, _pid = _NLMSG.unpack_from(data, off)
                if ln < 16:
                    break
                if mseq == seq:
                    interrupted = interrupted or bool(flags & NLM_F_DUMP_INTR)
                    if typ == 3:  # NLMSG_DONE
                        if interrupted:  # the ruleset changed while it was being dumped
                            raise NetlinkError(errno.EINTR, "dump interrupted by a ruleset change")
                        return out
                    if typ == 2:  # NLMSG_ERROR
                        err = struct.unpack_from("=i", data, off + 16)[0]
                        if err == -errno.ENOENT:
                            return None
                        raise NetlinkError(-err, f"dump failed: {os.strerror(-err)}")
                    out.append(data[off + 20:off + ln])
                off += (ln + 3) & ~3

    def table(self, family: str, table: str, element_sets: Iterable[str],
              fixed_chains: Iterable[str] = ()) -> LiveTable | None:
        """What ``table`` holds now (see :class:`nft_live.LiveTable`): chains, sets, every rule,
        and the elements of those of ``element_sets`` that exist; None if there is no table.
        Blocking.

        The elements come first: most of their cost is the kernel's (a set's dump walks it
        from its start for every message), during which a caller's other threads have the
        interpreter; the chains and rules cost more parsing here."""
        tbl = s(1, table)
        sets = self.dump(GETSET, family, tbl)
        if sets is None:
            return None
        declared = nft_live.parse_table(table, (), sets, ()).sets
        elements = self.elements(family, table, [n for n in element_sets if n in declared])
        chains = self.dump(GETCHAIN, family, tbl)
        rules = self.dump(GETRULE, family, tbl)
        if chains is None or rules is None:
            return None
        live = nft_live.parse_table(table, chains, sets, rules)
        live.elements.update((n, b) for n, b in elements.items() if n in live.sets)
        for name, flags in live.sets.items():
            if flags & nft_live.SET_ANONYMOUS:  # (the rules' anonymous maps: few, one per affinity service)
                bodies = self.dump(GETSETELEM, family, tbl + s(2, name))
                live.anonymous[name] = frozenset(nft_live.split_elements(nft_live.element_blobs(bodies or [])))
        return live

    def elements(self, family: str, table: str, names: Iterable[str]) -> dict[str, list[bytes]]:
        """The element lists (one per dump message) of each of the sets or maps ``names`` that
        exists. Blocking."""
        out: dict[str, list[bytes]] = {}
        tbl = s(1, table)
        for name in names:
            bodies = self.dump(GETSETELEM, family, tbl + s(2, name))
            if bodies is not None:
                out[name] = nft_live.element_blobs(bodies)
        return out

    def chain_rules(self, family: str, table: str, chains: Iterable[str]) -> dict[str, list[nft_live.LiveRule]]:
        """The rules of each of ``chains`` (a dump per chain). Blocking."""
        out: dict[str, list[nft_live.LiveRule]] = {}
        for c in chains:
            bodies = self.dump(GETRULE, family, s(1, table) + s(2, c)) or []
            out[c] = [r for _, r in nft_live.parse_rules(table, bodies)]
        return out

    def _ask(self, kind: int, family_num: int, body: bytes, what: str) -> bytes | None:
        """One request, one answer: the answer's body (without its netlink and nfgenmsg headers), or
        None if the kernel says there is no such object (ENOENT). Blocking."""
        seq = self._seq
        self._seq += 1
        self.sock.send(nfmsg((NFNL_SUBSYS_NFTABLES << 8) | kind, F_REQUEST, seq, family_num, body))
        while True:
            data = self.sock.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                ln, typ, _flags, mseq, _pid = _NLMSG.unpack_from(data, off)
                if ln < 16:
                    break
                if mseq == seq:
                    if typ != 2:  # the object's description
                        return data[off + 20:off + ln]
                    err = struct.unpack_from("=i", data, off + 16)[0]
                    if err == -errno.ENOENT:
                        return None
                    raise NetlinkError(-err, f"{what} failed: {os.strerror(-err)}")
                off += (ln + 3) & ~3

    def has_table(self, family: str, table: str) -> bool:
        """Whether ``table`` exists (one GETTABLE request, no dump). Blocking."""
        return self._ask(GETTABLE, FAMILIES[family], s(1, table), "GETTABLE") is not None

    def generation(self) -> int:
        """The ruleset's generation id: every committed transaction (of any table) raises it. Blocking."""
        body = self._ask(GETGEN, 0, b"", "GETGEN")
        gen = _attrs(body).get(1) if body is not None else None
        if gen is None:
            raise NetlinkError(errno.EPROTO, "GETGEN answer without a generation id")
        return int(struct.unpack("!I", gen)[0])

    def _drain(self, barrier: int) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    continue
                return
            if any(seq == barrier and kind == 2 for kind, seq, _ in _replies(data)):
                return

    def close(self) -> None:
        self.sock.close()


def _attrs(data: bytes) -> dict[int, bytes]:
    """Top-level netlink attributes of a message body: type (nested flag cleared) -> payload."""
    out: dict[int, bytes] = {}
    off = 0
    while off + 4 <= len(data):
        ln, kind = _HDR.unpack_from(data, off)
        if ln < 4:
            break
        out[kind & 0x3FFF] = data[off + 4:off + ln]
        off += (ln + 3) & ~3
    return out


def _replies(data: bytes) -> Iterable[tuple[int, int, int]]:
    off = 0
    while off + 16 <= len(data):
        ln, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", data, off)
        err = struct.unpack_from("=i", data, off + 16)[0] if kind == 2 else 0
        yield kind, seq, err
        off += (ln + 3) & ~3
        if ln == 0:
            break
