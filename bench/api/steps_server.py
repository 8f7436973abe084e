"""Run ``servicenet.cli`` with the CPU time (``time.thread_time``) of each create step summed.

    python -m bench.api.steps_server OUT.json apiserver --data-dir ...

Wraps the synchronous steps of a create (body decode, defaulting, validation, managedFields, the
store's encode, the protobuf answer, the GC controller's view of the write) and the cyclic garbage
collector; at exit writes ``{step: [seconds, calls]}`` to OUT.json. Two clock reads per call: unlike
cProfile, the figures add up (see bench/api/steps.py).
"""

from __future__ import annotations

import atexit
import gc
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from servicenet import cli
from servicenet.api import defaults, shape_cache, spec_cache, validation
from servicenet.api.pb import wire
from servicenet.apiserver import authn, authz, handlers, negotiation, registry, sa_admission
from servicenet.apiserver import gc as gc_controller
from servicenet.store import _plan
from servicenet.store.index import Index
from servicenet.store.sqlite import SQLiteStore
from servicenet.store.watch import WatchHub

_acc: dict[str, list[float]] = {}


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            c = _acc.setdefault(name, [0.0, 0])
            c[0] += time.thread_time() - t
            c[1] += 1
    return wrapper


_STEPS: list[tuple[Any, list[str]]] = [
    (negotiation, ["decode_body", "protobuf_response", "created_answer"]),
    (wire, ["decode", "encode"]),  # the protobuf codec inside decode_body / protobuf_response
    (defaults, ["apply_defaults", "prepare_for_create"]),
    (validation, ["validate_create"]),
    (shape_cache, ["unknown_fields", "create_managed_fields"]),
    (_plan, ["encode_at"]),
    (gc_controller, ["view_obj", "metadata_view"]),
    (sa_admission, ["mount_token", "mount_token_spec"]),
    (spec_cache, ["admitted_spec", "pod_create_defaults"]),
    (shape_cache, ["shape_key"]),
    (Index, ["apply"]),
    (WatchHub, ["publish"]),
    (SQLiteStore, ["_on_committed"]),
    (gc_controller.GarbageCollector, ["_on_events"]),
    (authn.Authenticator, ["authenticate"]),
    (authz.Authorizer, ["authorize"]),
    (registry.Registry, ["_check_namespace"]),
    (registry.Registry, ["_prepare_meta_create", "_managed_fields"]),
    (handlers.ResourceHandlers, ["write_options", "check_unknown_fields"]),
]


def _gc_clock() -> None:
    started = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.thread_time()
            return
        c = _acc.setdefault(f"gc (generation {info['generation']})", [0.0, 0])
        c[0] += time.thread_time() - started[0]
        c[1] += 1
    gc.callbacks.append(on_gc)


def main() -> int:
    out = sys.argv[1]
    for owner, names in _STEPS:
        for name in names:
            if hasattr(owner, name):  # a step another checkout (an A/B's base) may not have
                setattr(owner, name, _timed(name, getattr(owner, name)))
    _gc_clock()
    atexit.register(lambda: json.dump(_acc, open(out, "w")))  # noqa: SIM115 - at exit
    return cli.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
