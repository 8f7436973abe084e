"""``servicenet ingress``: the ingress controller alone against any API server; and its ``up`` wiring."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from servicenet.client import ApiClient, ApiError
from servicenet.common import log
from servicenet.common.runner import main_args, run_until_signal
from servicenet.ingress.controller import IngressConfig, IngressController
from servicenet.ingress.gateway_controller import GatewayConfig, GatewayController, WithGateway
from servicenet.ingress.model import CONTROLLER_NAME, DEFAULT_CLASS_ANNOTATION

_log = log.get("ingress")


async def ensure_class(client: ApiClient, name: str = "servicenet") -> None:
    """Create the IngressClass ``name`` (the default class) unless it exists."""
    body = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": name, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
            "spec": {"controller": CONTROLLER_NAME}}
    try:
        await client.create("networking.k8s.io/v1", "ingressclasses", None, body)
    except ApiError as exc:
        if exc.status != 409:
            raise


class UpIngress(IngressController):
    """The controller as ``servicenet up`` runs it: also creates the ``servicenet`` IngressClass
    (with ``admin``, the cluster's own client: the controller's identity may only read classes)."""

    def __init__(self, client: ApiClient, config: IngressConfig, admin: ApiClient | None = None) -> None:
        super().__init__(client, config)
        self.admin = admin or client

    async def start(self) -> None:
        await ensure_class(self.admin)
        await super().start()


def build_for_up(client: ApiClient, args: Any, network: str, admin: ApiClient | None = None) -> WithGateway:
    netns = network == "netns"
    http = getattr(args, "ingress_http_port", None) or (80 if netns else 8080)
    https = getattr(args, "ingress_https_port", None) or (443 if netns else 8443)
    cfg = IngressConfig(state_dir=Path(args.data_dir) / "ingress", http_port=http, https_port=https,
                        node_name=getattr(args, "node_name", "node-1") if netns else "",
                        access_log=not getattr(args, "ingress_no_access_log", False),
                        access_log_file=(None if getattr(args, "ingress_no_access_log", False)
                                         else Path(args.data_dir) / "ingress" / "access.log"))
    gateway = GatewayController(client, GatewayConfig(state_dir=Path(args.data_dir) / "gateway"))
    return WithGateway(UpIngress(client, cfg, admin), gateway, wait_for_api=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="servicenet ingress", description="ingress controller (HAProxy data plane)")
    p.add_argument("--kubeconfig", default=None)
    p.add_argument("--state-dir", type=Path, default=Path.home() / ".servicenet" / "ingress-standalone")
    p.add_argument("--http-port", type=int, default=8080)
    p.add_argument("--https-port", type=int, default=8443)
    p.add_argument("--listen", action="append", default=None, help="address to listen on (repeat)")
    p.add_argument("--node-name", default="", help="follow this Node: listen on its InternalIP in its netns")
    p.add_argument("--health-listen", default="127.0.0.1:10254")
    p.add_argument("--access-log", type=Path, default=None, help="also append JSON access log lines here")
    p.add_argument("--no-access-log", action="store_true",
                   help="no per-request log line and no per-route metrics (less CPU per request; docs/ingress.md)")
    p.add_argument("--create-class", action="store_true", help="create the servicenet IngressClass")
    p.add_argument("--gateway", action="store_true",
                   help="also serve the Gateway API (the gateway.networking.k8s.io CRDs must be installed)")
    p.add_argument("--log-level", default="info")
    return p


def config(args: argparse.Namespace, health: tuple[str, int]) -> IngressConfig:
    """The controller's configuration from ``servicenet ingress``'s arguments."""
    if args.no_access_log and args.access_log is not None:
        raise SystemExit("servicenet ingress: --access-log and --no-access-log exclude each other")
    return IngressConfig(state_dir=args.state_dir, http_port=args.http_port, https_port=args.https_port,
                         addresses=tuple(args.listen or ()), node_name=args.node_name,
                         health=health, access_log_file=args.access_log, access_log=not args.no_access_log)


def main(argv: list[str]) -> int:
    args, health = main_args(_parser(), argv)
    cfg = config(args, health)

    async def run() -> None:
        client = ApiClient.from_kubeconfig(args.kubeconfig)
        ctl: Any = (UpIngress if args.create_class else IngressController)(client, cfg)
        if args.gateway:
            gw = GatewayController(client, GatewayConfig(state_dir=args.state_dir / "gateway",
                                                         addresses=tuple(args.listen or ("127.0.0.1",)),
                                                         reserved_ports=(args.http_port, args.https_port)))
            ctl = WithGateway(ctl, gw)

        def started() -> None:
            for k, v in ctl.describe().items():
                print(f"servicenet ingress {k:<6} {v}", flush=True)

        await run_until_signal(ctl, closing=[client.close], started=started)

    asyncio.run(run())
    return 0
