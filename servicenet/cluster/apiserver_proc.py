"""One API server "machine" of ``servicenet up --apiservers M`` (run as
``python -m servicenet.cluster.apiserver_proc``).

The process is an ordinary ``servicenet apiserver`` on etcd, listening on ``127.0.0.1:<port>`` of
the host namespace, plus what makes it a machine on the cluster's LAN:

* it also serves on ``<its LAN IP>:6443`` inside its namespace ``sn-<id>-api<j>`` (pods reach the
  API there through the ``kubernetes`` Service);
* its etcd traffic leaves from that namespace (:class:`~servicenet.cluster.relay.Relay`);
* it publishes its LAN address as an endpoint of the ``kubernetes`` Service
  (:class:`~servicenet.cluster.endpointleases.EndpointLeaseReconciler`).
"""

from __future__ import annotations

import argparse
import socket
import sys

from aiohttp import web

from servicenet import cli
from servicenet.apiserver.server import ApiServer
from servicenet.common import log
from servicenet.common.netns import socket_in_netns
from servicenet.common.runner import wait_for_signal
from servicenet.store import StoreError

from .endpointleases import INTERVAL, TTL, EndpointLeaseReconciler
from .relay import Relay

_log = log.get("cluster.apiserver")
SHUTDOWN_TIMEOUT = 3.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="servicenet-cluster-apiserver", description=__doc__)
    cli._api_args(p)
    p.add_argument("--netns", required=True, help="this API server's namespace on the LAN")
    p.add_argument("--lan-listen", type=cli._hostport, required=True, metavar="IP:PORT",
                   help="where it serves inside --netns (the kubernetes Service's endpoint)")
    p.add_argument("--endpoint-reconciler-interval", type=float, default=INTERVAL)
    p.add_argument("--endpoint-reconciler-ttl", type=int, default=TTL)
    return p


async def serve(args: argparse.Namespace) -> int:
    members = [cli._hostport(u.split("://", 1)[-1]) for u in args.etcd_servers.split(",") if u]
    relay = Relay(args.netns, [[m] for m in members])
    local = await relay.start()
    args.etcd_servers = ",".join(f"https://{h}:{p}" for h, p in local)
    config = cli._api_config(args)
    config.shutdown_timeout = SHUTDOWN_TIMEOUT  # other processes' watches would hold a stop for 60 s
    api = ApiServer(config)
    site: web.BaseSite | None = None
    reconciler: EndpointLeaseReconciler | None = None
    try:
        try:
            await api.start()
        except StoreError as exc:
            print(f"servicenet apiserver: storage: {exc}", file=sys.stderr)
            return 1
        ip, port = args.lan_listen
        sock = socket_in_netns(args.netns, socket.AF_INET, socket.SOCK_STREAM, bind=(ip, port))
        sock.listen(1024)
        sock.setblocking(False)
        assert api._runner is not None
        site = web.SockSite(api._runner, sock, ssl_context=api.ssl_context)
        await site.start()
        reconciler = EndpointLeaseReconciler(api, ip, port, args.endpoint_reconciler_interval,
                                             args.endpoint_reconciler_ttl)
        await reconciler.start()
        print(f"servicenet apiserver listening on {api.url} and https://{ip}:{port} (netns {args.netns})", flush=True)
        await wait_for_signal()
    finally:
        if reconciler is not None:
            await reconciler.stop()
        if site is not None:
            await site.stop()
        await api.stop()
        await relay.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log.setup(args.log_level)
    return cli._run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
