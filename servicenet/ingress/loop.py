"""The sync loop both controllers run: wait until something is dirty, sync, repeat; a failed sync is
logged, remembered and retried after a pause (the data plane keeps its last good configuration)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from servicenet.common import log


async def sync_loop(owner: Any, sync: Callable[[], Awaitable[None]], seconds: Any, what: str,
                    on_error: Callable[[], None] = lambda: None) -> None:
    """Runs ``sync`` whenever ``owner._dirty`` is set, with ``owner._syncing`` True meanwhile;
    observes each run's duration in the histogram ``seconds``; on an error sets ``owner.last_error``,
    calls ``on_error`` and marks itself dirty again after 0.5 s."""
    logger = log.get(what)
    while True:
        await owner._dirty.wait()
        owner._dirty.clear()
        t0 = time.monotonic()
        owner._syncing = True
        try:
            await sync()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            owner.last_error = repr(exc)
            on_error()
            logger.exception("sync failed")
            await asyncio.sleep(0.5)
            owner._dirty.set()
        finally:
            owner._syncing = False
        seconds.observe(time.monotonic() - t0)
