"""Real pods in network namespaces (root): per-pod IP, hostname, resolv.conf, volumes, cleanup."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

import pytest

from servicenet.node.network import NetnsNetwork
from servicenet.node.runtime import PodRuntime, RuntimeConfig

from .nodeutil import cond, make_pod, netns_runtime, until

pytestmark = pytest.mark.root
Obj = dict[str, Any]


@pytest.fixture
async def nrt(tmp_path: Any) -> Any:
    async with netns_runtime(tmp_path, "10.244.7.0/24", cluster_dns=["10.96.0.10"]) as rt:
        yield rt


async def http_get(net: NetnsNetwork, ip: str, port: int) -> str:
    reader, writer = await net.connect(ip, port)
    writer.write(f"GET / HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data.split(b"\r\n\r\n", 1)[1].decode()


async def test_pods_get_own_ip_hostname_and_resolv_conf(nrt: PodRuntime) -> None:
    net = nrt.network
    assert isinstance(net, NetnsNetwork)
    pods = [make_pod(f"web-{i}", [{"name": "c", "image": "k8s.gcr.io/serve_hostname"}], ns="team")
            for i in range(2)]
    pods[1]["spec"].update(hostname="web-1", subdomain="web")
    for p in pods:
        nrt.sync_pod(p)
    await until(lambda: all(cond(p, "Ready") == "True" for p in pods), timeout=10)
    ips = [p["status"]["podIP"] for p in pods]
    assert len(set(ips)) == 2 and all(ip.startswith("10.244.7.") for ip in ips)
    for p, ip in zip(pods, ips, strict=True):
        body = await until_async(lambda ip=ip: http_get(net, ip, 9376))
        assert body == p["metadata"]["name"]
    w = nrt.by_name("team", "web-1")
    assert w is not None
    run = w.runs[0]
    out = subprocess.run(w.exec_argv(run, ["hostname"]), capture_output=True, text=True, check=True).stdout
    assert out.strip() == "web-1"
    resolv = subprocess.run(w.exec_argv(run, ["cat", "/etc/resolv.conf"]), capture_output=True, text=True,
                            check=True).stdout
    assert resolv.splitlines()[:2] == ["nameserver 10.96.0.10",
                                      "search team.svc.cluster.local svc.cluster.local cluster.local"
                                      + _host_search()]
    assert resolv.splitlines()[-1] == "options ndots:5"
    hosts = subprocess.run(w.exec_argv(run, ["cat", "/etc/hosts"]), capture_output=True, text=True,
                           check=True).stdout
    assert f"{ips[1]}\tweb-1.web.team.svc.cluster.local\tweb-1" in hosts
    addr = subprocess.run(w.exec_argv(run, ["ip", "-4", "-o", "addr", "show", "eth0"]), capture_output=True,
                          text=True, check=True).stdout
    assert f"{ips[1]}/24" in addr
    # hairpin + pod-to-pod through the bridge from inside pod 0
    w0 = nrt.by_name("team", "web-0")
    assert w0 is not None
    code = subprocess.run(w0.exec_argv(w0.runs[0], ["python3", "-c",
                          f"import urllib.request;print(urllib.request.urlopen('http://{ips[1]}:9376',timeout=2).read().decode())"]),
                          capture_output=True, text=True, timeout=10)
    assert code.stdout.strip() == "web-1"


def _host_search() -> str:
    return "" if not RuntimeConfig("x", "/").host_resolv.searches else " " + " ".join(
        RuntimeConfig("x", "/").host_resolv.searches)


async def until_async(fn: Any, timeout: float = 5.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await fn()
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_configmap_volume_and_nginx(nrt: PodRuntime) -> None:
    cm = {"metadata": {"name": "page", "namespace": "default"}, "data": {"index.html": "hello from cm"}}

    async def fetch(kind: str, ns: str, name: str) -> Obj | None:
        return cm if (kind, name) == ("configmaps", "page") else None
    nrt.fetch = fetch
    pod = make_pod("nx", [{"name": "nginx", "image": "nginx:1.27", "ports": [{"containerPort": 80}],
                           "volumeMounts": [{"name": "html", "mountPath": "/usr/share/nginx/html"}]}],
                   volumes=[{"name": "html", "configMap": {"name": "page"}}])
    nrt.sync_pod(pod)
    await until(lambda: cond(pod, "Ready") == "True", timeout=10)
    body = await until_async(lambda: http_get(nrt.network, pod["status"]["podIP"], 80))  # type: ignore[arg-type]
    assert body == "hello from cm"
    with open("/usr/share/nginx/html/index.html") as f:  # the host file is untouched
        assert "hello from cm" not in f.read()
