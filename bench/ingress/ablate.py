"""What each piece of servicenet's HAProxy configuration costs per request: the renderer's
configuration for the walkthrough's Ingress with one piece removed or changed at a time, each under
callgrind as in ``bench.ingress.instructions`` (one process, one thread, same nginx backend, wrk),
user-space instructions per request. Load-independent; the variants run one after the other.

    python -m bench.ingress.ablate [--case http|https|tls|1m] [--only full,nolog,...] [--seconds 3]
                                   [--binary /path/to/haproxy] [--haproxy-arg -dMno-tag]...

A variant that leaves the configuration unchanged is reported (a pattern that no longer matches).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.ingress.instructions import CASES, haproxy_config, per_request  # noqa: E402
from bench.ingress.peers import BACKEND_CONF, Nginx, wait_port  # noqa: E402
from bench.ingress.run import HOST  # noqa: E402
from servicenet.ingress.certs import self_signed  # noqa: E402
from tests.ingress.harness import free_port  # noqa: E402


def _drop(*patterns: str) -> Callable[[str], str]:
    def f(text: str) -> str:
        return "".join(ln for ln in text.splitlines(keepends=True) if not any(re.search(p, ln) for p in patterns))
    return f


def _sub(old: str, new: str) -> Callable[[str], str]:
    return lambda text: text.replace(old, new)


def _log_field(name: str, value: str) -> Callable[[str], str]:
    return _sub(f'\\"{name}\\":\\"{value}\\",', "")


def _bare(text: str) -> str:
    """HAProxy's floor here: the same binds and backend server, `use_backend` by path, nothing else."""
    binds = "".join(ln for ln in text.splitlines(keepends=True) if ln.startswith("    bind "))
    server = re.search(r"^    server s1 (\S+)", text, re.M)
    assert server is not None
    return ("global\n    nbthread 1\n    tune.ssl.cachesize 0\n\ndefaults\n    mode http\n"
            "    option http-keep-alive\n    http-reuse always\n    timeout connect 5s\n    timeout client 300s\n"
            f"    timeout server 300s\n\nfrontend fe\n{binds}    use_backend api if {{ path_beg /api }}\n"
            f"    default_backend ui\n\nbackend api\n    server s1 {server[1]}\n\nbackend ui\n"
            f"    server s1 {server[1]}\n")


def _static_routing(text: str) -> str:
    """The routing maps and variables replaced by the walkthrough's paths written as rules."""
    text = _drop(r"set-var\(txn\.(host|hg|k|r|bl)\)", r"set-var-fmt\(txn\.k\)", r"redirect location https",
                 r"deny deny_status 413")(text)
    api = re.search(r"^backend (be_default_api\S*)", text, re.M)
    ui = re.search(r"^backend (be_default_ui\S*)", text, re.M)
    assert api is not None and ui is not None
    return re.sub(r"^    use_backend .*\n    default_backend .*$",
                  f"    use_backend {api[1]} if {{ path_beg /api /signin /signout }}\n    default_backend {ui[1]}",
                  text, flags=re.M)


VARIANTS: dict[str, Callable[[str], str]] = {
    "full": lambda text: text,
    "nolog": _drop(r"^    log stdout", r"log-format"),  # what --no-access-log renders
    "log_noclient": _log_field("client", "%ci"),
    "log_notime": _log_field("time", "%tr"),
    "log_metric_fields_only": lambda text: re.sub(r',\\"time\\":.*\}"', '}"', text),
    "no_x_headers": _drop(r"set-header X-", r"del-header Connection"),
    "no_xfh_xfp": _drop(r"X-Forwarded-Host", r"X-Forwarded-Port"),
    "no_forwardfor": _drop(r"option forwardfor"),
    "xff_add_header": lambda text: _sub("    option forwardfor\n", "")(text).replace(
        "set-header X-Real-IP %[src]", "set-header X-Real-IP %[src]\n    http-request add-header X-Forwarded-For %[src]"),
    "client_ip_text_once": lambda text: _sub("    option forwardfor\n", "")(text).replace(
        "    http-request set-var(txn.host)", "    http-request set-var-fmt(txn.ip) %[src]\n    http-request set-var(txn.host)"
    ).replace("set-header X-Real-IP %[src]",
              "set-header X-Real-IP %[var(txn.ip)]\n    http-request add-header X-Forwarded-For %[var(txn.ip)]"
              ).replace("%ci", "%[var(txn.ip)]"),
    "one_regex_del_then_add": lambda text: text.replace(
        "    http-request set-header X-Real-IP",
        "    http-request del-header ^(x-real-ip|x-forwarded-(proto|host|port))$ -m reg\n"
        "    http-request set-header X-Real-IP").replace("set-header X-Forwarded-", "add-header X-Forwarded-"),
    "static_routing": _static_routing,
    "no_host_variable_and_group": lambda text: _drop(r"set-var\(txn\.hg\)")(text).replace(
        '%[var(txn.hg)]%[path]/', '%[var(txn.host)]%[path]/'),
    "no_redirect_check": _drop(r"redirect location https"),
    "no_body_limit_rules": _drop(r"set-var\(txn\.bl\)", r"deny deny_status 413"),
    "no_checks": _sub("default-server check inter", "default-server inter"),
    "no_observe": _sub(" observe layer4 error-limit 3 on-error mark-down", ""),
    "bufsize_16k": _sub("tune.bufsize 32768", "tune.bufsize 16384"),
    "bare": _bare,
}


def main(args: argparse.Namespace) -> None:
    d = Path(tempfile.mkdtemp(prefix="sn-bench-ablate-"))
    os.chmod(d, 0o711)
    ports = {k: free_port() for k in ("b1", "b2", "http", "https")}
    (d / "ha").mkdir(mode=0o700)
    base = haproxy_config(d / "ha", self_signed(HOST, (HOST,)), ports["b1"], ports["http"], ports["https"])
    backend = Nginx(d, "backend", BACKEND_CONF.format(d=d, port=ports["b1"], port2=ports["b2"]))
    backend.start()
    url, conns, headers = CASES[args.case]
    only = args.only.split(",") if args.only else list(VARIANTS)
    try:
        wait_port(ports["b1"])
        print(f"{'case':<6}{'variant':<26}{'instructions/request':>22}  (haproxy: {args.binary})")
        for name in only:
            text = VARIANTS[name](base)
            if name != "full" and text == base:
                print(f"{args.case:<6}{name:<26}{'(no change: pattern not found)':>22}")
                continue
            cfg = d / "ha" / f"{name}.cfg"
            cfg.write_text(text)
            n, per = per_request(d, f"{args.case}-{name}", [args.binary, "-db", *args.haproxy_arg, "-f", str(cfg)],
                                 ports["https"], url.format(p=ports["http"], s=ports["https"]), conns, headers,
                                 args.seconds)
            print(f"{args.case:<6}{name:<26}{per:>22,.0f}  ({n} requests)", flush=True)
    finally:
        backend.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--case", default="http", choices=sorted(CASES))
    p.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    p.add_argument("--seconds", type=int, default=3)
    p.add_argument("--binary", default="haproxy")
    p.add_argument("--haproxy-arg", action="append", default=[])
    main(p.parse_args())
