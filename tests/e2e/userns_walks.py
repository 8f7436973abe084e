"""The seeds' walkthroughs (issues 2-5), driven on the rootless cluster userns_unpriv.py started,
as the unprivileged user, with the real kubectl, curl, wget, dig and nslookup. The root netns
versions are test_workloads, test_pod_dns, test_proxy_netns and tests/apiserver/test_kubectl.

Each walkthrough records observations under its own key of the result; an exception is recorded
there as ``error`` (test_userns fails that walkthrough's test) and the next one still runs.
"""

from __future__ import annotations

import json
import subprocess
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import yaml  # the checkout's venv has PyYAML (a servicenet dependency)

N = 600


def in_node(holder: str, node_ns: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``argv`` in the node namespace, entered as the cluster does (the holder's user and mount
    namespaces, then ``ip netns exec``)."""
    return subprocess.run(["nsenter", f"--target={holder}", "--user", "--mount", "--preserve-credentials",
                           "ip", "netns", "exec", node_ns, *argv], capture_output=True, text=True, timeout=timeout)


def wait(fn: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def _ready(p: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or [])


def _exec(up: Any, pod: str, script: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "exec", pod, "--", "sh", "-c", script], env=up.env, capture_output=True,
                          text=True, timeout=timeout)


def _get(up: Any, *what: str) -> dict[str, Any]:
    return json.loads(up.kubectl("get", *what, "-o", "json"))


def kubectl_basics(up: Any, ctx: dict[str, Any], r: dict[str, Any]) -> None:
    """Issue 2: the walkthrough manifests with kubectl, as a user types them."""
    m = ctx["manifests"]
    r["reapply"] = up.kubectl("apply", "-f", str(m / "hostnames.yaml"))
    up.kubectl("apply", "-f", str(m / "nodeport.yaml"))
    up.kubectl("apply", "-f", str(m / "selectorless.yaml"))
    r["get_wide"] = up.kubectl("get", "svc,ep,endpointslices,pods,deploy,sts,rs", "-o", "wide")
    r["describe"] = up.kubectl("describe", "svc", "hostnames")
    r["nodeport"] = _get(up, "svc", "my-nodeport")["spec"]["ports"][0].get("nodePort")


def workloads(up: Any, ctx: dict[str, Any], r: dict[str, Any]) -> None:
    """Issue 3: hostnames pods answer on their IPs in the node namespace; the StatefulSet starts in
    order, scales up and down from the top; a selector-less Service is mirrored; service links."""
    rows = [ln.split() for ln in up.kubectl("get", "pods", "-o", "wide", "-l", "app=hostnames").splitlines()[1:]]
    r["rows"] = rows
    r["ep"] = up.kubectl("get", "ep", "hostnames")
    r["by_ip"] = {name: in_node(ctx["holder"], ctx["node_ns"], "curl", "-s", "--max-time", "5",
                                f"http://{ip}:9376/").stdout.strip() for name, ip in ctx["pods"].items()}
    def web() -> dict[str, Any]:
        return {p["metadata"]["name"]: p for p in _get(up, "pods", "-l", "app=nginx")["items"]}
    pods = wait(lambda: ps if len(ps := web()) == 2 and all(_ready(p) for p in ps.values()) else None, 90,
                "web-0, web-1 ready")
    w0_ready = next(c["lastTransitionTime"] for c in pods["web-0"]["status"]["conditions"] if c["type"] == "Ready")
    r["order"] = [w0_ready, pods["web-1"]["metadata"]["creationTimestamp"]]  # web-1 made after web-0 was Ready

    def slice_hostnames() -> list[str]:
        items = _get(up, "endpointslices", "-l", "kubernetes.io/service-name=nginx")["items"]
        return sorted(e.get("hostname", "") for s in items for e in s.get("endpoints") or []
                      if e["conditions"].get("ready"))
    r["slice_2"] = wait(slice_hostnames, 30, "web-0, web-1 in the slice")
    up.kubectl("scale", "sts", "web", "--replicas=3")
    r["slice_3"] = wait(lambda: h if len(h := slice_hostnames()) == 3 else None, 90, "web-2 in the slice")
    up.kubectl("scale", "sts", "web", "--replicas=2")
    r["slice_down"] = wait(lambda: h if len(h := slice_hostnames()) == 2 else None, 60, "web-2 out of the slice")
    r["pods_down"] = wait(lambda: n if len(n := sorted(web())) == 2 else None, 60, "web-2 deleted")
    r["web0_hostname"] = up.kubectl("exec", "web-0", "--", "hostname").strip()
    mirrored = _get(up, "endpointslices", "-l", "kubernetes.io/service-name=my-external-db")["items"]
    r["mirrored"] = [[s["metadata"]["labels"].get("endpointslice.kubernetes.io/managed-by"),
                      sorted(a for e in s["endpoints"] for a in e["addresses"])] for s in mirrored]
    # service links: a pod created after the Service sees the upstream variables
    up.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "redis-primary"},
        "spec": {"selector": {"app": "redis"}, "ports": [{"name": "redis", "port": 6379},
                                                          {"name": "metrics", "port": 9121}]}}))
    up.kubectl("run", "envdump", "--image=busybox", "--restart=Never", "--command", "--", "sh", "-c", "env; sleep 600")
    out = wait(lambda: (o := up.kubectl("logs", "envdump", check=False)) and "KUBERNETES_SERVICE_HOST" in o and o,
               60, "envdump's env")
    r["links"] = {k: v for k, v in (ln.split("=", 1) for ln in out.splitlines() if "=" in ln)
                  if k.startswith(("REDIS_PRIMARY_", "KUBERNETES_"))}
    r["redis_ip"] = _get(up, "svc", "redis-primary")["spec"]["clusterIP"]
    r["kube_ip"] = _get(up, "svc", "kubernetes")["spec"]["clusterIP"]


def _dig(port: int, name: str, *extra: str) -> list[str]:
    out = subprocess.run(["dig", "+short", "+time=2", "+tries=2", "-p", str(port), "@127.0.0.1", name, *extra],
                         capture_output=True, text=True, timeout=30).stdout
    return sorted(out.split())


def dns(up: Any, ctx: dict[str, Any], r: dict[str, Any]) -> None:
    """Issue 4: the walkthrough names from the host (the DNS's 127.0.0.1 listener) and short names
    through a pod's search path (kube-dns ClusterIP on port 53)."""
    web = {n: p["status"]["podIP"] for n, p in ((p["metadata"]["name"], p)
                                                 for p in _get(up, "pods", "-l", "app=nginx")["items"])}
    r["web"] = web
    r["headless"] = wait(lambda: (a := _dig(up.dns, "nginx.default.svc.cluster.local")) == sorted(web.values())
                         and a, 15, "headless answer")
    r["web0"] = _dig(up.dns, "web-0.nginx.default.svc.cluster.local")
    r["web1"] = _dig(up.dns, "web-1.nginx.default.svc.cluster.local")
    r["clusterip"] = _dig(up.dns, "hostnames.default.svc.cluster.local")
    pod = sorted(ctx["pods"])[0]
    r["nxdomain"] = subprocess.run(["dig", "-p", str(up.dns), "@127.0.0.1", f"{pod}.nginx.default.svc.cluster.local"],
                                   capture_output=True, text=True, timeout=30).stdout
    r["short"] = {name: _exec(up, pod, f"nslookup {name} | sed -n '/^Name:/,$p'").stdout
                  for name in ("nginx", "web-0.nginx", "nginx.default")}


def proxy(up: Any, ctx: dict[str, Any], r: dict[str, Any]) -> None:
    """Issue 5: DNS and proxy together from a pod; NodePort and a LoadBalancer IP from the node
    namespace; ClientIP affinity; a Service without endpoints refuses at once."""
    pod, holder, node_ns = sorted(ctx["pods"])[0], ctx["holder"], ctx["node_ns"]
    loop = ("i=0; while [ $i -lt {n} ]; do i=$((i+1)); wget -q -T 2 -O- {url} || echo fail; echo; done")
    out = _exec(up, pod, loop.format(n=N, url="http://hostnames.default.svc.cluster.local")).stdout
    r["dns_spread"] = dict(Counter(ln.strip() for ln in out.split() if ln.strip()))
    node_ip = next(a["address"] for a in _get(up, "nodes")["items"][0]["status"]["addresses"]
                   if a["type"] == "InternalIP")
    node_port = _get(up, "svc", "hostnames")["spec"]["ports"][0]["nodePort"]
    curl30 = "for i in $(seq 30); do curl -s --max-time 2 {url} || echo fail; echo; done"

    def from_node(url: str) -> set[str]:
        out = in_node(holder, node_ns, "sh", "-c", curl30.format(url=url)).stdout
        return {ln.strip() for ln in out.split() if ln.strip()}
    r["nodeport"] = sorted(wait(lambda: (a := from_node(f"http://{node_ip}:{node_port}/")) == set(ctx["pods"])
                                and a, 30, "NodePort from the node namespace"))
    up.kubectl("expose", "deployment", "hostnames", "--name=hostnames-lb", "--type=LoadBalancer", "--port=80",
               "--target-port=9376")
    lb = wait(lambda: ((_get(up, "svc", "hostnames-lb").get("status") or {}).get("loadBalancer") or {})
              .get("ingress"), 30, "LoadBalancer ingress IP")[0]["ip"]
    r["lb_ip"] = lb
    r["lb"] = sorted(wait(lambda: (a := from_node(f"http://{lb}/")) == set(ctx["pods"]) and a, 30, "LB IP answering"))
    up.kubectl("expose", "deployment", "hostnames", "--name=sticky", "--port=80", "--target-port=9376",
               "--session-affinity=ClientIP")
    vip = _get(up, "svc", "sticky")["spec"]["clusterIP"]
    wait(lambda: _exec(up, pod, f"wget -q -T 1 -O- http://{vip}/").returncode == 0, 30, "sticky programmed")
    out = _exec(up, pod, loop.format(n=60, url=f"http://{vip}/")).stdout
    r["sticky"] = dict(Counter(ln.strip() for ln in out.split() if ln.strip()))
    up.kubectl("create", "service", "clusterip", "empty", "--tcp=80:80")  # selects nothing: no endpoints
    empty = _get(up, "svc", "empty")["spec"]["clusterIP"]
    probe = f"curl -s -o /dev/null -w '%{{time_total}}' --max-time 5 http://{empty}/; echo \" $?\""
    wait(lambda: (o := _exec(up, pod, probe).stdout.split()) and o[-1] == "7", 30, "the empty Service refusing")
    # then five in a row: [seconds, curl's exit code] each (one may meet the kernel's ICMP rate limit
    # under load and wait for a SYN retransmit; the test takes the median)
    out = _exec(up, pod, f"for i in 1 2 3 4 5; do {probe}; done").stdout
    r["empty"] = [[float(t), code] for t, code in (ln.split() for ln in out.splitlines() if ln.strip())]


def _apply(up: Any, *objs: dict[str, Any]) -> None:
    up.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objs))


def _svc(name: str, selector: dict[str, str] | None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 9376}], **spec}}
    if selector is not None:
        body["spec"]["selector"] = selector
    return body


def _pod(name: str, labels: dict[str, str], **container: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "c", "image": "registry.k8s.io/serve_hostname", "ports": [{"containerPort": 9376}],
                **container}]}}


def _answers(up: Any, pod: str, url: str, n: int = 30) -> Counter[str]:
    out = _exec(up, pod, f"for i in $(seq {n}); do wget -q -T 1 -O- {url} || echo fail; echo; done").stdout
    return Counter(ln.strip() for ln in out.split() if ln.strip())


def proxy_more(up: Any, ctx: dict[str, Any], r: dict[str, Any]) -> None:
    """Issue 5, continued: hairpin, internalTrafficPolicy Local, a readiness flip, and a rolling
    update under a steady request loop."""
    client = sorted(ctx["pods"])[0]
    tag = f"/tmp/sn-unready-{int(time.time() * 1000)}"  # the flip's flag files (pod /tmp, by exec)
    probe = {"exec": {"command": ["sh", "-c", f"! test -e {tag}-$(hostname)"]}, "periodSeconds": 1,
             "failureThreshold": 1, "successThreshold": 1}
    # upstream's recipe for a rollout without failed requests: readiness gates new pods, and the preStop
    # sleep outlasts the proxy's reaction to a terminating endpoint. `servicenet up` runs its proxy with
    # kube-proxy's default --min-sync-period of 1 s, so during a rollout's stream of changes a removal
    # may wait up to 1 s for its sync, plus the slice's way there: a 1 s sleep had no margin (CI once saw
    # one refused connection under load), 3 s has.
    roll_tmpl = {"metadata": {"labels": {"app": "roll"}}, "spec": {"terminationGracePeriodSeconds": 6, "containers": [{
        "name": "c", "image": "registry.k8s.io/serve_hostname", "env": [{"name": "V", "value": "1"}],
        "ports": [{"containerPort": 9376}], "lifecycle": {"preStop": {"sleep": {"seconds": 3}}},
        "readinessProbe": {"httpGet": {"path": "/", "port": 9376}, "periodSeconds": 1}}]}}
    _apply(up, _pod("self", {"app": "self"}), _svc("self", {"app": "self"}),
           *(_pod(f"flip-{i}", {"app": "flip"}, readinessProbe=probe) for i in range(3)), _svc("flip", {"app": "flip"}),
           {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "roll"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "roll"}}, "template": roll_tmpl}},
           _svc("roll", {"app": "roll"}))
    # internalTrafficPolicy: Local -> only the endpoints the slice puts on this node
    here, elsewhere = sorted(ctx["pods"].items())[0], sorted(ctx["pods"].items())[1:]
    for name, itp in (("itp-local", "Local"), ("itp-cluster", "Cluster")):
        _apply(up, _svc(name, None, internalTrafficPolicy=itp), {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-1", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 9376, "protocol": "TCP"}],
            "endpoints": [{"addresses": [here[1]], "nodeName": "node-1", "conditions": {"ready": True}}] +
                         [{"addresses": [ip], "nodeName": "node-2", "conditions": {"ready": True}} for _, ip in elsewhere]})
    vips = {n: _get(up, "svc", n)["spec"]["clusterIP"] for n in ("self", "flip", "roll", "itp-local", "itp-cluster")}
    names = set(ctx["pods"])
    r["itp_local"] = sorted(wait(lambda: set(a := _answers(up, client, f"http://{vips['itp-local']}/")) == {here[0]}
                                 and a, 30, "itp Local"))
    r["itp_cluster"] = sorted(wait(lambda: set(a := _answers(up, client, f"http://{vips['itp-cluster']}/")) == names
                                   and a, 30, "itp Cluster"))
    wait(lambda: all(_ready(p) for p in _get(up, "pods", "-l", "app in (self,flip,roll)")["items"]) and
         len(_get(up, "pods", "-l", "app in (self,flip,roll)")["items"]) == 7, 90, "self, flip and roll pods ready")
    r["hairpin"] = dict(wait(lambda: set(a := _answers(up, "self", f"http://{vips['self']}/", 10)) == {"self"} and a,
                             30, "hairpin"))
    flips = {f"flip-{i}" for i in range(3)}
    wait(lambda: set(_answers(up, client, f"http://{vips['flip']}/")) == flips, 30, "flip programmed")
    _exec(up, "flip-0", f"touch {tag}-flip-0")
    r["flip_unready"] = dict(wait(lambda: set(a := _answers(up, client, f"http://{vips['flip']}/")) ==
                                  flips - {"flip-0"} and a, 30, "flip-0 out of rotation"))
    _exec(up, "flip-0", f"rm {tag}-flip-0")
    r["flip_back"] = sorted(wait(lambda: set(a := _answers(up, client, f"http://{vips['flip']}/")) == flips and a,
                                 30, "flip-0 back"))
    # rolling update under a steady request loop: no request may fail
    old = {p["metadata"]["name"] for p in _get(up, "pods", "-l", "app=roll")["items"]}
    wait(lambda: set(_answers(up, client, f"http://{vips['roll']}/")) == old, 30, "roll programmed")
    loop = (f"i=0; while [ $i -lt 5000 ] && [ ! -e {tag}-stop ]; do i=$((i+1)); "
            f"curl -s --max-time 2 http://{vips['roll']}/ || echo fail$?; echo; done")  # as test_proxy_netns
    loader = subprocess.Popen(["kubectl", "exec", client, "--", "sh", "-c", loop], env=up.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        up.kubectl("set", "env", "deployment/roll", "V=2")
        up.kubectl("rollout", "status", "deployment/roll", "--timeout=90s")
        wait(lambda: not old & {p["metadata"]["name"] for p in _get(up, "pods", "-l", "app=roll")["items"]}, 60,
             "old roll pods gone")
        time.sleep(1)
    finally:
        _exec(up, client, f"touch {tag}-stop")
        out, _ = loader.communicate(timeout=60)
        _exec(up, client, f"rm -f {tag}-stop")
    new = {p["metadata"]["name"] for p in _get(up, "pods", "-l", "app=roll")["items"]}
    r["roll"] = {"old": sorted(old), "new": sorted(new),
                 "counts": dict(Counter(ln.strip() for ln in out.split() if ln.strip()))}


WALKS = {"kubectl": kubectl_basics, "workloads": workloads, "dns": dns, "proxy": proxy, "proxy_more": proxy_more}


def run_all(up: Any, holder: str, node_ns: str, manifests: Path, res: dict[str, Any]) -> None:
    ctx = {"holder": holder, "node_ns": node_ns, "manifests": manifests, "pods": res["pods"]}
    for name, walk in WALKS.items():
        r: dict[str, Any] = {}
        t0 = time.monotonic()
        try:
            walk(up, ctx, r)
        except (Exception, SystemExit):  # recorded (Up.kubectl exits on an error); its test fails on it
            r["error"] = traceback.format_exc()[-3000:]
        r["seconds"] = round(time.monotonic() - t0, 1)
        res[f"walk_{name}"] = r
