"""The pure parts of the multi-machine topology: the control-plane plan, the ``kubernetes``
endpoint leases' liveness, and the ``servicenet/dns`` image's in-cluster kubeconfig."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from servicenet.client import ApiClient, rest
from servicenet.client.kubeconfig import load
from servicenet.cluster.cpplan import control_plane, etcd_argv, host_commands
from servicenet.cluster.endpointleases import LABEL, live_addresses, subsets
from servicenet.cluster.plan import plan
from servicenet.node.images.dns import in_cluster_kubeconfig
from servicenet.node.podspec import image_program


def test_control_plane_plan() -> None:
    p = plan("a1b", 3)
    cp = control_plane(p, 3, 2)
    assert [(h.name, h.netns, h.ip, h.lan_veth) for h in cp.etcd] == [
        ("etcd-1", "sn-a1b-etcd1", "192.168.77.31", "sn-a1b-e1"), ("etcd-2", "sn-a1b-etcd2", "192.168.77.32", "sn-a1b-e2"),
        ("etcd-3", "sn-a1b-etcd3", "192.168.77.33", "sn-a1b-e3")]
    assert [(h.name, h.netns, h.ip) for h in cp.apiservers] == [("apiserver-1", "sn-a1b-api1", "192.168.77.21"),
                                                                ("apiserver-2", "sn-a1b-api2", "192.168.77.22")]
    assert all(p.owns(h.netns) for h in (*cp.etcd, *cp.apiservers))  # teardown finds them
    assert [cp.apiserver_for(n).name for n in p.nodes] == ["apiserver-1", "apiserver-2", "apiserver-1"]
    assert cp.initial_cluster == ("etcd-1=https://192.168.77.31:2380,etcd-2=https://192.168.77.32:2380,"
                                  "etcd-3=https://192.168.77.33:2380")
    cmds = host_commands(p, cp.apiservers[0])
    assert ["ip", "-n", "sn-a1b-api1", "addr", "add", "192.168.77.21/24", "dev", "eth0"] in cmds
    assert [c[-3:] for c in cmds if "route" in c] == [["10.244.1.0/24", "via", "192.168.77.11"],
                                                     ["10.244.2.0/24", "via", "192.168.77.12"],
                                                     ["10.244.3.0/24", "via", "192.168.77.13"]]
    assert not any("ip_forward" in " ".join(c) for c in cmds)
    argv = etcd_argv("etcd", cp, cp.etcd[1], "/d", {"ca": "ca", "cert": "c", "key": "k"})
    assert argv[argv.index("--listen-client-urls") + 1] == "https://192.168.77.32:2379"
    assert "--client-cert-auth" in argv and "--peer-client-cert-auth" in argv
    with pytest.raises(ValueError):
        control_plane(p, 0, 1)
    with pytest.raises(ValueError):
        control_plane(p, 3, 6)


def _lease(ip: str, renewed: datetime, ttl: int = 15, labelled: bool = True) -> dict:  # type: ignore[type-arg]
    return {"metadata": {"name": ip, "labels": {LABEL: "true"} if labelled else {}},
            "spec": {"holderIdentity": ip, "leaseDurationSeconds": ttl,
                     "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}


def test_live_endpoint_addresses() -> None:
    now = datetime(2026, 12, 4, tzinfo=UTC)
    leases = [_lease("10.0.0.2", now - timedelta(seconds=3)), _lease("10.0.0.1", now - timedelta(seconds=14)),
              _lease("10.0.0.3", now - timedelta(seconds=15)),  # expired exactly now
              _lease("10.0.0.4", now, labelled=False), {"metadata": {"labels": {LABEL: "true"}}, "spec": {}}]
    assert live_addresses(leases, now) == ["10.0.0.1", "10.0.0.2"]
    assert live_addresses(leases, now, exclude="10.0.0.1") == ["10.0.0.2"]
    assert live_addresses(leases, now + timedelta(seconds=20)) == []
    assert subsets(["10.0.0.1"], 6443) == [{"addresses": [{"ip": "10.0.0.1"}],
                                            "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]


def test_dns_image_in_cluster_config(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("tok\n")
    (tmp_path / "ca.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    path = tmp_path / "kc"
    path.write_text(in_cluster_kubeconfig({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"},
                                          str(tmp_path)))
    cfg = load(path)
    assert (cfg.server, cfg.token, cfg.ca_data) == ("https://10.96.0.1:443", "tok", b"-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(SystemExit):
        in_cluster_kubeconfig({}, str(tmp_path))
    assert [image_program(i) for i in ("servicenet/dns", "servicenet/dns:0.1", "coredns/coredns", "dns")] == [
        "dns", "dns", None, None]


async def test_client_takes_up_a_rotated_token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The DNS pods' client (kubeconfig with ``tokenFile``) follows the agent's token rotation."""
    (tmp_path / "token").write_text("old\n")
    (tmp_path / "ca.crt").write_bytes(b"")
    kc = tmp_path / "kc"
    kc.write_text(in_cluster_kubeconfig({"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "1"},
                                        str(tmp_path)))
    c = ApiClient.from_kubeconfig(kc)
    try:
        assert c.session.headers["Authorization"] == "Bearer old"
        new = tmp_path / "token.new"
        new.write_text("new\n")
        new.replace(tmp_path / "token")  # as the atomic writer swaps it
        assert c.session.headers["Authorization"] == "Bearer old"  # not looked at again yet
        monkeypatch.setattr(rest, "TOKEN_RECHECK", 0.0)
        assert c.session.headers["Authorization"] == "Bearer new"
    finally:
        await c.close()
