"""Run servicenet DNS from a JSON file of Kubernetes objects (no API server), for benchmarks.

    python bench/dns/serve.py objects.json --listen 127.0.0.1:1053 --workers 1
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import signal
import sys

from servicenet.dns.model import DnsConfig
from servicenet.dns.records import RecordIndex
from servicenet.dns.server import DnsServer, parse_listen


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("objects")
    p.add_argument("--listen", default="127.0.0.1:1053")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--health-listen", default=None)
    p.add_argument("--reuseport", action="store_true", help="workers bind their own SO_REUSEPORT sockets")
    args = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def run() -> None:
        with open(args.objects) as f:
            objects = json.load(f)
        index = RecordIndex(DnsConfig(forward=False))
        index.load((o["kind"], o["object"]) for o in objects)
        index.set_synced(True)
        del objects  # the index keeps only its own frozen records
        gc.collect()
        server = DnsServer(index=index, listen=[parse_listen(args.listen)], workers=args.workers,
                           share_sockets=not args.reuseport,
                           health_listen=parse_listen(args.health_listen) if args.health_listen else None)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        print("READY", server.bound[0][2], flush=True)
        sys.stdout.flush()
        try:
            await stop.wait()
        finally:
            await server.stop()

    asyncio.run(run())


if __name__ == "__main__":
    main()
