"""Acceptance (issue 13, topology): a 3-etcd, 2-API-server, 3-node cluster of netns machines
(``servicenet up --etcd 3 --apiservers 2 --nodes 3`` as a library), one for the whole module.

The walkthroughs run on it from pods on every node: the hostnames Deployment through its
ClusterIP and DNS name, the headless StatefulSet's ``web-0.nginx``, a NodePort on every node's IP
from a machine outside the cluster, and pods of one Deployment on three nodes talking to each other.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from servicenet.cluster.cpplan import API_PORT
from servicenet.store.etcdlaunch import go_env
from servicenet.testing_cluster import TopologyHandle, multinode

pytestmark = pytest.mark.root
T = TypeVar("T")
MANIFESTS = Path(__file__).parent.parent / "apiserver" / "manifests"

SPREAD = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
    {"labelSelector": {"matchLabels": {"app": "hostnames"}}, "topologyKey": "kubernetes.io/hostname"}]}}


def until(fn: Callable[[], T | None], timeout: float, what: str, interval: float = 0.3) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f}s (last: {last!r})")


def pods(c: TopologyHandle, selector: str, ns: str = "default") -> list[dict[str, Any]]:
    out = c.kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json").stdout
    return list(json.loads(out)["items"])


def ready(p: dict[str, Any]) -> bool:
    return any(x.get("type") == "Ready" and x.get("status") == "True"
               for x in (p.get("status") or {}).get("conditions") or [])


def ready_pods(c: TopologyHandle, selector: str, n: int, ns: str = "default") -> list[dict[str, Any]] | None:
    ps = [p for p in pods(c, selector, ns) if ready(p) and not p["metadata"].get("deletionTimestamp")]
    return ps if len(ps) == n else None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TopologyHandle]:
    with multinode(tmp_path_factory.mktemp("topology"), etcd=3, apiservers=2, nodes=3) as c:
        hostnames = list(_yaml_docs(MANIFESTS / "hostnames.yaml"))
        hostnames[0]["spec"]["template"]["spec"]["affinity"] = SPREAD
        c.kubectl("apply", "-f", "-", input_=yaml.safe_dump_all(hostnames))
        sts = (MANIFESTS / "web-sts.yaml").read_text()  # nginx on 8080: pods run as nobody
        c.kubectl("apply", "-f", "-", input_=sts.replace("containerPort: 80", "containerPort: 8080")
                  .replace("port: 80", "port: 8080"))
        c.kubectl("apply", "-f", "-", input_=yaml.safe_dump(CLIENTS))
        yield c


def _yaml_docs(path: Path) -> Iterator[dict[str, Any]]:
    yield from (d for d in yaml.safe_load_all(path.read_text()) if d)


CLIENTS = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "client"},
           "spec": {"selector": {"matchLabels": {"app": "client"}},
                    "template": {"metadata": {"labels": {"app": "client"}},
                                 "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


def exec_in(c: TopologyHandle, pod: str, script: str, timeout: float = 30.0) -> str:
    return c.kubectl("exec", pod, "--", "sh", "-c", script, timeout=timeout).stdout


def test_control_plane(cluster: TopologyHandle) -> None:
    c = cluster
    # both API servers are endpoints of the kubernetes Service (lease reconciler), and serve the same data
    ep = json.loads(c.kubectl("get", "endpoints", "kubernetes", "-o", "json").stdout)
    ips = sorted(a["ip"] for s in ep["subsets"] for a in s["addresses"])
    assert ips == sorted(h.ip for h in c.topo.cp.apiservers)
    assert ep["subsets"][0]["ports"][0]["port"] == API_PORT
    svc = json.loads(c.kubectl("get", "svc", "kubernetes", "-o", "json").stdout)
    assert svc["spec"]["ports"][0]["port"] == 443 and svc["spec"]["ports"][0]["targetPort"] == API_PORT
    for h in c.topo.cp.apiservers:
        assert "node-1" in c.kubectl("get", "nodes", apiserver=h.name).stdout
    # the DNS add-on: 2 pods of servicenet/dns on 2 different nodes, behind kube-dns
    dns = until(lambda: ready_pods(c, "k8s-app=kube-dns", 2, "kube-system"), 60, "2 DNS pods ready")
    assert len({p["spec"]["nodeName"] for p in dns}) == 2
    assert {p["spec"]["containers"][0]["image"] for p in dns} == {"servicenet/dns"}
    for node in c.topo.plan.nodes:  # the pods serve in their own namespaces only: the ClusterIP stays virtual
        lo = c.in_netns(node.netns, "ip", "-4", "addr", "show", "dev", "lo").stdout
        assert c.topo.dns_ip not in lo, (node.name, lo)
    # leader election: one holder each for the controller manager and the scheduler
    for lease in ("kube-controller-manager", "kube-scheduler"):
        holder = json.loads(c.kubectl("get", "lease", "-n", "kube-system", lease, "-o", "json").stdout)
        assert holder["spec"]["holderIdentity"]


def test_etcd_members_share_the_machine(cluster: TopologyHandle) -> None:
    """The three members run on this one machine: each gets its share of its CPUs (etcdlaunch.go_env)."""
    want = go_env(len(cluster.topo.cp.etcd))
    assert want or "GOMAXPROCS" in os.environ  # three members: a share, unless the caller set one
    for h in cluster.topo.cp.etcd:
        pid = cluster.pid(h.name)
        assert pid is not None
        raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert Path(f"/proc/{pid}/exe").resolve().name == "etcd"
        for k, v in want.items():
            assert f"{k}={v}".encode() in raw, (h.name, k)


def test_hostnames_walkthrough_across_nodes(cluster: TopologyHandle) -> None:
    c = cluster
    hs = until(lambda: ready_pods(c, "app=hostnames", 3), 90, "3 hostnames pods ready")
    names = {p["metadata"]["name"] for p in hs}
    assert len({p["spec"]["nodeName"] for p in hs}) == 3, "required anti-affinity: one per node"
    clients = until(lambda: ready_pods(c, "app=client", 3), 60, "a client pod on every node")
    assert {p["spec"]["nodeName"] for p in clients} == set(c.topo.node_names())
    for cl in clients:  # pods reach the API servers through the kubernetes Service (both endpoints)
        out = exec_in(c, cl["metadata"]["name"], "for i in 1 2 3 4; do curl -sk -o /dev/null -w '%{http_code} ' "
                      "--max-time 3 https://kubernetes.default.svc/readyz; done")
        assert out.split() == ["200"] * 4, out
    svc = json.loads(c.kubectl("get", "svc", "hostnames", "-o", "json").stdout)["spec"]["clusterIP"]
    for cl in clients:  # the ClusterIP and the DNS name from a pod on every node reach all three pods
        seen: set[str] = set()

        def all_seen(cl: dict[str, Any] = cl, seen: set[str] = seen) -> bool:
            out = exec_in(c, cl["metadata"]["name"], "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do "
                          f"curl -s --max-time 2 http://{svc}:80/; echo; curl -s --max-time 2 http://hostnames/; echo; "
                          "done")
            seen.update(line.strip() for line in out.splitlines() if line.strip())
            return seen == names

        until(all_seen, 30, f"all hostnames pods through the Service from {cl['spec']['nodeName']}", 0)
    # pods of the Deployment talk to each other directly, across nodes (host-gw)
    for a in hs:
        others = [b for b in hs if b is not a]
        out = exec_in(c, a["metadata"]["name"],
                      "; ".join(f"curl -s --max-time 3 http://{b['status']['podIP']}:9376/; echo" for b in others))
        assert sorted(out.split()) == sorted(b["metadata"]["name"] for b in others)


def test_headless_statefulset_dns_from_every_node(cluster: TopologyHandle) -> None:
    c = cluster
    web = {p["metadata"]["name"]: p["status"]["podIP"]
           for p in until(lambda: ready_pods(c, "app=nginx", 2), 90, "web-0 and web-1 ready")}
    clients = until(lambda: ready_pods(c, "app=client", 3), 60, "a client pod on every node")
    for cl in clients:
        out = exec_in(c, cl["metadata"]["name"], "cat /etc/resolv.conf; nslookup web-0.nginx; "
                      "dig +short +search web-1.nginx; dig +short +search nginx")
        assert "nameserver " + c.topo.dns_ip in out
        assert f"Address: {web['web-0']}" in out, out
        lines = out.split()
        assert web["web-1"] in lines and web["web-0"] in lines, out


def test_nodeport_on_every_node_ip(cluster: TopologyHandle) -> None:
    c = cluster
    until(lambda: ready_pods(c, "app=hostnames", 3), 90, "3 hostnames pods ready")
    c.kubectl("expose", "deployment", "hostnames", "--name", "hostnames-np", "--type", "NodePort",
              "--port", "80", "--target-port", "9376")
    port = json.loads(c.kubectl("get", "svc", "hostnames-np", "-o", "json").stdout)["spec"]["ports"][0]["nodePort"]
    names = {p["metadata"]["name"] for p in pods(c, "app=hostnames")}
    for node in c.topo.plan.nodes:  # from the outside machine on the LAN
        def answers(ip: str = node.ip) -> str | None:
            r = c.in_netns(c.topo.plan.client_netns, "curl", "-s", "--max-time", "2", f"http://{ip}:{port}/")
            return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() in names else None

        until(answers, 20, f"NodePort {port} on {node.name} ({node.ip})")
