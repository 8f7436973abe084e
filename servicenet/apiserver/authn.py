"""Authentication shell: static bearer tokens, x509 client certificates, bound ServiceAccount tokens,
and impersonation.

Every authenticated user is in ``system:authenticated``; a request with no credentials is
``system:anonymous`` in ``system:unauthenticated``; presented credentials that do not check out
are a 401 (as upstream, an invalid token never falls back to anonymous).
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from servicenet.api import errors
from servicenet.api.rbac import (
    ANONYMOUS,
    AUTHENTICATED,
    UNAUTHENTICATED,
    Attributes,
    User,
    service_account_user,
    split_sa,
)
from servicenet.apiserver.sa_tokens import Bound, Signer, TokenError
from servicenet.common import log

_log = log.get("apiserver.authn")

ANONYMOUS_USER = User(ANONYMOUS, (UNAUTHENTICATED,))


def parse_token_file(text: str) -> dict[str, User]:
    """``token,user,uid,"group1,group2"`` lines (upstream's --token-auth-file format)."""
    out: dict[str, User] = {}
    for row in csv.reader(io.StringIO(text)):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        token = row[0].strip()
        name = row[1].strip() if len(row) > 1 else ""
        uid = row[2].strip() if len(row) > 2 else ""
        groups = [g.strip() for g in row[3].split(",") if g.strip()] if len(row) > 3 else []
        if token and name:
            out[token] = with_authenticated(User(name, tuple(groups), uid))
    return out


def with_authenticated(u: User) -> User:
    if AUTHENTICATED in u.groups:
        return u
    return User(u.name, (*u.groups, AUTHENTICATED), u.uid, u.extra)


def cert_user(peercert: dict[str, Any] | None) -> User | None:
    """CN is the user, O the groups (the ``ssl`` module's decoded peer certificate)."""
    if not peercert:
        return None
    cn, orgs = "", []
    for rdn in peercert.get("subject") or ():
        for key, value in rdn:
            if key == "commonName":
                cn = value
            elif key == "organizationName":
                orgs.append(value)
    if not cn:
        return None
    return with_authenticated(User(cn, tuple(orgs)))


class Authenticator:
    def __init__(self, server: Any, token_file: Path | None, signer: Signer | None,
                 audiences: list[str] | None = None) -> None:
        self.server = server
        self.token_file = token_file
        self.signer = signer
        self.audiences = audiences or ([signer.issuer] if signer else [])
        self._tokens: dict[str, User] = {}
        self._mtime = 0.0
        self._checked = 0.0
        self.reload()

    def reload(self) -> None:
        if self.token_file is None or not self.token_file.exists():
            return
        mtime = self.token_file.stat().st_mtime
        if mtime != self._mtime:
            self._tokens = parse_token_file(self.token_file.read_text())
            self._mtime = mtime

    def add_token(self, token: str, user: User) -> None:
        """An in-memory token (the API server's own loopback identity)."""
        self._tokens[token] = with_authenticated(user)

    # -- tokens --------------------------------------------------------------------------------------
    def token_user(self, token: str, audiences: list[str] | None = None) -> User:
        """The user a bearer token stands for; raises :class:`TokenError` if it does not check out."""
        now = time.monotonic()
        if now - self._checked > 2.0:
            self._checked = now
            self.reload()
        u = self._tokens.get(token)
        if u is not None:
            return u
        if self.signer is None or token.count(".") != 2:
            raise TokenError("invalid bearer token")
        bound = self.signer.verify(token, audiences or self.audiences)
        return self._bound_user(bound)

    def _bound_user(self, b: Bound) -> User:
        store = self.server.store
        rec = store.get(f"/registry/core/serviceaccounts/{b.namespace}/{b.sa_name}")
        if rec is None:
            raise TokenError(f'serviceaccounts "{b.sa_name}" not found')
        sa = rec.obj()
        if b.sa_uid and sa["metadata"].get("uid") != b.sa_uid:
            raise TokenError(f"service account UID ({b.sa_uid}) does not match claim "
                             f"({sa['metadata'].get('uid')})")
        extra: list[tuple[str, tuple[str, ...]]] = [("authentication.kubernetes.io/credential-id", (f"JTI={b.jti}",))]
        if b.pod_name:
            prec = store.get(f"/registry/core/pods/{b.namespace}/{b.pod_name}")
            pod = prec.obj() if prec is not None else None
            if pod is None:
                raise TokenError(f'pods "{b.pod_name}" not found')
            if pod["metadata"].get("uid") != b.pod_uid:
                raise TokenError(f"pod UID ({b.pod_uid}) does not match claim ({pod['metadata'].get('uid')})")
            extra += [("authentication.kubernetes.io/pod-name", (b.pod_name,)),
                      ("authentication.kubernetes.io/pod-uid", (b.pod_uid,))]
        if b.node_name:
            extra += [("authentication.kubernetes.io/node-name", (b.node_name,))]
            if b.node_uid:
                extra += [("authentication.kubernetes.io/node-uid", (b.node_uid,))]
        return service_account_user(b.namespace, b.sa_name, sa["metadata"].get("uid", ""), tuple(sorted(extra)))

    # -- requests ------------------------------------------------------------------------------------
    def authenticate(self, request: web.Request) -> User:
        auth = request.headers.get("Authorization", "")
        if auth:
            scheme, _, token = auth.partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise errors.unauthorized()
            try:
                return self.token_user(token)
            except TokenError as exc:
                _log.debug("token rejected", error=str(exc))
                raise errors.unauthorized() from None
        transport = request.transport
        peer = transport.get_extra_info("peercert") if transport is not None else None
        u = cert_user(peer)
        return u if u is not None else ANONYMOUS_USER


def impersonation(request: web.Request, user: User, authorize: Any) -> User:
    """Apply ``Impersonate-*`` headers after checking the ``impersonate`` verb for each of them."""
    h = request.headers
    name = h.get("Impersonate-User", "")
    groups = h.getall("Impersonate-Group", [])
    uid = h.get("Impersonate-Uid", "")
    extras: dict[str, list[str]] = {}
    for k in h:
        if k[:1] in "Ii" and k.lower().startswith("impersonate-extra-"):
            extras.setdefault(k[len("impersonate-extra-"):].lower(), []).extend(h.getall(k))
    if not name and not groups and not uid and not extras:
        return user
    if not name:
        raise errors.bad_request("requested impersonation without a user: Impersonate-User is required")

    def check(attrs: Attributes, what: str) -> None:
        ok, _ = authorize(user, attrs)
        if not ok:
            res = attrs.resource
            msg = (f'{res} "{attrs.name}" is forbidden: User "{user.name}" cannot impersonate resource "{res}" '
                   f'in API group "{attrs.api_group}"')
            msg += f' in the namespace "{attrs.namespace}"' if attrs.namespace else " at the cluster scope"
            raise errors.forbidden_error(msg, res, attrs.api_group, attrs.name)

    sa = split_sa(name)
    if sa is not None:
        check(Attributes("impersonate", True, namespace=sa[0], resource="serviceaccounts", name=sa[1]), name)
        base = service_account_user(sa[0], sa[1])
        all_groups = list(base.groups)
    else:
        check(Attributes("impersonate", True, resource="users", name=name), name)
        all_groups = []
    for g in groups:
        check(Attributes("impersonate", True, resource="groups", name=g), g)
        if g not in all_groups:
            all_groups.append(g)
    if uid:
        check(Attributes("impersonate", True, api_group="authentication.k8s.io", resource="uids", name=uid), uid)
    for key, vals in extras.items():
        for v in vals:
            check(Attributes("impersonate", True, api_group="authentication.k8s.io", resource="userextras",
                             subresource=key, name=v), v)
    if name != ANONYMOUS and AUTHENTICATED not in all_groups:
        all_groups.append(AUTHENTICATED)
    if name == ANONYMOUS and UNAUTHENTICATED not in all_groups:
        all_groups.append(UNAUTHENTICATED)
    return User(name, tuple(all_groups), uid, tuple((k, tuple(v)) for k, v in sorted(extras.items())))
