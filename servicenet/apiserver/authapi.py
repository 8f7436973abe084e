"""The security filter (authenticate, impersonate, authorize) and the identity APIs it answers itself:
TokenReview, SelfSubjectReview, (Local/Self)SubjectAccessReview, SelfSubjectRulesReview, TokenRequest
(``serviceaccounts/<name>/token``) and the OIDC discovery documents.

Hooked into the API server as one aiohttp middleware (:meth:`Security.middleware`).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from typing import Any

import orjson
from aiohttp import web

from servicenet.api import authproto, errors
from servicenet.api.rbac import (
    ANONYMOUS,
    Attributes,
    User,
    attributes_of,
    forbidden_message,
    split_sa,
)
from servicenet.api.wire import Obj
from servicenet.api.wire import meta as meta_of
from servicenet.apiserver import kubelet_proxy, sa_tokens
from servicenet.apiserver.authn import Authenticator, impersonation
from servicenet.apiserver.authz import CURRENT_USER, Authorizer, node_name_of
from servicenet.apiserver.front import Kept
from servicenet.apiserver.identities import kubelet_client_ssl
from servicenet.apiserver.responses import json_response
from servicenet.apiserver.sa_admission import ServiceAccounts

PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version")
USER: web.RequestKey[User] = web.RequestKey("servicenet-user", User)
ATTRS: web.RequestKey[Attributes] = web.RequestKey("servicenet-attrs", Attributes)
DECISION: web.RequestKey[tuple] = web.RequestKey("servicenet-decision", tuple)  # type: ignore[type-arg]
_AUTHN = "/apis/authentication.k8s.io/v1/"
_AUTHZ = "/apis/authorization.k8s.io/v1/"
_TOKEN = re.compile(r"^/api/v1/namespaces/([^/]+)/serviceaccounts/([^/]+)/token/?$")
_LSAR = re.compile(r"^/apis/authorization\.k8s\.io/v1/namespaces/([^/]+)/localsubjectaccessreviews/?$")


_UNKNOWN = object()


def _public(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PUBLIC_PATHS)


def _rfc3339(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _attrs_from_spec(spec: Obj) -> Attributes:
    ra = spec.get("resourceAttributes")
    if ra:
        return Attributes(verb=ra.get("verb", ""), resource_request=True, namespace=ra.get("namespace", ""),
                          api_group=ra.get("group", ""), api_version=ra.get("version", ""),
                          resource=ra.get("resource", ""), subresource=ra.get("subresource", ""),
                          name=ra.get("name", ""))
    nra = spec.get("nonResourceAttributes") or {}
    return Attributes(verb=nra.get("verb", ""), resource_request=False, path=nra.get("path", ""))


class Security:
    def __init__(self, server: Any, authn: Authenticator, authz: Authorizer, signer: sa_tokens.Signer) -> None:
        self.server = server
        self.authn = authn
        self.authz = authz
        self.signer = signer
        # what a request asks (pure on method, path and query) and which identity API answers it
        # (pure on method and path), kept per request line: they repeat
        self._attrs: Kept[tuple[str, str, str], Attributes] = Kept()
        self._specials: Kept[tuple[str, str], Any] = Kept()

    # -- the filter ----------------------------------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path
        user = self.authn.authenticate(request)
        if user.name == ANONYMOUS and not _public(path):
            raise errors.unauthorized()
        user = impersonation(request, user, self.authz.authorize)
        request[USER] = user
        method = request.method
        key = (method, path, request.query_string)
        attrs = self._attrs.get(key)
        if attrs is None:
            attrs = self._attrs.put(key, attributes_of(method, path, request.query))
        request[ATTRS] = attrs
        if not (user.name == ANONYMOUS and _public(path)):
            ok, reason = self.authz.authorize(user, attrs)
            request[DECISION] = (ok, reason)
            if not ok:
                msg, res, group, name = forbidden_message(user, attrs)
                raise errors.forbidden_error(msg, res, group, name)
        token = CURRENT_USER.set(user)
        try:
            special = self._specials.get((method, path), _UNKNOWN)
            if special is _UNKNOWN:
                special = self._specials.put((method, path), self._special(method, path))
            if special is not None:
                return await special(request)
            return await handler(request)  # type: ignore[no-any-return]
        finally:
            CURRENT_USER.reset(token)

    def _special(self, m: str, path: str) -> Any:
        if m == "GET" and path.rstrip("/") == "/.well-known/openid-configuration":
            return self._openid
        if m == "GET" and path.rstrip("/") == "/openid/v1/jwks":
            return self._jwks
        if m != "POST":
            return None
        p = path.rstrip("/")
        if p.startswith(_AUTHN):
            return {_AUTHN + "tokenreviews": self._token_review,
                    _AUTHN + "selfsubjectreviews": self._self_subject_review}.get(p)
        if p.startswith(_AUTHZ):
            if _LSAR.match(p):
                return self._local_sar
            return {_AUTHZ + "subjectaccessreviews": self._sar,
                    _AUTHZ + "selfsubjectaccessreviews": self._self_sar,
                    _AUTHZ + "selfsubjectrulesreviews": self._rules_review}.get(p)
        if _TOKEN.match(p):
            return self._token_request
        return None

    async def _body(self, request: web.Request, kind: str) -> Obj:
        if "protobuf" in (request.content_type or ""):
            raw = await request.read()
            if not raw:
                return {}
            try:
                return authproto.decode(raw, kind)
            except authproto.ProtoError as exc:
                raise errors.bad_request(f"the object provided is unrecognized: {exc}") from None
        if not await request.read() and kind == "SelfSubjectReview":
            return {}
        return await self.server.handlers.read_body(request)  # type: ignore[no-any-return]

    # -- discovery -----------------------------------------------------------------------------------
    async def _openid(self, request: web.Request) -> web.Response:
        return json_response(self.signer.openid_configuration(f"{self.server.url}/openid/v1/jwks"))

    async def _jwks(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self.signer.jwks()),
                            content_type="application/jwk-set+json")

    # -- authentication.k8s.io -----------------------------------------------------------------------
    async def _token_review(self, request: web.Request) -> web.Response:
        obj = await self._body(request, "TokenReview")
        spec = obj.get("spec") or {}
        token = spec.get("token") or ""
        auds = list(spec.get("audiences") or [])
        status: Obj
        try:
            u = self.authn.token_user(token, auds or None)
            status = {"authenticated": True, "user": u.info(), "audiences": auds or self.authn.audiences}
        except sa_tokens.TokenError as exc:
            status = {"authenticated": False, "user": {}, "error": f"[invalid bearer token, {exc}]"}
        out = {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}
        return json_response(out, 201)

    async def _self_subject_review(self, request: web.Request) -> web.Response:
        user: User = request[USER]
        return json_response({"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
                              "metadata": {"creationTimestamp": None},
                              "status": {"userInfo": user.info()}}, 201)

    # -- authorization.k8s.io ------------------------------------------------------------------------
    def _review(self, obj: Obj, kind: str, user: User, attrs: Attributes) -> web.Response:
        ok, reason = self.authz.authorize(user, attrs)
        status: Obj = {"allowed": ok}
        if reason:
            status["reason"] = reason
        out = {"kind": kind, "apiVersion": "authorization.k8s.io/v1",
               "metadata": {**meta_of(obj), "creationTimestamp": None},
               "spec": obj.get("spec") or {}, "status": status}
        return json_response(out, 201)

    @staticmethod
    def _spec_user(spec: Obj) -> User:
        if not spec.get("user") and not spec.get("groups"):
            raise errors.invalid_object("SubjectAccessReview", "authorization.k8s.io", "", [
                errors.invalid("spec.user", "", "at least one of user or group must be specified")])
        extra = tuple((k, tuple(v)) for k, v in sorted((spec.get("extra") or {}).items()))
        return User(spec.get("user", ""), tuple(spec.get("groups") or ()), spec.get("uid", ""), extra)

    @staticmethod
    def _check_attrs(spec: Obj, kind: str) -> None:
        if bool(spec.get("resourceAttributes")) == bool(spec.get("nonResourceAttributes")):
            raise errors.invalid_object(kind, "authorization.k8s.io", "", [errors.invalid(
                "spec.resourceAttributes", "", "exactly one of nonResourceAttributes or resourceAttributes "
                                               "must be specified")])

    async def _sar(self, request: web.Request) -> web.Response:
        obj = await self._body(request, "SubjectAccessReview")
        spec = obj.get("spec") or {}
        self._check_attrs(spec, "SubjectAccessReview")
        return self._review(obj, "SubjectAccessReview", self._spec_user(spec), _attrs_from_spec(spec))

    async def _local_sar(self, request: web.Request) -> web.Response:
        obj = await self._body(request, "LocalSubjectAccessReview")
        ns = _LSAR.match(request.path.rstrip("/")).group(1)  # type: ignore[union-attr]
        spec = obj.get("spec") or {}
        self._check_attrs(spec, "LocalSubjectAccessReview")
        ra = spec.get("resourceAttributes") or {}
        if ra.get("namespace", ns) != ns:
            raise errors.bad_request(f"spec.resourceAttributes.namespace must match namespace: {ns}")
        spec.setdefault("resourceAttributes", {})["namespace"] = ns
        return self._review(obj, "LocalSubjectAccessReview", self._spec_user(spec), _attrs_from_spec(spec))

    async def _self_sar(self, request: web.Request) -> web.Response:
        obj = await self._body(request, "SelfSubjectAccessReview")
        spec = obj.get("spec") or {}
        self._check_attrs(spec, "SelfSubjectAccessReview")
        return self._review(obj, "SelfSubjectAccessReview", request[USER], _attrs_from_spec(spec))

    async def _rules_review(self, request: web.Request) -> web.Response:
        obj = await self._body(request, "SelfSubjectRulesReview")
        spec = obj.get("spec") or {}
        ns = spec.get("namespace") or ""
        res_rules, nonres = [], []
        for r in self.authz.rules_for(request[USER], ns):
            if r.get("nonResourceURLs"):
                nonres.append({"verbs": list(r.get("verbs") or []), "nonResourceURLs": list(r["nonResourceURLs"])})
            if r.get("resources") or r.get("apiGroups"):
                d = {"verbs": list(r.get("verbs") or []), "apiGroups": list(r.get("apiGroups") or []),
                     "resources": list(r.get("resources") or [])}
                if r.get("resourceNames"):
                    d["resourceNames"] = list(r["resourceNames"])
                res_rules.append(d)
        out = {"kind": "SelfSubjectRulesReview", "apiVersion": "authorization.k8s.io/v1",
               "metadata": {"creationTimestamp": None}, "spec": spec,
               "status": {"resourceRules": res_rules, "nonResourceRules": nonres, "incomplete": False}}
        return json_response(out, 201)

    # -- TokenRequest --------------------------------------------------------------------------------
    async def _token_request(self, request: web.Request) -> web.Response:
        ns, sa_name = _TOKEN.match(request.path.rstrip("/")).groups()  # type: ignore[union-attr]
        store = self.server.store
        rec = store.get(f"/registry/core/serviceaccounts/{ns}/{sa_name}")
        if rec is None:
            raise errors.not_found("serviceaccounts", "", sa_name)
        sa = rec.obj()
        obj = await self._body(request, "TokenRequest")
        spec = dict(obj.get("spec") or {})
        exp = spec.get("expirationSeconds")
        exp = sa_tokens.DEFAULT_EXPIRATION if exp in (None, 0) else int(exp)
        if exp < sa_tokens.MIN_EXPIRATION:
            raise errors.invalid_object("TokenRequest", "authentication.k8s.io", sa_name, [errors.invalid(
                "spec.expirationSeconds", exp, "may not specify a duration less than 10 minutes")])
        if exp > 1 << 32:
            raise errors.invalid_object("TokenRequest", "authentication.k8s.io", sa_name, [errors.invalid(
                "spec.expirationSeconds", exp, "may not specify a duration larger than 2^32 seconds")])
        exp = min(exp, sa_tokens.MAX_EXPIRATION)
        auds = list(spec.get("audiences") or []) or list(self.authn.audiences)
        bound = sa_tokens.Bound(ns, sa_name, sa["metadata"]["uid"])
        ref = spec.get("boundObjectRef")
        user: User = request[USER]
        node = node_name_of(user)
        if ref:
            if ref.get("kind") != "Pod":
                raise errors.bad_request(f"cannot bind token to object of type {ref.get('kind')}: "
                                         "only Pod is supported")
            prec = store.get(f"/registry/core/pods/{ns}/{ref.get('name', '')}")
            if prec is None:
                raise errors.not_found("pods", "", ref.get("name", ""))
            pod = prec.obj()
            if ref.get("uid") and ref["uid"] != pod["metadata"]["uid"]:
                raise errors.conflict("pods", "", pod["metadata"]["name"],
                                      f"the UID in the bound object reference ({ref['uid']}) does not match the "
                                      f"UID in record. The object might have been deleted and then recreated")
            if (pod.get("spec") or {}).get("serviceAccountName", "default") != sa_name:
                raise errors.bad_request(f"cannot bind token: pod {pod['metadata']['name']} does not use "
                                         f"service account {sa_name}")
            node_name = (pod.get("spec") or {}).get("nodeName") or ""
            nrec = store.get(f"/registry/core/nodes/{node_name}") if node_name else None
            bound = sa_tokens.Bound(ns, sa_name, sa["metadata"]["uid"], pod["metadata"]["name"],
                                    pod["metadata"]["uid"], node_name,
                                    nrec.obj()["metadata"]["uid"] if nrec is not None else "")
            spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": pod["metadata"]["name"],
                                      "uid": pod["metadata"]["uid"]}
            if node is not None and node != node_name:
                raise errors.forbidden_error(
                    f'serviceaccounts "{sa_name}" is forbidden: node "{node}" can only create tokens for pods '
                    f"bound to it", "serviceaccounts", "", sa_name)
        elif node is not None:
            raise errors.forbidden_error(f'serviceaccounts "{sa_name}" is forbidden: node "{node}" can only '
                                         f"create pod-bound tokens", "serviceaccounts", "", sa_name)
        token, exp_at = self.signer.issue(bound, auds, exp)
        spec.update({"audiences": auds, "expirationSeconds": exp})
        out = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"name": sa_name, "namespace": ns, "creationTimestamp": _rfc3339(exp_at - exp)},
               "spec": spec, "status": {"token": token, "expirationTimestamp": _rfc3339(exp_at)}}
        return json_response(out, 201)


def is_service_account(user: User) -> bool:
    return split_sa(user.name) is not None


async def start_security(server: Any) -> tuple[Security, Any]:
    """Build and start the identity machinery for ``server`` (whose creds, store and registry exist):
    signer, authenticator (static tokens + the server's own loopback token), RBAC authorizer with the
    bootstrap policy, and the ServiceAccount admission/controller. Returns (security, sa controller)."""
    pki = server.config.data_dir / "pki"
    signer = sa_tokens.Signer(sa_tokens.load_or_create_key(pki / "sa.key"))
    authn = Authenticator(server, server.creds.token_file if server.creds else None, signer)
    server.loopback_token = secrets.token_urlsafe(32)
    authn.add_token(server.loopback_token, User("system:apiserver", ("system:masters",), "apiserver"))
    kubelet_proxy.set_node_credentials(server.loopback_token,
                                       kubelet_client_ssl(pki) if (pki / "ca.key").exists() else None)
    authz = Authorizer(server)
    await authz.start()
    sas = ServiceAccounts(server)
    await sas.start()
    return Security(server, authn, authz, signer), sas
