"""Run one component until SIGTERM or SIGINT, then stop it cleanly (the one ``main`` loop).

Every component command (``servicenet dns``, ``node``, ``controller-manager``, ``proxy``,
``apiserver``) ends in :func:`run_until_signal`::

    async def run() -> None:
        client = ApiClient.from_kubeconfig(path)
        await run_until_signal(DnsServer(client, ...), closing=[client.close])
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from servicenet.common import log
from servicenet.common.component import Component

__all__ = ["install_uvloop", "main_args", "run_until_signal", "signal_event", "start_unless", "wait_for_signal"]


def main_args(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.Namespace, tuple[str, int]]:
    """A component command's start: ``argv`` parsed, logging set up at ``--log-level``, and
    ``--health-listen`` (``[host]:port``) split into host (default 127.0.0.1) and port."""
    args = parser.parse_args(argv)
    log.setup(args.log_level)
    host, _, port = args.health_listen.rpartition(":")
    return args, (host or "127.0.0.1", int(port))


def signal_event() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (the handlers are installed now)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def wait_for_signal() -> None:
    """Return once the process receives SIGTERM or SIGINT."""
    await signal_event().wait()


async def start_unless(start: Awaitable[Any], stop: asyncio.Event) -> bool:
    """Run a start-up step unless ``stop`` is set first: then cancel it and return False (the
    caller stops what was started, including this step's part). A failing step raises."""
    task = asyncio.ensure_future(start)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task.done():
        task.result()
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return False


async def run_until_signal(component: Component, *, closing: Sequence[Callable[[], Awaitable[Any]]] = (),
                           announce: bool = False, started: Callable[[], None] | None = None) -> None:
    """Start ``component``, wait for a signal, stop it, then run ``closing`` in order.

    ``announce`` prints ``component.describe()`` as one JSON line once it has started; ``started``
    is called then instead, for a component that reports itself in its own words. If the start
    fails, ``closing`` still runs (and the error propagates).
    """
    try:
        await component.start()
    except BaseException:
        for close in closing:
            await close()
        raise
    if started is not None:
        started()
    elif announce:
        print(json.dumps(component.describe()), flush=True)
    try:
        await wait_for_signal()
    finally:
        try:
            await component.stop()
        finally:
            for close in closing:
                await close()


def install_uvloop() -> bool:
    """Use uvloop when it is installed (an optional speed-up)."""
    try:
        import uvloop  # optional dependency
    except ImportError:
        return False
    uvloop.install()
    return True
