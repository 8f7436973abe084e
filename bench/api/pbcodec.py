"""CPU of the protobuf codec on the create benchmark's pod, C paths against pure Python, and a leak check.

    .venv/bin/python -m bench.api.pbcodec [-n 3000] [--leak 200000]

Starts one API server only to learn the stored form of ``bench.api.objects.pod`` (defaults, uid,
managedFields, the ServiceAccount volume), then measures in this process, with ``time.thread_time``:
decoding the protobuf request body (as ``negotiation.decode_body`` does) and encoding the stored pod
as the protobuf answer (as ``negotiation.protobuf_response`` does), for ``-n`` distinct pods so the
kept sub-message conversions hit as often as in the create benchmark. ``--leak N``: N encodes and
decodes through the C paths with the process's RSS read before and after (it must stay flat).
"""

from __future__ import annotations

import argparse
import copy
import gc
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.api import objects
from bench.api.run import api, ensure_namespaces
from bench.api.server_proc import ServerProc, rss_bytes
from servicenet.api.pb import memo, native, wire


def stored_pod() -> dict[str, Any]:
    """The benchmark pod as the server stores it (one create through a real server)."""
    work = Path(tempfile.mkdtemp(prefix="sn-pbcodec-"))
    srv = ServerProc(work)
    try:
        target = srv.start()
        ensure_namespaces(target, ["p"])

        async def create(c: Any) -> bytes:
            data: bytes = await c.request("POST", "/api/v1/namespaces/p/pods", orjson.dumps(objects.pod("x-00000")))
            return data
        out: dict[str, Any] = orjson.loads(api(target, create))
        return out
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)


def variants(stored: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """``n`` stored pods that differ where a create's do: name, uid, time, the token volume's name."""
    out = []
    for i in range(n):
        p = copy.deepcopy(stored)
        md = p["metadata"]
        md["name"] = f"x-{i:05d}"
        md["uid"] = f"{i:08x}-0000-4000-8000-000000000000"
        md["resourceVersion"] = str(100 + i)
        md["creationTimestamp"] = f"2026-12-04T10:{i // 60 % 60:02d}:{i % 60:02d}Z"
        for v in p["spec"].get("volumes", []):
            if v["name"].startswith("kube-api-access-"):
                old = v["name"]
                v["name"] = f"kube-api-access-{i:05x}"
                for c in p["spec"]["containers"]:
                    for m in c.get("volumeMounts", []):
                        if m["name"] == old:
                            m["name"] = v["name"]
        out.append(p)
    return out


def per_op(fn: Any, items: list[Any]) -> float:
    """µs of CPU per call of ``fn`` over ``items``."""
    gc.collect()
    t = time.thread_time()
    for it in items:
        fn(it)
    return (time.thread_time() - t) / len(items) * 1e6


def rss_mib() -> float:
    import os

    return rss_bytes(os.getpid())[0] / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--leak", type=int, default=0, help="encode+decode loops for the RSS check (0: skip)")
    args = ap.parse_args(argv)
    stored = stored_pod()
    answers = variants(stored, args.n)
    bodies = [wire.encode(objects.pod(f"x-{i:05d}", i)) for i in range(args.n)]
    print(f"stored pod: {len(orjson.dumps(stored))} B JSON, {len(wire.encode(stored))} B protobuf; "
          f"request body {len(bodies[0])} B; C extension built: {native.BUILT}")
    rows = []
    for label, on in (("python", False), ("C", True)):
        if on and not native.BUILT:
            continue
        wire.use_native(on)
        memo.clear()
        wire.encode(answers[0])
        wire.decode(bodies[0])  # plans built
        enc = per_op(wire.encode, answers)
        dec = per_op(wire.decode, bodies)
        rows.append((label, enc, dec))
        print(f"{label:6s} encode stored pod {enc:7.1f} us   decode request body {dec:7.1f} us")
    if len(rows) == 2:
        (_, pe, pd), (_, ce, cd) = rows
        print(f"C/python: encode {ce / pe:.2f}x, decode {cd / pd:.2f}x")
    if args.leak and native.BUILT:
        wire.use_native(True)
        raw = wire.encode(answers[0])
        for _ in range(2000):  # warm: plans, caches, allocator pools
            wire.decode(wire.encode(answers[0]))
        gc.collect()
        before = rss_mib()
        mid = 0.0
        for i in range(args.leak):
            wire.decode(raw)
            wire.encode(answers[i % len(answers)])
            if i == args.leak // 10:
                mid = rss_mib()
        gc.collect()
        after = rss_mib()
        print(f"leak check: {args.leak} encode+decode pairs through C: RSS {before:.1f} -> {mid:.1f} (10%) -> "
              f"{after:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
