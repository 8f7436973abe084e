"""A grpcio channel pool that picks an endpoint per call (grpcio has no custom LB for Python)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import grpc

from servicenet.lb.balancer import Balancer
from servicenet.lb.calls import RequestPolicy, call_sync, remaining
from servicenet.lb.policies import Backend

_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})


class ChannelPool:
    """One channel per endpoint (kept while the endpoint is in the set); a call picks one."""

    def __init__(self, balancer: Balancer, *, credentials: grpc.ChannelCredentials | None = None,
                 options: list[tuple[str, Any]] | None = None, policy: RequestPolicy | None = None) -> None:
        self.balancer = balancer
        self.credentials = credentials
        self.options = options or []
        self.policy = policy or RequestPolicy()
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()
        balancer.add_listener(self._prune)

    def channel_for(self, b: Backend) -> grpc.Channel:
        with self._lock:
            ch = self._channels.get(b.key)
            if ch is None:
                target = b.key
                ch = (grpc.secure_channel(target, self.credentials, self.options) if self.credentials
                      else grpc.insecure_channel(target, self.options))
                self._channels[b.key] = ch
            return ch

    def _prune(self, balancer: Balancer) -> None:
        keep = {e.key for e in balancer.endpoints}
        with self._lock:
            for k in [k for k in self._channels if k not in keep]:
                self._channels.pop(k).close()

    def unary_unary(self, method: str, request_serializer: Callable[[Any], bytes] | None = None,
                    response_deserializer: Callable[[bytes], Any] | None = None,
                    idempotent: bool = False) -> Callable[..., Any]:
        """Like ``Channel.unary_unary``; every invocation picks an endpoint."""
        base = self.policy

        def invoke(request: Any, timeout: float | None = None, metadata: Any = None, key: Any = None) -> Any:
            per_try = base.timeout
            if timeout is not None:
                per_try = timeout if per_try is None else min(per_try, timeout)
            policy = dataclasses.replace(
                base, idempotent=idempotent or base.idempotent, timeout=per_try,
                retryable=lambda exc: isinstance(exc, grpc.RpcError) and exc.code() in _RETRYABLE)

            def attempt(b: Backend, limit: float | None) -> Any:
                stub = self.channel_for(b).unary_unary(method, request_serializer=request_serializer,
                                                       response_deserializer=response_deserializer)
                left = remaining()
                t = limit if left is None else (left if limit is None else min(limit, left))
                return stub(request, timeout=t, metadata=metadata)  # gRPC sends the deadline on

            return call_sync(self.balancer, attempt, key=key, policy=policy)

        return invoke

    def close(self) -> None:
        with self._lock:
            for ch in self._channels.values():
                ch.close()
            self._channels.clear()
