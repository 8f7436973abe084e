"""Where Services are reachable from the host in the rootless modes (pure core)."""

from __future__ import annotations

from servicenet.proxy import published as pub


def svc(type_: str = "ClusterIP", ports: list[dict] | None = None, ip: str = "10.96.0.20",
        annotations: dict[str, str] | None = None) -> dict:
    return {"metadata": {"namespace": "default", "name": "web", "annotations": annotations or {}},
            "spec": {"type": type_, "clusterIP": ip, "ports": ports or []}}


def test_only_tcp_node_ports_are_forwarded() -> None:
    s = svc("NodePort", [{"name": "http", "port": 80, "nodePort": 30080},
                         {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
                         {"name": "none", "port": 81}])
    assert pub.service_forwards(s, "10.244.0.1") == [pub.Forward(30080, "10.244.0.1", 30080, "default/web:http")]
    assert pub.service_forwards(svc("ClusterIP", [{"port": 80, "nodePort": 30081}]), "10.244.0.1") == []
    assert pub.host_ports_annotation(s, "10.244.0.1") == "http 127.0.0.1:30080 -> 10.244.0.1:30080"


def test_fixed_forwards_win_a_clash() -> None:
    lb = svc("LoadBalancer", [{"name": "a", "port": 80, "nodePort": 8080}])
    fixed = (pub.Forward(8080, "10.244.0.1", 80, "ingress-http"),)
    assert pub.desired_forwards([lb], "10.244.0.1", fixed)[8080].owner == "ingress-http"
    assert pub.desired_forwards([lb], "10.244.0.1")[8080].owner == "default/web:a"


def test_low_ports_get_the_documented_offset() -> None:
    s = svc(ports=[{"port": 80}, {"port": 53, "protocol": "UDP"}, {"port": 8080}])
    assert pub.offset_port(80) == 10080 and pub.offset_port(1024) == 1024
    assert pub.loopback_ports_annotation(s) == ("80/TCP served at 10.96.0.20:10080, "
                                                "53/UDP served at 10.96.0.20:10053")
    assert pub.loopback_ports_annotation(svc(ports=[{"port": 8080}])) is None


def test_annotation_patch_only_on_change() -> None:
    s = svc(annotations={pub.LOOPBACK_PORTS: "x"})
    assert pub.annotation_patch(s, pub.LOOPBACK_PORTS, "x") is None
    assert pub.annotation_patch(s, pub.LOOPBACK_PORTS, None) == {"metadata": {"annotations": {pub.LOOPBACK_PORTS: None}}}
    assert pub.annotation_patch(svc(), pub.HOST_PORTS, None) is None


def test_a_lowered_unprivileged_port_start_needs_no_offset() -> None:
    s = svc(ports=[{"port": 80}, {"port": 22}])
    assert pub.loopback_ports_annotation(s, below=0) is None
    assert pub.loopback_ports_annotation(s, below=50) == "22/TCP served at 10.96.0.20:10022"
    assert pub.offset_port(80, below=0) == 80
