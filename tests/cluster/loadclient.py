"""The steady load one pod runs (stdlib only; started as the pod's command, so it runs in the pod's
network namespace with the pod's resolv.conf).

Every ``1/rate`` seconds it sends one HTTP GET to a ClusterIP (2.5 s deadline: one lost SYN is
retransmitted after 1 s, see ``HTTP_TIMEOUT``) and one DNS A query for a Service name to the pod's
nameserver (1 s deadline), and appends one line per request to ``--out``::

    <unix time sent> http|dns ok|fail <ms> <detail>

A DNS reply counts as ok only if it is a well-formed response to *this* query: same ID, the QR bit
set (``dig`` warns "query response not set" otherwise; the detail is then ``noqr``), NOERROR, and
its A records are exactly ``--dns-want``. It stops after ``--duration`` seconds or when ``--stop``
exists.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import struct
import time

# A new connection whose SYN is lost is retried by the kernel after 1 s (then 3 s): the deadline covers
# one retransmission, as a client with default socket settings would wait; a black hole (a rule to a
# dead pod) still fails every request.
HTTP_TIMEOUT = 2.5


def dns_query(qid: int, name: str) -> bytes:
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", 1, 1)


def _skip_name(msg: bytes, i: int) -> int:
    while True:
        n = msg[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        i += 1 + n


def check_reply(msg: bytes, qid: int, want: set[str]) -> str:
    """"" if ``msg`` is the right answer to query ``qid``, else why not."""
    if len(msg) < 12:
        return "short"
    rid, flags, qd, an, _, _ = struct.unpack("!HHHHHH", msg[:12])
    if rid != qid:
        return "badid"
    if not flags & 0x8000:
        return "noqr"
    if flags & 0xF:
        return f"rcode{flags & 0xF}"
    i = 12
    for _ in range(qd):
        i = _skip_name(msg, i) + 4
    got = set()
    for _ in range(an):
        i = _skip_name(msg, i)
        rtype, _, _, rdlen = struct.unpack("!HHIH", msg[i:i + 10])
        i += 10
        if rtype == 1 and rdlen == 4:
            got.add(socket.inet_ntoa(msg[i:i + 4]))
        i += rdlen
    return "" if got == want else "answer:" + ",".join(sorted(got))


def nameserver(path: str = "/etc/resolv.conf") -> str:
    with open(path) as f:
        for line in f:
            parts = line.split()
            if parts[:1] == ["nameserver"] and len(parts) > 1:
                return parts[1]
    raise SystemExit("no nameserver in " + path)


def http_once(ip: str, port: int, timeout: float = HTTP_TIMEOUT) -> tuple[bool, str]:
    """One GET on a new connection within ``timeout`` seconds; the detail of a failure says whether
    it was the connect or the exchange that failed."""
    deadline = time.monotonic() + timeout
    phase = "connect"
    try:
        with socket.create_connection((ip, port), timeout=timeout) as s:
            phase = "read"
            s.settimeout(max(0.01, deadline - time.monotonic()))
            s.sendall(b"GET / HTTP/1.0\r\nHost: load\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
                s.settimeout(max(0.01, deadline - time.monotonic()))
    except OSError as e:
        return False, f"{phase}:{type(e).__name__}"
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or head.split()[1:2] != [b"200"]:
        return False, "status:" + head[:20].decode(errors="replace")
    return True, body.decode(errors="replace").strip().replace(" ", "_")[:60] or "-"


def dns_once(server: str, name: str, want: set[str]) -> tuple[bool, str]:
    qid = random.randrange(1 << 16)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        try:
            s.sendto(dns_query(qid, name), (server, 53))
            msg = s.recv(4096)
        except OSError as e:
            return False, type(e).__name__
    why = check_reply(msg, qid, want)
    return (not why), (why or "-")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", required=True, help="IP:PORT")
    ap.add_argument("--dns-name", required=True)
    ap.add_argument("--dns-want", required=True, help="comma-separated A records the answer must hold")
    ap.add_argument("--out", required=True)
    ap.add_argument("--stop", required=True)
    ap.add_argument("--rate", type=float, default=5.0)
    ap.add_argument("--duration", type=float, default=600.0)
    a = ap.parse_args()
    ip, _, port = a.http.rpartition(":")
    want = set(a.dns_want.split(","))
    server = nameserver()
    end = time.monotonic() + a.duration
    period = 1.0 / a.rate
    with open(a.out, "a", buffering=1) as out:
        while time.monotonic() < end and not os.path.exists(a.stop):
            t0 = time.monotonic()
            for kind, fn in (("http", lambda: http_once(ip, int(port))),
                             ("dns", lambda: dns_once(server, a.dns_name, want))):
                s, sent = time.monotonic(), time.time()
                ok, detail = fn()
                out.write(f"{sent:.3f} {kind} {'ok' if ok else 'fail'} "
                          f"{(time.monotonic() - s) * 1000:.1f} {detail}\n")
            time.sleep(max(0.0, period - (time.monotonic() - t0)))


if __name__ == "__main__":
    main()
