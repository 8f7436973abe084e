"""User-space instructions per request of servicenet's HAProxy configuration and of the bench's nginx,
side by side, under valgrind's callgrind: a figure the machine's load does not move (requests per
second and even CPU time per request do, by tens of percent on a shared 2-core machine).

Each proxy runs as one process with one thread (HAProxy ``nbthread 1``, nginx ``master_process off``)
in front of the same nginx backend; after a warm-up the counters are zeroed, wrk runs for a few
seconds, and the instructions executed since are divided by the requests wrk completed. The HAProxy
configuration is the renderer's own for the walkthrough's Ingress (``render.render``), with its
access log written to a pipe that is drained here, as the controller does. Kernel work (syscalls,
TCP) is not counted: it is about the same on both sides (see docs/benchmarks.md).

    python -m bench.ingress.instructions [--cases http,https,tls,1m] [--seconds 4]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import callgrind  # noqa: E402
from bench.ingress.peers import BACKEND_CONF, PROXY_CONF, Nginx, wait_port, write_1m  # noqa: E402
from bench.ingress.run import HOST, _bbs, _secret  # noqa: E402
from servicenet.ingress import render as rd  # noqa: E402
from servicenet.ingress.certs import self_signed  # noqa: E402
from servicenet.ingress.core import Inputs, compile_table  # noqa: E402
from tests.ingress.harness import free_port  # noqa: E402
from tests.ingress.objects import CLASS, service, slice_  # noqa: E402

CASES = {  # url, connections, headers (as bench.ingress.run's data-path cases)
    "http": ("http://127.0.0.1:{p}/api/x", 8, (f"Host: {HOST}",)),
    "https": ("https://127.0.0.1:{s}/api/x", 8, (f"Host: {HOST}",)),
    "tls": ("https://127.0.0.1:{s}/api/x", 8, (f"Host: {HOST}", "Connection: close")),
    "1m": ("https://127.0.0.1:{s}/1m", 4, (f"Host: {HOST}",)),
}


def haproxy_config(d: Path, pem: bytes, backend_port: int, http: int, https: int) -> str:
    """The renderer's configuration for the walkthrough's Ingress, its files written under ``d``."""
    (d / "certs").mkdir(parents=True, exist_ok=True)
    (d / "certs" / "default.pem").write_bytes(pem)
    svcs = {f"default/{n}": service(n, [("http", p)]) for n, p in (("ui", 8001), ("api", 8004))}
    slices = {f"default/{n}": [slice_(n, ["127.0.0.1"], [("http", backend_port)])] for n in ("ui", "api")}
    table = compile_table(Inputs(classes=(CLASS,), ingresses=(_bbs(),), services=svcs, slices=slices,
                                 secrets={"default/bbs-tls": _secret(pem)}))
    for c in table.certs:
        (d / "certs" / c.name).write_bytes(c.pem)
    files = rd.Files(str(d), "stdout", "", ("nbthread 1",))
    (d / "crt-list.txt").write_text(rd.crt_list(table, files))
    for name, text in rd.map_files(table).items():
        (d / name).write_text(text)
    return rd.render(table, rd.plan_slots(table), rd.Listen(("127.0.0.1",), http, https), files)


def _wrk(url: str, conns: int, seconds: int, headers: tuple[str, ...]) -> int:
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", *[x for h in headers for x in ("-H", h)], url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    found = re.search(r"(\d+) requests in", out)
    if not found:
        raise RuntimeError(f"wrk: {out}")
    return int(found.group(1))


def _children(pid: int) -> list[str]:
    return subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()


def per_request(d: Path, name: str, argv: list[str], port: int, url: str, conns: int,
                headers: tuple[str, ...], seconds: int) -> tuple[int, float]:
    """(requests, instructions per request) of ``argv`` run under callgrind."""
    out = d / f"cg-{name}"
    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    fcntl.fcntl(rfd, fcntl.F_SETPIPE_SZ, 1 << 20)
    stop = threading.Event()

    def drain() -> None:  # the access log, read as the controller reads it
        while not stop.is_set():
            time.sleep(0.01)
            try:
                while os.read(rfd, 1 << 20):
                    pass
            except BlockingIOError:
                pass
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--trace-children=yes",
                             f"--callgrind-out-file={out}.%p", *argv], stdout=wfd, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    os.close(wfd)
    try:
        wait_port(port, 120)
        _wrk(url, conns, 2, headers)  # warm-up: connections, code paths, TLS tickets
        pids = [str(proc.pid), *_children(proc.pid)]
        for pid in pids:
            subprocess.run(["callgrind_control", "-z", pid], capture_output=True, check=False)
        n = _wrk(url, conns, seconds, headers)
        for pid in pids:
            subprocess.run(["callgrind_control", "-d", pid], capture_output=True, check=False)
        time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
        stop.set()
        reader.join()
        os.close(rfd)
    total = sum(callgrind.totals(f"{out}.*.[0-9]*"))  # the dumps made after the counters were zeroed
    return n, total / max(n, 1)


def main(args: argparse.Namespace) -> None:
    d = Path(tempfile.mkdtemp(prefix="sn-bench-instr-"))
    ports = {k: free_port() for k in ("b1", "b2", "nx_http", "nx_https", "ha_http", "ha_https")}
    write_1m(d)
    pem = self_signed(HOST, (HOST,))
    (d / "tls.pem").write_bytes(pem)
    (d / "tls.pem").chmod(0o600)
    (d / "ha").mkdir(mode=0o700)
    ha_cfg = d / "ha" / "haproxy.cfg"
    ha_cfg.write_text(haproxy_config(d / "ha", pem, ports["b1"], ports["ha_http"], ports["ha_https"]))
    nx_conf = d / "nginx.conf"
    nx_conf.write_text("master_process off;\n" + PROXY_CONF.format(
        d=d, workers=1, ui=ports["b1"], api=ports["b1"], https=ports["nx_https"], http=ports["nx_http"]))
    backend = Nginx(d, "backend", BACKEND_CONF.format(d=d, port=ports["b1"], port2=ports["b2"]))
    backend.start()
    try:
        wait_port(ports["b1"])
        print(f"{'case':<8}{'servicenet (HAProxy)':>26}{'nginx':>22}{'ratio nginx/servicenet':>26}")
        for case in args.cases.split(","):
            url, conns, headers = CASES[case]
            sides = {
                "servicenet": (["haproxy", "-db", "-f", str(ha_cfg)], ports["ha_https"],
                               url.format(p=ports["ha_http"], s=ports["ha_https"])),
                "nginx": (["nginx", "-c", str(nx_conf), "-p", str(d), "-g", "daemon off;"], ports["nx_https"],
                          url.format(p=ports["nx_http"], s=ports["nx_https"])),
            }
            got = {side: per_request(d, f"{case}-{side}", argv, port, u, conns, headers, args.seconds)
                   for side, (argv, port, u) in sides.items()}
            cells = [f"{got[s][1]:>12,.0f} ({got[s][0]} req)" for s in sides]
            print(f"{case:<8}{cells[0]:>26}{cells[1]:>22}{got['nginx'][1] / max(got['servicenet'][1], 1):>20.2f}x",
                  flush=True)
    finally:
        backend.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--cases", default="http,https,tls,1m")
    p.add_argument("--seconds", type=int, default=4)
    main(p.parse_args())
