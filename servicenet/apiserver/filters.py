"""The API server's request filter chain after error handling, outermost first: audit,
authentication + impersonation + authorization (with the identity APIs), then flow control
(body limit, max in flight with per-user fair queueing, request timeouts)."""

from __future__ import annotations

from typing import Any

from servicenet.apiserver.audit import AuditLog
from servicenet.apiserver.flowcontrol import FlowControl


def build(server: Any) -> list[Any]:
    cfg = server.config
    out: list[Any] = []
    if cfg.audit_policy_file is not None and cfg.audit_log_path is not None:
        server.audit = AuditLog(cfg.audit_policy_file, cfg.audit_log_path, cfg.audit_log_maxsize,
                                cfg.audit_log_maxbackup)
        out.append(server.audit.middleware)
    if server.security is not None:
        out.append(server.security.middleware)
    server.flowcontrol = FlowControl(cfg.max_requests_inflight, cfg.max_mutating_requests_inflight,
                                     default_timeout=cfg.request_timeout)
    out.append(server.flowcontrol.middleware)
    return out
