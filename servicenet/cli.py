"""``servicenet`` command line: up, apiserver, kubeconfig, version and the component commands."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import sys
from pathlib import Path
from typing import Any

from servicenet import __version__, rootless
from servicenet.api import wellknown as wk
from servicenet.client import ApiClient
from servicenet.cluster import up_nodes
from servicenet.common import log
from servicenet.common.runner import signal_event, start_unless, wait_for_signal

# The control-plane modules load only when `apiserver` or `up` runs: a component process
# started through this CLI (dns, proxy, node, ...) then carries only its own code. Importing
# the API server (protobuf descriptors, CEL, schemas) cost every component about 33 MiB RSS.
APISERVER_MODULE = "servicenet.apiserver.server"
UP_MODULE = "servicenet.up"
UP_CLUSTER_MODULE = "servicenet.cluster.up_cluster"

DEFAULT_DATA_DIR = Path(os.environ.get("SERVICENET_DATA_DIR", str(Path.home() / ".servicenet")))

# component command → module with ``main(argv) -> int``
COMPONENT_COMMANDS = {
    "dns": "servicenet.dns.server",
    "proxy": "servicenet.proxy.server",
    "node": "servicenet.node.agent",
    "controller-manager": "servicenet.controllers.manager",
    "ingress": "servicenet.ingress.cli",
}
# tool command → module with ``main(argv) -> int``
TOOL_COMMANDS = {
    "endpoints": ("servicenet.lb.cli", "print the endpoint set the client-side load balancer sees"),
    "store": ("servicenet.apiserver.migrate", "storage tools: store migrate --from sqlite:DIR --to etcd:URLS"),
}


def _hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {s!r}")
    return host.strip("[]"), int(port)


def _duration(text: str) -> float:
    """A Go duration (``1h0m0s``, ``90s``) or plain seconds, positive."""
    try:
        seconds: float | None = float(text)
    except ValueError:
        seconds = importlib.import_module("servicenet.apiserver.flowcontrol").parse_duration(text)
    if seconds is None or seconds <= 0:
        raise argparse.ArgumentTypeError(f"not a positive duration: {text!r} (e.g. 1h0m0s, 90s)")
    return seconds


def _api_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="state directory (default ~/.servicenet)")
    p.add_argument("--api-listen", type=_hostport, default=("127.0.0.1", 6443), metavar="HOST:PORT")
    p.add_argument("--storage", choices=["sqlite", "memory", "etcd"], default="sqlite")
    p.add_argument("--etcd-servers", default="", help="etcd client URLs, comma-separated (--storage etcd)")
    p.add_argument("--etcd-prefix", default="", help="prefix before every /registry/... key in etcd")
    p.add_argument("--etcd-cafile", type=Path, default=None, help="CA that signed etcd's serving certificate")
    p.add_argument("--etcd-certfile", type=Path, default=None, help="client certificate for etcd")
    p.add_argument("--etcd-keyfile", type=Path, default=None, help="client key for etcd")
    p.add_argument("--service-cidr", action="append", default=None,
                   help="service CIDR (repeat for dual-stack); default by network mode")
    p.add_argument("--node-port-range", default=f"{wk.NODE_PORT_RANGE[0]}-{wk.NODE_PORT_RANGE[1]}")
    p.add_argument("--log-level", default="info")
    p.add_argument("--encryption-provider-config", type=Path, default=None,
                   help="EncryptionConfiguration for Secrets at rest (default: <data-dir>/encryption-config.yaml, "
                        "created with a random AES-GCM key)")
    p.add_argument("--audit-policy-file", type=Path, default=None, help="audit.k8s.io/v1 Policy")
    p.add_argument("--audit-log-path", type=Path, default=None, help="audit log (JSON lines); needs a policy")
    p.add_argument("--audit-log-maxsize", type=int, default=100, help="MiB before the audit log rotates")
    p.add_argument("--audit-log-maxbackup", type=int, default=10, help="rotated audit logs kept")
    p.add_argument("--max-requests-inflight", type=int, default=400)
    p.add_argument("--max-mutating-requests-inflight", type=int, default=200)
    p.add_argument("--request-timeout", type=float, default=60.0, help="seconds (default 60)")
    p.add_argument("--event-ttl", type=_duration, default=3600.0,
                   help="how long Events are kept after their last write (default 1h0m0s)")
    p.add_argument("--default-not-ready-toleration-seconds", type=int, default=300,
                   help="NoExecute not-ready toleration added to pods (DefaultTolerationSeconds admission)")
    p.add_argument("--default-unreachable-toleration-seconds", type=int, default=300,
                   help="NoExecute unreachable toleration added to pods (DefaultTolerationSeconds admission)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="servicenet", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="run an embedded cluster: API server and every component")
    _api_args(up)
    up.add_argument("--network", choices=["auto", "netns", "userns", "loopback", "virtual"], default="auto",
                    help="userns: the netns mode without root, inside a user namespace (docs/rootless.md)")
    up.add_argument("--proxy-mode", choices=["auto", "userspace", "iptables", "nftables"], default="auto")
    up.add_argument("--dns-listen", action="append", type=_hostport, default=None, metavar="HOST:PORT")
    up.add_argument("--node-name", default="node-1")
    up.add_argument("--ingress-http-port", type=int, default=None, help="ingress HTTP port (netns 80, loopback 8080)")
    up.add_argument("--ingress-https-port", type=int, default=None,
                    help="ingress HTTPS port (netns 443, loopback 8443)")
    up.add_argument("--ingress-no-access-log", action="store_true",
                    help="ingress without its per-request JSON log and per-route metrics (docs/ingress.md)")
    up.add_argument("--only", default="", help="comma-separated components to run (default: all available)")
    up.add_argument("--nodes", type=int, default=0,
                    help="netns mode: N node namespaces on an underlay bridge, each with its own node agent, "
                         "proxy and DNS processes (docs/nodes.md)")
    up.add_argument("--etcd", type=int, default=0,
                    help="netns mode: N etcd members and --apiservers M API servers, each a machine of its own on "
                         "the LAN, with --nodes K (docs/multinode.md)")
    up.add_argument("--apiservers", type=int, default=0, help="API servers (with --etcd)")
    api = sub.add_parser("apiserver", help="run the API server alone")
    _api_args(api)
    kc = sub.add_parser("kubeconfig", help="print a kubeconfig for the cluster")
    kc.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    kc.add_argument("--path", action="store_true", help="print where the kubeconfig is written")
    sub.add_parser("version", help="print the version")
    for name in COMPONENT_COMMANDS:
        c = sub.add_parser(name, help=f"run the {name} component alone", add_help=False)
        c.add_argument("rest", nargs=argparse.REMAINDER)
    for name, (_, text) in TOOL_COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False).add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _network_mode(requested: str) -> str:
    if requested != "auto":
        return requested
    mode, why = rootless.auto_mode()
    if mode == "loopback":
        print(f"servicenet up: network mode loopback: {why}", file=sys.stderr, flush=True)
    return mode


def _service_cidrs(args: argparse.Namespace, network: str) -> list[str]:
    if args.service_cidr:
        return list(args.service_cidr)
    return list(wk.address_plan(network).service_cidrs)


def _api_config(args: argparse.Namespace, network: str = "netns") -> Any:
    lo, _, hi = args.node_port_range.partition("-")
    config_type = importlib.import_module(APISERVER_MODULE).ApiServerConfig
    return config_type(data_dir=args.data_dir, host=args.api_listen[0], port=args.api_listen[1],
                       storage=args.storage, service_cidrs=_service_cidrs(args, network),
                       etcd_servers=[u for u in args.etcd_servers.split(",") if u],
                       etcd_prefix=args.etcd_prefix, etcd_cafile=args.etcd_cafile, etcd_certfile=args.etcd_certfile,
                       etcd_keyfile=args.etcd_keyfile,
                       node_port_range=(int(lo), int(hi)),
                       encryption_config=args.encryption_provider_config,
                       audit_policy_file=args.audit_policy_file, audit_log_path=args.audit_log_path,
                       audit_log_maxsize=args.audit_log_maxsize, audit_log_maxbackup=args.audit_log_maxbackup,
                       max_requests_inflight=args.max_requests_inflight,
                       max_mutating_requests_inflight=args.max_mutating_requests_inflight,
                       request_timeout=args.request_timeout, event_ttl=args.event_ttl,
                       default_not_ready_toleration_seconds=args.default_not_ready_toleration_seconds,
                       default_unreachable_toleration_seconds=args.default_unreachable_toleration_seconds)


async def _run_apiserver(args: argparse.Namespace) -> int:
    if args.storage == "etcd" and not args.etcd_servers:
        print("servicenet apiserver: --storage etcd needs --etcd-servers URL[,URL...]", file=sys.stderr)
        return 2
    server = importlib.import_module(APISERVER_MODULE).ApiServer(_api_config(args))
    try:
        await server.start()
    except importlib.import_module("servicenet.store").StoreError as exc:  # loaded with the API server
        print(f"servicenet apiserver: storage: {exc}", file=sys.stderr)
        await server.stop()
        return 1
    print(f"servicenet apiserver listening on {server.url}")
    print(f"kubeconfig: {server.kubeconfig_path}  (export KUBECONFIG={server.kubeconfig_path})", flush=True)
    try:
        await wait_for_signal()
    finally:
        await server.stop()
    return 0


async def _run_up(args: argparse.Namespace) -> int:
    network = _network_mode(args.network)
    if network == "netns" and os.geteuid() != 0:
        print("servicenet up: --network netns needs root", file=sys.stderr)
        return 2
    args.network = network
    if args.proxy_mode == "auto":
        args.proxy_mode = "nftables" if network == "netns" else "userspace"
    if args.proxy_mode != "userspace" and network != "netns":
        print(f"servicenet up: --proxy-mode {args.proxy_mode} programs the kernel of the node namespace; "
              "it needs --network netns (loopback mode uses the userspace proxy)", file=sys.stderr)
        return 2
    if args.dns_listen is None:
        args.dns_listen = [("127.0.0.1", 1053)]
    api = importlib.import_module(APISERVER_MODULE).ApiServer(_api_config(args, network))
    if args.etcd or args.apiservers:
        if network != "netns" or not args.etcd:
            print("servicenet up: --etcd N --apiservers M needs --network netns (root) and --etcd >= 1", file=sys.stderr)
            return 2
        return int(await importlib.import_module(UP_CLUSTER_MODULE).run(args))
    if args.nodes:
        if network != "netns":
            print("servicenet up: --nodes needs --network netns (root)", file=sys.stderr)
            return 2
        await api.start()
        client = ApiClient.from_kubeconfig(api.kubeconfig_path, user_agent="servicenet-up")
        try:
            up = importlib.import_module(UP_MODULE)
            extra = [up.ControllerManager(client), up.KubeDnsEndpoints(client, api.services.dns_ip(), 53)]
            return await up_nodes.run(args, api, extra)
        finally:
            await client.close()
            await api.stop()
    # SIGTERM during start-up stops what already started (a node agent's pods included)
    stopping = signal_event()
    if not await start_unless(api.start(), stopping):
        with contextlib.suppress(Exception):
            await api.stop()
        return 0
    client = ApiClient.from_kubeconfig(api.kubeconfig_path, user_agent="servicenet-up")
    components: list[Any] = []
    try:
        built = importlib.import_module(UP_MODULE).build_components(args, network, client, api)
        for comp in built:
            components.append(comp)  # stopped even if its start is interrupted
            if not await start_unless(comp.start(), stopping):
                components = built  # the rest too: a node agent reaps what a crashed run left
                return 0
        inside = " inside a user namespace (rootless)" if os.environ.get(rootless.ENV_HOLDER) else ""
        print(f"servicenet {__version__} is up (network mode: {network}{inside})")
        print(f"  {'apiserver':<20} {api.url}")
        for comp in components:
            for what, where in comp.describe().items():
                print(f"  {comp.name + ' ' + what:<20} {where}")
        print(f"\nPoint kubectl at it:\n  export KUBECONFIG={api.kubeconfig_path}\n  kubectl get svc -A\n",
              flush=True)
        await stopping.wait()
    finally:
        for comp in reversed(components):
            with contextlib.suppress(Exception):
                await comp.stop()
        await client.close()
        await api.stop()
    return 0


def _kubeconfig(args: argparse.Namespace) -> int:
    path = args.data_dir / "kubeconfig"
    if args.path:
        print(path)
        return 0
    if not path.exists():
        print(f"no kubeconfig at {path}: start the cluster first (make up / servicenet up)", file=sys.stderr)
        return 1
    sys.stdout.write(path.read_text())
    return 0


def _run(coro: Any) -> int:
    try:
        import uvloop
    except ImportError:
        return int(asyncio.run(coro))
    return int(uvloop.run(coro))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("SERVICENET_PB_NATIVE", "1") == "0":  # A/B runs: the pure-Python protobuf paths
        importlib.import_module("servicenet.api.pb.wire").use_native(False)
    if argv and argv[0] in COMPONENT_COMMANDS:
        log.setup()
        mod = importlib.import_module(COMPONENT_COMMANDS[argv[0]])
        return int(mod.main(argv[1:]))
    if argv and argv[0] == "ssh":
        return up_nodes.ssh_main(argv[1:])
    if argv and argv[0] in TOOL_COMMANDS:
        return int(importlib.import_module(TOOL_COMMANDS[argv[0]][0]).main(argv[1:]))
    args = build_parser().parse_args(argv)
    if args.cmd == "version":
        print(f"servicenet {__version__}")
        return 0
    if args.cmd == "kubeconfig":
        return _kubeconfig(args)
    log.setup(getattr(args, "log_level", "info"))
    if args.cmd == "apiserver":
        return _run(_run_apiserver(args))
    if args.cmd == "up":
        args.network = _network_mode(args.network)
        if args.network == "userns":
            return rootless.supervise(argv, args.data_dir)
        return _run(_run_up(args))
    return 2


if __name__ == "__main__":
    sys.exit(main())
