"""resolv.conf / hosts rendering, hostnames and image programs (pure)."""

from __future__ import annotations

import pytest

from servicenet.node.podspec import (
    HostResolv,
    ImageNotRunnable,
    container_argv,
    image_program,
    parse_resolv_conf,
    pod_hostname,
    render_hosts,
    render_resolv_conf,
)

HOST = HostResolv(nameservers=("192.0.2.53",), searches=("corp.example",), options=("edns0",))


def pod(**spec: object) -> dict:
    return {"metadata": {"name": "web-0", "namespace": "team"}, "spec": {"containers": [], **spec}}


def test_cluster_first() -> None:
    assert render_resolv_conf(pod(), ["10.96.0.10"], "cluster.local", HostResolv()) == (
        "nameserver 10.96.0.10\n"
        "search team.svc.cluster.local svc.cluster.local cluster.local\n"
        "options ndots:5\n")
    # host search domains are appended, as the kubelet does
    assert render_resolv_conf(pod(), ["10.96.0.10"], "cluster.local", HOST).splitlines()[1] == (
        "search team.svc.cluster.local svc.cluster.local cluster.local corp.example")


def test_default_none_and_dns_config() -> None:
    assert render_resolv_conf(pod(dnsPolicy="Default"), ["10.96.0.10"], "cluster.local", HOST) == (
        "nameserver 192.0.2.53\nsearch corp.example\noptions edns0\n")
    cfg = {"nameservers": ["1.2.3.4"], "searches": ["a.example"],
           "options": [{"name": "ndots", "value": "2"}, {"name": "single-request"}]}
    assert render_resolv_conf(pod(dnsPolicy="None", dnsConfig=cfg), ["10.96.0.10"], "cluster.local", HOST) == (
        "nameserver 1.2.3.4\nsearch a.example\noptions ndots:2 single-request\n")
    out = render_resolv_conf(pod(dnsConfig=cfg), ["10.96.0.10"], "cluster.local", HostResolv())
    assert out == ("nameserver 10.96.0.10\nnameserver 1.2.3.4\n"
                   "search team.svc.cluster.local svc.cluster.local cluster.local a.example\n"
                   "options ndots:2 single-request\n")
    # hostNetwork + ClusterFirst behaves like Default; ClusterFirstWithHostNet keeps cluster DNS
    assert render_resolv_conf(pod(hostNetwork=True), ["10.96.0.10"], "cluster.local", HOST).startswith(
        "nameserver 192.0.2.53")
    assert render_resolv_conf(pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"), ["10.96.0.10"],
                              "cluster.local", HOST).startswith("nameserver 10.96.0.10")


def test_parse_resolv_conf() -> None:
    text = "# comment\nnameserver 127.0.0.53\nsearch a b\noptions edns0 trust-ad\nnameserver ::1\n"
    assert parse_resolv_conf(text) == HostResolv(("127.0.0.53", "::1"), ("a", "b"), ("edns0", "trust-ad"))


def test_hosts_file() -> None:
    base = ("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
    assert render_hosts(pod(), ["10.244.0.5"], "cluster.local") == base + "10.244.0.5\tweb-0\n"
    p = pod(hostname="db", subdomain="dbs", hostAliases=[{"ip": "127.0.0.2", "hostnames": ["foo", "bar"]}])
    assert render_hosts(p, ["10.244.0.5"], "cluster.local") == (
        base + "10.244.0.5\tdb.dbs.team.svc.cluster.local\tdb\n\n# Entries added by HostAliases.\n"
        "127.0.0.2\tfoo\tbar\n")


def test_hostname() -> None:
    assert pod_hostname(pod()) == "web-0"
    assert pod_hostname(pod(hostname="h")) == "h"
    long = {"metadata": {"name": "a" * 62 + "-b"}, "spec": {}}
    assert pod_hostname(long) == "a" * 62


@pytest.mark.parametrize(("image", "prog"), [
    ("k8s.gcr.io/serve_hostname", "serve_hostname"), ("registry.k8s.io/serve_hostname:v1.4", "serve_hostname"),
    ("nginx", "nginx"), ("docker.io/library/nginx:1.27@sha256:abc", "nginx"), ("busybox:1.36", "idle"),
    ("tutum/dnsutils", "idle"), ("registry.k8s.io/e2e-test-images/jessie-dnsutils:1.3", "idle"),
    ("quay.io/app/thing:2", None),
])
def test_image_program(image: str, prog: str | None) -> None:
    assert image_program(image) == prog


def test_container_argv() -> None:
    assert container_argv({"image": "x", "command": ["sleep"], "args": ["5"]}) == ["sleep", "5"]
    assert container_argv({"image": "busybox", "args": ["sh", "-c", "true"]}) == ["sh", "-c", "true"]
    assert container_argv({"image": "nginx"}, python="py") == ["py", "-m", "servicenet.node.images.nginx"]
    with pytest.raises(ImageNotRunnable):
        container_argv({"image": "quay.io/app/thing:2"})
