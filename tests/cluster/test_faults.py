"""Issue 13, faults under a steady load, on one 3-etcd / 2-API-server / 3-node cluster (netns mode).

The load runs throughout: a pod on every node sends HTTP requests to a ClusterIP and DNS queries to
the cluster DNS (``loadclient.py``, 5 of each per second), and a writer creates ConfigMaps through
both API servers in turn (10 per second), keeping each acknowledged name. The faults come one after
the other, each followed by its restart, and each is measured: failed requests in its window and
the time to recover. A readiness flip (an exec probe reading a file the test creates and removes)
must reach the EndpointSlice, every node's proxy rules and every DNS server after each fault.

1. kill -9 one etcd member: writes go on, none acknowledged is lost;
2. kill -9 one API server: writes through the other never fail; the components that used it
   fail over (their kubeconfigs list both servers) and the readiness flip still propagates;
3. kill -9 the leading controller manager: the standby takes the Lease within its duration
   (plus one retry period) and the flip still propagates;
4. stop a node (kill -9 its agent, proxy and pods, cut its veth): its pods' IPs leave every proxy's
   rules and every DNS answer within the grace period + 1 s; its Deployment pods come back on the
   other nodes after their toleration; restarted, the node is Ready again and serves;
5. partition one API server from etcd (an nftables drop inside its own namespace): /readyz fails,
   writes through it fail with a Status (never hang), none acknowledged is lost; healed, it is ready.

Figures: a table on stdout and ``faults.json`` in the test's tmp dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from servicenet.client import ApiClient, ApiError
from servicenet.client.kubeconfig import load as load_kubeconfig
from servicenet.client.kubeconfig import with_failover
from servicenet.cluster import etcdpki
from servicenet.cluster.up_cluster import Options, Topology
from servicenet.common.component import bounded

from .load import Fault, Sample, Writer, figures, parse_pod_log, table, write_json

pytestmark = pytest.mark.root

# Writes started while etcd elects a new leader wait for etcd's request timeout (5 s), so every
# heartbeat must outlast that: a node misses up to ~6 s of Lease renewals when the etcd leader dies,
# and a controller manager's renew deadline must be longer than that too (upstream: 40 s and 10 s).
GRACE = 15.0  # node monitor grace period (s): longer than the partition below (the node relays do
# not look at /readyz, so the nodes whose relay prefers the cut-off server miss their heartbeats)
NODE_LEASE = 4  # node Lease duration (s): renewed every second
TOLERATION = 4  # default unreachable / not-ready toleration (s)
LEADER = (10.0, 8.0, 1.0)  # controller-manager Lease duration, renew deadline, retry period (s)
LOADCLIENT = Path(__file__).with_name("loadclient.py")
NS = "default"


def _ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


async def until(fn: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = fn()
            if asyncio.iscoroutine(last):
                last = await last
        except (ApiError, OSError) as e:
            last = e
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s (last: {last!r})")
        await asyncio.sleep(interval)


async def sh(*argv: str, timeout: float = 10.0, check: bool = False) -> str:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await bounded(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        out = b"(timed out)"
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {out.decode(errors='replace')}")
    return out.decode(errors="replace")


def has_ip(text: str, ip: str) -> bool:
    return re.search(rf"(?<![\d.]){re.escape(ip)}(?![\d])", text) is not None


class Cluster:
    """The topology plus what the test reads from it: rules, DNS answers, pods, readiness."""

    def __init__(self, topo: Topology, tmp: Path) -> None:
        self.t = topo
        self.tmp = tmp
        # the test's own reads go to any live API server (both listed, servicenet.io/failover)
        kc = tmp / "admin-failover.kubeconfig"
        kc.write_text(with_failover(topo.kubeconfig.read_text(), topo.api_urls))
        kc.chmod(0o600)
        self.admin = ApiClient.from_kubeconfig(kc)
        self.flag = tmp / "flip-ready"
        self.down: set[str] = set()  # stopped nodes

    def netns(self, node: str) -> str:
        return self.t.node(node).netns

    def live_nodes(self) -> list[str]:
        return [n for n in self.t.node_names() if n not in self.down]

    async def pods(self, ns: str = NS, selector: str | None = None) -> list[dict[str, Any]]:
        return (await self.admin.list("v1", "pods", ns, label_selector=selector))["items"]

    async def nft(self, node: str) -> str:
        return await sh("ip", "netns", "exec", self.netns(node), "nft", "list", "ruleset")

    async def dns_servers(self) -> list[str]:
        return [p["status"]["podIP"] for p in await self.pods("kube-system", "k8s-app=kube-dns")
                if _ready(p) and p["spec"].get("nodeName") not in self.down]

    async def dig(self, node: str, server: str, name: str) -> list[str] | None:
        out = await sh("ip", "netns", "exec", self.netns(node), "dig", "+short", "+time=1", "+tries=1",
                       f"@{server}", name)
        if ";;" in out:
            return None  # no answer
        return sorted(out.split())

    async def flip_propagated(self, ip: str, want: bool) -> bool:
        """The flip pod's readiness ``want`` is in its EndpointSlice, in every live node's proxy
        rules, and in the headless answer of every live DNS server (asked from a live node)."""
        slices = (await self.admin.list("discovery.k8s.io/v1", "endpointslices", NS,
                                        label_selector="kubernetes.io/service-name=flip"))["items"]
        eps = [e for s in slices for e in s.get("endpoints") or [] if ip in e.get("addresses", [])]
        if not eps or bool(eps[0].get("conditions", {}).get("ready")) is not want:
            return False
        for node in self.live_nodes():
            if has_ip(await self.nft(node), ip) is not want:
                return False
        asker = self.live_nodes()[0]
        for server in await self.dns_servers():
            if await self.dig(asker, server, "flip-headless.default.svc.cluster.local") != ([ip] if want else []):
                return False
        return True

    async def flip(self, ip: str) -> float:
        """Make the flip pod unready and ready again; seconds until both reached everything."""
        t0 = time.monotonic()
        self.flag.unlink()
        await until(lambda: self.flip_propagated(ip, False), 30, "flip to not ready propagated", 0.2)
        self.flag.touch()
        await until(lambda: self.flip_propagated(ip, True), 30, "flip to ready propagated", 0.2)
        return round(time.monotonic() - t0, 2)


def deployment(name: str, replicas: int, container: dict[str, Any]) -> dict[str, Any]:
    term = {"labelSelector": {"matchLabels": {"app": name}}, "topologyKey": "kubernetes.io/hostname"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                             {"weight": 100, "podAffinityTerm": term}]}},
                         "containers": [container]}}}}


def service(name: str, selector: str, port: int, target: int, headless: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"app": selector}, "ports": [{"port": port, "targetPort": target}]}
    if headless:
        spec["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


async def setup_workload(c: Cluster) -> dict[str, Any]:
    a = c.admin
    web = {"name": "web", "image": "registry.k8s.io/serve_hostname", "ports": [{"containerPort": 9376}],
           "readinessProbe": {"httpGet": {"path": "/", "port": 9376}, "periodSeconds": 1}}
    await a.create("apps/v1", "deployments", NS, deployment("web", 3, web))
    for svc in (service("web", "web", 80, 9376), service("web-headless", "web", 80, 9376, True),
                service("flip", "flip", 80, 9376), service("flip-headless", "flip", 80, 9376, True)):
        await a.create("v1", "services", NS, svc)
    c.flag.touch()
    await a.create("v1", "pods", NS, {"apiVersion": "v1", "kind": "Pod",
                                      "metadata": {"name": "flip", "labels": {"app": "flip"}}, "spec": {
        "nodeName": "node-1", "securityContext": {"runAsUser": 0},  # the probe reads the test's root-only file
        "containers": [{"name": "c", "image": "registry.k8s.io/serve_hostname",
                        "readinessProbe": {"exec": {"command": ["test", "-f", str(c.flag)]}, "periodSeconds": 1}}]}})
    web_ip = (await a.get("v1", "services", NS, "web"))["spec"]["clusterIP"]
    for node in c.t.node_names():
        await a.create("v1", "pods", NS, {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": f"load-{node}", "labels": {"app": "load"}}, "spec": {
            "nodeName": node, "securityContext": {"runAsUser": 0},  # it writes its log into the test's dir
            "containers": [{"name": "load", "image": "python", "command": [
                sys.executable, str(LOADCLIENT), "--http", f"{web_ip}:80", "--dns-name", "web.default.svc.cluster.local",
                "--dns-want", web_ip, "--out", str(c.tmp / f"load-{node}.log"), "--stop", str(c.tmp / "stop-load"),
                "--rate", "5", "--duration", "400"]}]}})

    async def all_ready() -> dict[str, Any] | None:
        pods = await c.pods()
        ready = [p for p in pods if _ready(p)]
        web_nodes = {p["spec"]["nodeName"] for p in ready if p["metadata"]["labels"].get("app") == "web"}
        if len(ready) == 3 + 1 + 3 and len(web_nodes) == 3:
            return {p["metadata"]["name"]: p for p in ready}
        return None

    pods = await until(all_ready, 90, "web (one per node), flip and the load pods ready")
    return {"flip_ip": pods["flip"]["status"]["podIP"], "web_ip": web_ip}


async def etcd_leader(c: Cluster) -> str:
    """The etcd member that leads (asked from an API server's namespace, with its client certificate)."""
    certs = etcdpki.apiserver_client(c.t.data_dir / "pki-etcd")
    ns = c.t.cp.apiservers[0].netns
    ids = {}
    for h in c.t.cp.etcd:
        out = await sh("ip", "netns", "exec", ns, "curl", "-s", "--cacert", certs["ca"], "--cert", certs["cert"],
                       "--key", certs["key"], "-X", "POST", "-d", "{}", f"https://{h.ip}:2379/v3/maintenance/status")
        d = json.loads(out)
        ids[d["header"]["member_id"]] = (h.name, d["leader"])
    leaders = {leader for _, leader in ids.values()}
    assert len(leaders) == 1, ids
    return ids[leaders.pop()][0]


async def leader_of(c: Cluster) -> str:
    """The controller-manager process holding the Lease (found by the identity it logged)."""
    lease = await c.admin.get("coordination.k8s.io/v1", "leases", "kube-system", "kube-controller-manager")
    holder = lease["spec"].get("holderIdentity") or ""
    for name, p in c.t.procs.procs.items():
        if name.startswith("controller-manager") and holder and holder in p.log_path.read_text(errors="replace"):
            return name
    raise AssertionError(f"no controller-manager logged identity {holder!r}")


def server_of(t: Topology, process: str) -> str:
    """The API server a controller-manager process talks to first (its kubeconfig's server)."""
    argv = t.procs.get(process).argv
    url = load_kubeconfig(argv[argv.index("--kubeconfig") + 1]).server
    return next(h.name for h in t.cp.apiservers if t.api_url(h) == url)


async def stop_node(c: Cluster, node: str) -> None:
    """The machine dies: kill -9 its agent, proxy, API relay and every process in its pods, cut its
    LAN veth."""
    plan = c.t.node(node)
    for what in ("node", "proxy", "apiserver-relay"):
        await c.t.procs.kill(f"{node}/{what}", signal.SIGKILL)
    out = await sh("ip", "netns", "list")
    for ns in (line.split()[0] for line in out.splitlines() if line.strip()):
        if ns.startswith(f"sn-{plan.net_id}-"):
            for pid in (await sh("ip", "netns", "pids", ns)).split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
    await sh("ip", "-n", c.t.plan.lan_netns, "link", "set", plan.lan_veth, "down", check=True)
    c.down.add(node)


async def start_node(c: Cluster, node: str) -> None:
    plan = c.t.node(node)
    await sh("ip", "-n", c.t.plan.lan_netns, "link", "set", plan.lan_veth, "up", check=True)
    for what in ("apiserver-relay", "node", "proxy"):
        await c.t.procs.restart(f"{node}/{what}")
    c.down.discard(node)


async def node_clean(c: Cluster, node: str) -> dict[str, Any] | None:
    n = await c.admin.get("v1", "nodes", None, node)
    taints = [t["key"] for t in n["spec"].get("taints") or []]
    return n if _ready(n) and not taints else None


async def write_via(client: ApiClient, name: str, timeout: float) -> str:
    """One create; "ok", the Status reason of a refusal, or "hang" when no answer came in time."""
    try:
        await bounded(client.create("v1", "configmaps", NS, {"metadata": {"name": name}}), timeout)
        return "ok"
    except ApiError as e:
        return f"{e.status}:{e.body.get('kind')}" if e.body else f"{e.status}:no-status"
    except TimeoutError:
        return "hang"
    except Exception as e:  # noqa: BLE001 - a refused connection is also a clean failure
        return type(e).__name__


@pytest.fixture
async def cluster(tmp_path: Path) -> Any:
    tolerations = [f"--default-unreachable-toleration-seconds={TOLERATION}",
                   f"--default-not-ready-toleration-seconds={TOLERATION}"]
    topo = Topology(Options(data_dir=tmp_path / "cluster", node_monitor_grace_period=GRACE, leader_elect=LEADER,
                            extra_node_args=["--node-lease-duration-seconds", str(NODE_LEASE)],
                            extra_apiserver_args=tolerations,
                            endpoint_reconciler=(1.0, 3)))  # (info: the leader logs its identity)
    await topo.start()
    c = Cluster(topo, tmp_path)
    try:
        yield c
    finally:
        (tmp_path / "stop-load").touch()
        await c.admin.close()
        await topo.stop()


async def test_faults_under_a_steady_load(cluster: Cluster, tmp_path: Path) -> None:  # noqa: PLR0915
    c, t = cluster, cluster.t
    t_begin = time.monotonic()
    w = await setup_workload(c)
    flip_ip = w["flip_ip"]
    api1, api2 = (h.name for h in t.cp.apiservers)
    clients = {api1: t.client(api1), api2: t.client(api2)}  # one server each (no failover)
    writer = Writer(clients, rate=10, timeout=5)
    writer.start()
    faults: list[Fault] = []

    def begin(name: str, exclude: tuple[str, ...] = ()) -> Fault:
        now = time.time()
        if faults:
            faults[-1].end = now
        f = Fault(name, now, exclude=exclude)
        faults.append(f)
        return f

    async def acked_through(server: str, since: float, n: int = 5) -> None:
        await until(lambda: _count(writer.samples, f"write@{server}", since) >= n, 20,
                    f"writes through {server} acknowledged after the fault")

    try:
        await asyncio.sleep(2)
        begin("baseline")
        await asyncio.sleep(3)

        # 1. kill -9 one etcd member (the leader), then restart it
        member = await etcd_leader(c)
        f = begin(f"kill -9 {member} (etcd leader)")
        await t.procs.kill(member, signal.SIGKILL)
        for s in (api1, api2):
            await acked_through(s, f.start)
        f.notes["first_write_after_s"] = round(_first_ok(writer.samples, f.start) - f.start, 2)
        await t.procs.restart(member)
        await asyncio.sleep(6)  # writes sent during the election end within etcd's request timeout (5 s)

        # 2. kill -9 one API server: the other's clients see nothing; the components fail over
        # (the one the leading controller manager talks to, so that its informers must fail over)
        cm = await leader_of(c)
        gone = server_of(t, cm)
        other = api1 if gone == api2 else api2
        f = begin(f"kill -9 {gone}", exclude=(f"write@{gone}",))
        f.notes["leader_using_it"] = cm
        await t.procs.kill(gone, signal.SIGKILL)
        f.notes["flip_propagated_s"] = await c.flip(flip_ip)
        f.notes["leader_after"] = await leader_of(c)
        f.recovered = time.time()
        await t.procs.restart(gone)
        await t.wait_api_ready(gone, 60)
        await acked_through(gone, time.time())

        # 3. kill -9 the leading controller manager: the standby takes over within the Lease
        leader = await leader_of(c)
        f = begin(f"kill -9 leader {leader}")
        t0 = time.monotonic()
        await t.procs.kill(leader, signal.SIGKILL)
        new = await until(lambda: _other_leader(c, leader), LEADER[0] + 10, "a new controller-manager leader", 0.1)
        takeover = time.monotonic() - t0
        f.notes.update(new_leader=new, takeover_s=round(takeover, 2))
        f.notes["flip_propagated_s"] = await c.flip(flip_ip)
        f.recovered = time.time()
        assert takeover <= LEADER[0] + LEADER[2] * 1.2 + 1.0, f"takeover took {takeover:.2f}s"
        await t.procs.restart(leader)

        # 4. stop a node: its endpoints leave every rule and answer within grace + 1 s
        victim = "node-3"
        gone_ips = {p["status"]["podIP"] for p in await c.pods(NS) + await c.pods("kube-system")
                    if p["spec"].get("nodeName") == victim and p["status"].get("podIP")}
        web_before = {p["metadata"]["name"] for p in await c.pods(NS, "app=web") if p["spec"]["nodeName"] == victim}
        f = begin(f"stop {victim}", exclude=(f"http@{victim}", f"dns@{victim}"))
        t0 = time.monotonic()
        await stop_node(c, victim)

        async def gone_from(node: str, what: str) -> float:
            """When ``node``'s rules (or every live DNS server asked from it) no longer hold the IPs."""
            while True:
                if what == "rules":
                    text = await c.nft(node)
                    done = "table" in text and not any(has_ip(text, ip) for ip in gone_ips)
                else:
                    answers = await asyncio.gather(*(c.dig(node, s, "web-headless.default.svc.cluster.local")
                                                     for s in await c.dns_servers()))
                    done = all(a is not None and not set(a) & gone_ips for a in answers)
                if done:
                    return time.monotonic() - t0
                await asyncio.sleep(0.05)

        checks = [(node, what) for node in c.live_nodes() for what in ("rules", "dns")]
        try:
            times = await bounded(asyncio.gather(*(gone_from(n, w) for n, w in checks)), GRACE + 20)
        except TimeoutError:
            raise AssertionError(f"the stopped node's endpoints still there after {GRACE + 20}s\n"
                                 f"{await _explain(c, victim, gone_ips)}") from None
        gone_s = max(times)
        f.notes["gone_s"] = {f"{n} {w}": round(x, 2) for (n, w), x in zip(checks, times, strict=True)}
        f.notes.update(endpoints_gone_s=round(gone_s, 2), grace_s=GRACE, stopped_pod_ips=sorted(gone_ips))

        async def recreated() -> list[str] | None:
            pods = [p for p in await c.pods(NS, "app=web") if not p["metadata"].get("deletionTimestamp")]
            ok = [p for p in pods if _ready(p) and p["spec"]["nodeName"] != victim]
            dns = [p for p in await c.pods("kube-system", "k8s-app=kube-dns") if _ready(p)
                   and p["spec"]["nodeName"] != victim]
            return sorted(p["spec"]["nodeName"] for p in ok) if len(ok) == 3 and len(dns) == 2 else None

        placed = await until(recreated, GRACE + TOLERATION + 40, "web and DNS pods recreated on the other nodes")
        recreated_s = time.monotonic() - t0
        f.recovered = time.time()
        f.notes.update(pods_recreated_s=round(recreated_s, 2), web_nodes_after=placed,
                       toleration_s=TOLERATION, evicted=sorted(web_before))
        await start_node(c, victim)
        await until(lambda: node_clean(c, victim), 60, f"{victim} Ready again without taints")
        f.notes["node_back_s"] = round(time.monotonic() - t0, 2)
        f.notes["flip_after_restart_s"] = await c.flip(flip_ip)  # node-3's proxy serves the rules again

        # 5. partition one API server from etcd inside its own namespace
        # (again the one the leading controller manager talks to: it must move to the other one)
        leader = await leader_of(c)
        part = next(h for h in t.cp.apiservers if h.name == server_of(t, leader))
        f = begin(f"partition {part.name} from etcd", exclude=(f"write@{part.name}",))
        etcd_ips = ", ".join(h.ip for h in t.cp.etcd)
        rules = (f"table inet sn-partition {{ chain out {{ type filter hook output priority 0; "
                 f"ip daddr {{ {etcd_ips} }} tcp dport 2379 drop; }}; }}")
        t0 = time.monotonic()
        await sh("ip", "netns", "exec", part.netns, "nft", rules, check=True)
        await until(lambda: _unready(t, part.name), 30, f"{part.name} /readyz failing")
        f.notes["readyz_failed_after_s"] = round(time.monotonic() - t0, 2)
        results = list(await asyncio.gather(*(write_via(clients[part.name], f"partitioned-{i}", 30)
                                              for i in range(3))))
        f.notes["writes_through_partitioned"] = results
        assert all(r != "ok" and r != "hang" for r in results), results
        assert all(r.endswith(":Status") or not r[0].isdigit() for r in results), results
        other_api = api1 if part.name == api2 else api2
        await acked_through(other_api, f.start)  # the other one serves
        # the leading controller manager renews its Lease through the other server (a 500 moves its
        # client on): it neither loses the Lease nor exits (checked at the end)
        f.notes.update(leader_using_it=leader, leader_after=await leader_of(c))
        # the cut lasts longer than the node grace period: a node whose relay preferred the cut-off
        # server moved (its health check fails /readyz) and kept its heartbeats, so no node goes
        # NotReady and no pod is evicted
        await asyncio.sleep(max(0.0, t0 + GRACE + 2.0 - time.monotonic()))
        unclean = [n for n in t.node_names() if not await node_clean(c, n)]
        assert unclean == [], f"nodes not Ready (or tainted) after {GRACE + 2.0:.0f}s of the partition: {unclean}"
        healed = time.monotonic()
        await sh("ip", "netns", "exec", part.netns, "nft", "delete", "table", "inet", "sn-partition", check=True)
        await t.wait_api_ready(part.name, 60)
        f.recovered = time.time()
        f.notes["ready_after_heal_s"] = round(time.monotonic() - healed, 2)
        await acked_through(part.name, time.time())

        # everything converged without a manual step; the load runs clean again
        f = begin("converged")
        for node in t.node_names():
            await until(lambda node=node: node_clean(c, node), 30, f"{node} Ready")
        f.notes["etcd_leader"] = await etcd_leader(c)  # every member answers and agrees on one leader
        f.notes["flip_propagated_s"] = await c.flip(flip_ip)
        assert t.procs.failed() == [], f"processes exited: {t.procs.failed()}"
        await asyncio.sleep(3)
        f.end = time.time()
    finally:
        await writer.stop()
        (tmp_path / "stop-load").touch()
        for cl in clients.values():
            await cl.close()

    # no acknowledged write lost, as either server lists them
    for server in (api1, api2):
        lister = t.client(server)
        try:
            missing = await writer.missing(lister)
        finally:
            await lister.close()
        assert missing == [], f"{len(missing)} acknowledged writes missing through {server}: {missing[:5]}"
    samples = list(writer.samples)
    for node in t.node_names():
        path = tmp_path / f"load-{node}.log"
        samples += parse_pod_log(path.read_text() if path.exists() else "", node)
    rows = [figures(f, samples) for f in faults]
    print(f"\n{table(rows)}\nacknowledged writes: {len(writer.acked)}, all present; "
          f"test time {time.monotonic() - t_begin:.0f}s")
    write_json(tmp_path / "faults.json", rows, samples, {"acked_writes": len(writer.acked), "grace_s": GRACE,
                                                "toleration_s": TOLERATION, "leader_election": LEADER})
    by = {r["fault"]: r for r in rows}
    assert by["baseline"]["failed"] == {}, by["baseline"]
    assert by[f"kill -9 {gone}"]["failed"] == {}, f"clients of {other} saw failures"
    conv = next(f for f in faults if f.name == "converged")
    assert by["converged"]["failed"] == {}, (by["converged"], [s for s in samples if not s.ok
                                                               and conv.start <= s.at < conv.end])
    stop = by[f"stop {victim}"]
    assert stop["endpoints_gone_s"] <= GRACE + 1.0, stop
    # not evicted before grace + toleration (the last heartbeat may precede the kill by a renew interval)
    assert stop["pods_recreated_s"] >= GRACE + TOLERATION - NODE_LEASE / 4 - 0.5, stop
    for f in faults:  # the load went on through every fault: each stream answered after it began
        live = {s.stream for s in samples if f.start <= s.at < f.end} - set(f.exclude)
        answered = {s.stream for s in samples if s.ok and f.start <= s.at < f.end}
        assert live <= answered, f"{f.name}: no successful request from {sorted(live - answered)}"
    noqr = [s for s in samples if s.detail == "noqr"]
    assert noqr == [], f"DNS replies without the QR bit: {noqr[:3]}"
    for node in t.node_names():  # the load ran on every node throughout
        assert any(s.ok and s.stream == f"http@{node}" for s in samples), node


async def _explain(c: Cluster, node: str, ips: set[str]) -> str:
    """What the cluster holds of a stopped node and its pods (for a failure message)."""
    n = await c.admin.get("v1", "nodes", None, node)
    out = [f"{node}: conditions {[(x['type'], x['status']) for x in n['status'].get('conditions') or []]} "
           f"taints {n['spec'].get('taints')}"]
    for p in await c.pods(NS) + await c.pods("kube-system"):
        if p["status"].get("podIP") in ips:
            out.append(f"pod {p['metadata']['name']} {p['status'].get('podIP')} ready={_ready(p)} "
                       f"deleting={bool(p['metadata'].get('deletionTimestamp'))}")
    for sl in (await c.admin.list("discovery.k8s.io/v1", "endpointslices", None))["items"]:
        for e in sl.get("endpoints") or []:
            if set(e.get("addresses") or []) & ips:
                out.append(f"slice {sl['metadata']['name']}: {e['addresses']} {e.get('conditions')}")
    for live in c.live_nodes():
        out += [f"{live} rule: {line.strip()}" for line in (await c.nft(live)).splitlines()
                if any(ip in line for ip in ips)][:6]
    return "\n".join(out)


def _count(samples: list[Sample], stream: str, since: float) -> int:
    return sum(1 for s in samples if s.stream == stream and s.ok and s.t >= since)


def _first_ok(samples: list[Sample], since: float) -> float:
    return min((s.done for s in samples if s.ok and s.t >= since), default=since)


async def _other_leader(c: Cluster, old: str) -> str | None:
    with contextlib.suppress(AssertionError):
        name = await leader_of(c)
        return name if name != old else None
    return None


async def _unready(t: Topology, name: str) -> bool:
    return await t.readyz(name) != 200

