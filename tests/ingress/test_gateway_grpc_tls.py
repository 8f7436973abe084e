"""Acceptance (Gateway API): GRPCRoute to grpcio servers over h2c, and TLSRoute passthrough by SNI,
through the gateway controller's HAProxy on loopback."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import grpc
import pytest

from .backends import serve
from .gw_harness import gateway_stack
from .gwobjects import bref, conds, gateway, gateway_class, hrule, httproute, listener, parent, route
from .harness import free_port, run
from .objects import service, slice_, tls_secret
from .pki import CA


async def _grpc_server(name: str, port: int) -> grpc.aio.Server:
    def handler(method: str) -> Any:
        async def call(req: bytes, ctx: Any) -> bytes:
            tier = dict(ctx.invocation_metadata()).get("x-tier", "")
            return f"{name}:{method}:{tier}:".encode() + req
        return grpc.unary_unary_rpc_method_handler(call)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler("pkg.Echo", {"Say": handler("Say"), "Shout": handler("Shout")}),
        grpc.method_handlers_generic_handler("pkg.Other", {"Do": handler("Do")})))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server


def _grpc_rule(backend: str, service_: str = "", method: str = "", headers: dict[str, str] | None = None,
               typ: str = "Exact") -> dict[str, Any]:
    m: dict[str, Any] = {"method": {"type": typ, **({"service": service_} if service_ else {}),
                                    **({"method": method} if method else {})}}
    if headers:
        m["headers"] = [{"name": k, "value": v} for k, v in headers.items()]
    return {"matches": [m], "backendRefs": [bref(backend)]}


async def test_grpcroute_and_tlsroute_passthrough(tmp_path: Path) -> None:
    ga, gb, tls_port_backend = free_port(), free_port(), free_port()
    servers = [await _grpc_server("ga", ga), await _grpc_server("gb", gb)]
    ca = CA.new()
    crt, key, _ = ca.leaf("pass.test")
    term_crt, term_key, _ = ca.leaf("term.test")
    web = free_port()
    web_runner = await serve("web", "127.0.0.1", [web])
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    (tmp_path / "leaf.pem").write_bytes(crt + key)
    sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    sctx.load_cert_chain(tmp_path / "leaf.pem")
    tls_runner = await serve("tls-backend", "127.0.0.1", [tls_port_backend], ssl_context=sctx)
    http_port, tls_port = free_port(), free_port()
    try:
        async with gateway_stack(tmp_path) as gs:
            for name, port, proto in (("ga", ga, "grpc"), ("gb", gb, "grpc"), ("secure", tls_port_backend, "https"),
                                      ("web", web, "http")):
                await gs.put(service(name, [(proto, 80)]))
                await gs.put(slice_(name, ["127.0.0.1"], [(proto, port)]))
            await gs.put(tls_secret("term-cert", term_crt, term_key))
            await gs.put(gateway_class())
            # HTTPS and TLS passthrough on one port (GatewayHTTPSAndTLSPassthroughSamePort): the SNI
            # selects the listener, the most specific hostname first
            await gs.put(gateway("gw", listener("http", http_port),
                                 listener("tls", tls_port, "TLS", "pass.test", mode="Passthrough"),
                                 listener("https", tls_port, "HTTPS", "*.test", certs=[{"name": "term-cert"}])))
            await gs.put(httproute("terminated", [parent("gw", "https")], hrule(bref("web"))))
            await gs.put(route("GRPCRoute", "grpc", [parent("gw", "http")], [
                _grpc_rule("ga", "pkg.Echo", "Say"),
                _grpc_rule("gb", "pkg.Echo", "Say", headers={"x-tier": "b"}),
                _grpc_rule("gb", "pkg.Other"),
                _grpc_rule("gb", "pkg\\.Ech.", "Sh.*", typ="RegularExpression"),
            ], hostnames=["grpc.test"]))
            await gs.put(route("TLSRoute", "pass", [parent("gw", "tls")], [{"backendRefs": [bref("secure")]}],
                               hostnames=["pass.test"]))
            await gs.put(httproute("wrongkind", [parent("gw", "tls")], hrule(bref("ga")), hostnames=["pass.test"]))

            for kind, name in (("GRPCRoute", "grpc"), ("TLSRoute", "pass")):
                s = await gs.status(kind, name, want=lambda s: s.get("parents"))
                p = s["parents"][0]
                assert p["controllerName"] == "servicenet.io/gateway-controller"
                assert conds(p) == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}, s
            s = await gs.status("HTTPRoute", "wrongkind", want=lambda s: s.get("parents"))
            assert conds(s["parents"][0])["Accepted"] == ("False", "NotAllowedByListeners"), s
            gst = await gs.status("Gateway", "gw", want=lambda s: conds(s).get("Programmed", ("",))[0] == "True")
            lis = {li["name"]: li for li in gst["listeners"]}
            assert lis["tls"]["supportedKinds"] == [{"group": "gateway.networking.k8s.io", "kind": "TLSRoute"}]
            assert [lis[n]["attachedRoutes"] for n in ("http", "tls", "https")] == [1, 1, 1], lis
            for n in ("tls", "https"):
                assert conds(lis[n]) == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs"),
                                         "Programmed": ("True", "Programmed"),
                                         "Conflicted": ("False", "NoConflicts")}, lis[n]

            # GRPCRoute: service/method matching, a header match, a regex, h2c to the backends
            opts = [("grpc.default_authority", "grpc.test")]
            async with grpc.aio.insecure_channel(f"127.0.0.1:{http_port}", options=opts) as ch:
                assert await ch.unary_unary("/pkg.Echo/Say")(b"hi", timeout=10) == b"ga:Say::hi"
                assert await ch.unary_unary("/pkg.Echo/Say")(b"hi", metadata=(("x-tier", "b"),),
                                                             timeout=10) == b"gb:Say:b:hi"
                assert await ch.unary_unary("/pkg.Other/Do")(b"x", timeout=10) == b"gb:Do::x"
                assert await ch.unary_unary("/pkg.Echo/Shout")(b"y", timeout=10) == b"gb:Shout::y"
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await ch.unary_unary("/pkg.Nope/Do")(b"z", timeout=10)
                assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED  # HTTP 404: no route matches

            # TLSRoute passthrough: the backend's own certificate, chosen by SNI
            rc, out = await run("curl", "-sS", "--cacert", str(tmp_path / "ca.pem"), "--resolve",
                                f"pass.test:{tls_port}:127.0.0.1", f"https://pass.test:{tls_port}/through")
            assert rc == 0, out
            body = json.loads(out)
            assert body["name"] == "tls-backend" and body["path"] == "/through", body
            assert "x-forwarded-for" not in body["headers"]  # not terminated: HAProxy never saw HTTP
            # the same port, another SNI: the HTTPS listener terminates it (its certificate, X-Forwarded-*)
            for sni in ("term.test", "other.test"):
                rc, out = await run("curl", "-sS", "--cacert", str(tmp_path / "ca.pem"), "-k" if sni != "term.test"
                                    else "--http1.1", "--resolve", f"{sni}:{tls_port}:127.0.0.1",
                                    f"https://{sni}:{tls_port}/end")
                assert rc == 0, out
                body = json.loads(out)
                assert body["name"] == "web" and body["headers"]["x-forwarded-proto"] == "https", body
                assert body["headers"]["x-forwarded-for"] == "127.0.0.1", body  # the PROXY header kept the client
                assert body["headers"]["x-forwarded-port"] == str(tls_port), body  # the listener's port
            rc, out = await run("curl", "-sS", "-k", "--resolve", f"other.example:{tls_port}:127.0.0.1",
                                f"https://other.example:{tls_port}/")
            assert rc != 0, out  # no listener for this SNI: the connection is closed
    finally:
        for s in servers:
            await s.stop(None)
        await tls_runner.cleanup()
        await web_runner.cleanup()
