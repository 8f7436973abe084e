"""The walkthrough's objects (selector-less Services + EndpointSlices for two outside machines, the
TLS Secret and the bbs.test.com Ingress) as YAML for kubectl, and the checks both modes share."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path
from typing import Any

from .harness import run

INGRESS_YAML = """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: bbs
  namespace: default
  annotations:
    nginx.ingress.kubernetes.io/proxy-body-size: 200m
    nginx.ingress.kubernetes.io/proxy-read-timeout: "300"
    nginx.ingress.kubernetes.io/proxy-send-timeout: "300"
spec:
  ingressClassName: servicenet
  tls:
  - hosts: [bbs.test.com]
    secretName: bbs-tls
  rules:
  - host: bbs.test.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: bbs-ui, port: {number: 8001}}}}
      - {path: /api, pathType: Prefix, backend: {service: {name: bbs-api, port: {number: 8004}}}}
      - {path: /signin, pathType: Prefix, backend: {service: {name: bbs-api, port: {number: 8004}}}}
      - {path: /signout, pathType: Prefix, backend: {service: {name: bbs-api, port: {number: 8004}}}}
"""


def backends_yaml(ui: tuple[str, int], api: tuple[str, int]) -> str:
    docs = []
    for name, (ip, port), sport in (("bbs-ui", ui, 8001), ("bbs-api", api, 8004)):
        docs.append(f"""\
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  ports: [{{name: http, port: {sport}, targetPort: {port}, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: default
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: {port}, protocol: TCP}}]
endpoints:
- addresses: ["{ip}"]
  conditions: {{ready: true}}
""")
    return "---\n".join(docs)


def secret_yaml(crt: bytes, key: bytes) -> str:
    return f"""\
apiVersion: v1
kind: Secret
type: kubernetes.io/tls
metadata: {{name: bbs-tls, namespace: default}}
data:
  tls.crt: {base64.b64encode(crt).decode()}
  tls.key: {base64.b64encode(key).decode()}
"""


async def https_get(curl_prefix: list[str], ca: Path, node: str, port: int, path: str,
                    *extra: str) -> tuple[int, Any]:
    url_port = "" if port == 443 else f":{port}"
    rc, out = await run(*curl_prefix, "curl", "-sS", "--max-time", "30", "--cacert", str(ca), "--resolve",
                        f"bbs.test.com:{port}:{node}", "-w", "\n%{http_code}", *extra,
                        f"https://bbs.test.com{url_port}{path}", timeout=120)
    assert rc == 0, out
    body, _, code = out.rpartition("\n")
    try:
        return int(code), json.loads(body)
    except ValueError:
        return int(code), body


def declared_length_status(host: str, port: int, length: int) -> int:
    """Send only the headers of a request declaring ``length`` bytes: the status the proxy answers."""
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(f"POST /api/upload HTTP/1.1\r\nHost: bbs.test.com\r\nContent-Length: {length}\r\n"
                  "Content-Type: application/octet-stream\r\n\r\n".encode())
        data = s.recv(4096).decode(errors="replace")
    return int(data.split()[1])


async def check_walkthrough(curl_prefix: list[str], ca: Path, node: str, https_port: int, http_port: int,
                            upload_mb: tuple[int, int] = (150, 250), tmp: Path | None = None) -> None:
    """The walkthrough's acceptance answers through ``node``:``https_port``."""
    for path, who in (("/api/x", "api"), ("/", "ui"), ("/anything", "ui"), ("/signin", "api"),
                      ("/apix", "ui"), ("/signout/now", "api")):
        code, body = await https_get(curl_prefix, ca, node, https_port, path)
        assert code == 200 and body["name"] == who, (path, code, body)
        h = body["headers"]
        host = "bbs.test.com" if https_port == 443 else f"bbs.test.com:{https_port}"
        assert h["host"] == host and h["x-forwarded-proto"] == "https", h
        assert body["x_forwarded_for"] and h["x-real-ip"], h
        assert h["x-forwarded-host"] == host and h["x-forwarded-port"] == str(https_port), h
    # plain HTTP answers with a 308 to the HTTPS URL (with the port when it is not 443)
    url_port = "" if http_port == 80 else f":{http_port}"
    rc, out = await run(*curl_prefix, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                        "-H", "Host: bbs.test.com", f"http://{node}{url_port}/api/x?q=1")
    want = f"https://bbs.test.com{'' if https_port == 443 else f':{https_port}'}/api/x?q=1"
    assert out.strip() == f"308 {want}", out
    # body limit 200 MB: a smaller upload passes, a larger one gets 413
    ok_mb, big_mb = upload_mb
    assert tmp is not None
    blob = tmp / "upload.bin"
    with open(blob, "wb") as f:
        f.truncate(ok_mb * 1024 * 1024)
    code, body = await https_get(curl_prefix, ca, node, https_port, "/api/upload", "--http1.1", "--data-binary", f"@{blob}",
                                 "-H", "Content-Type: application/octet-stream")
    assert code == 200 and body["body_bytes"] == ok_mb * 1024 * 1024, (code, str(body)[:300])
    blob.unlink()
    with open(blob, "wb") as f:
        f.truncate(big_mb * 1024 * 1024)
    code, _ = await https_get(curl_prefix, ca, node, https_port, "/api/upload", "--http1.1", "--data-binary", f"@{blob}",
                              "-H", "Content-Type: application/octet-stream")
    assert code == 413, code
    blob.unlink()
