"""The fixed parts of the ingress benchmark: the backend nginx (the application), the hand-written
reverse-proxy nginx (the walkthrough's nginx.conf) and wrk."""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import textwrap
import time
from pathlib import Path

BACKEND_CONF = """\
worker_processes 1;
pid {d}/backend.pid;
error_log {d}/backend.err;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    server {{
        listen {port} reuseport; listen {port2};
        location = /1m {{ root {d}/www; }}
        location / {{ default_type text/plain; return 200 "port $server_port $server_addr\\n"; }}
    }}
}}
"""

# The walkthrough's reverse proxy, by hand: TLS for bbs.test.com, / to the UI and /api, /signin,
# /signout to the API (keep-alive upstreams), the reverse-proxy headers, 300 s timeouts, 200 MB bodies.
PROXY_CONF = """\
worker_processes {workers};
pid {d}/proxy.pid;
error_log {d}/proxy.err;
events {{ worker_connections 8192; }}
http {{
    access_log {d}/proxy-access.log;  # nginx's default: a combined-format line per request
    keepalive_requests 1000000;
    upstream ui  {{ server 127.0.0.1:{ui}; keepalive 64; }}
    upstream api {{ server 127.0.0.1:{api}; keepalive 64; }}
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    server {{
        listen 127.0.0.1:{https} ssl http2;
        listen 127.0.0.1:{http};
        server_name bbs.test.com;
        ssl_certificate {d}/tls.pem;
        ssl_certificate_key {d}/tls.pem;
        ssl_protocols TLSv1.2 TLSv1.3;  # as HAProxy (nginx 1.22's default stops at TLS 1.2, whose resumed
                                        # handshakes wrk's reconnects get: not the same work as TLS 1.3)
        client_max_body_size 200m;
        proxy_http_version 1.1;
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_read_timeout 300s;
        proxy_send_timeout 300s;
        location / {{ proxy_pass http://ui; }}
        location /api {{ proxy_pass http://api; }}
        location /signin {{ proxy_pass http://api; }}
        location /signout {{ proxy_pass http://api; }}
    }}
}}
"""


class Nginx:
    def __init__(self, d: Path, name: str, conf: str) -> None:
        self.d = d
        self.conf = d / f"{name}.conf"
        self.conf.write_text(conf)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        subprocess.run(["nginx", "-t", "-q", "-c", str(self.conf), "-p", str(self.d)], check=True)
        self.proc = subprocess.Popen(["nginx", "-c", str(self.conf), "-p", str(self.d), "-g", "daemon off;"],
                                     start_new_session=True)

    def pids(self) -> list[int]:
        if self.proc is None:
            return []
        return [self.proc.pid, *children(self.proc.pid)]

    def stop(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
            self.proc = None


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    kids = [int(p) for p in out]
    return kids + [g for k in kids for g in children(k)]


def rss_mb(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (all their threads) so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def wrk(url: str, conns: int, duration: float, *headers: str) -> dict[str, float]:
    """wrk (1 thread): requests/s, p99 latency (ms), bytes/s, errors, and the share of one core wrk
    itself used (near 1.0: the client, not the proxy, set the pace)."""
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{int(duration)}s", "--latency"]
    for h in headers:
        argv += ["-H", h]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = subprocess.run(argv + [url], capture_output=True, text=True, timeout=duration + 30)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) / max(int(duration), 1)
    out = res.stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"wrk {url}: {out}{res.stderr}")
    rps = float(found.group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)] if m else float("nan")
    t = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", out)
    bps = float(t.group(1)) * {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[t.group(2)] if t else 0.0
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    n_err = (sum(int(x) for x in errs.groups()) if errs else 0) + (int(non2xx.group(1)) if non2xx else 0)
    return {"rps": rps, "p99_ms": p99, "bps": bps, "errors": n_err, "wrk_cpu": wrk_cpu}


def write_1m(d: Path) -> None:
    """The 1 MiB file the backend serves (nginx workers run unprivileged: world-readable path)."""
    os.chmod(d, 0o711)
    (d / "www").mkdir(exist_ok=True, mode=0o755)
    (d / "www" / "1m").write_bytes(os.urandom(1 << 20))
    os.chmod(d / "www" / "1m", 0o644)


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {port}")


__all__ = ["BACKEND_CONF", "PROXY_CONF", "Nginx", "cpu_seconds", "rss_mb", "textwrap", "wait_port", "write_1m", "wrk"]
