"""Pure core: what happens after a container exits (restartPolicy + CrashLoopBackOff).

Inputs: the pod's ``restartPolicy``, whether the container is an init container, its exit code,
how long it ran and the backoff count so far. Output: a :class:`RestartDecision` — rest for good
(``NEVER``), restart ``NOW``, or restart ``LATER`` after ``delay`` seconds (the caller shows
``CrashLoopBackOff`` while it waits). Rules, as upstream's kubelet applies them:

* ``Never`` never restarts; ``OnFailure`` restarts only a non-zero exit; ``Always`` always does.
* An init container never restarts after success (``Always`` acts as ``OnFailure`` for it).
* The first restart is immediate, then the delay doubles from ``backoff.base`` up to ``backoff.cap``;
  a container that ran for ``backoff.reset_after`` seconds starts the count again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from servicenet.node.status import Backoff

__all__ = ["Restart", "RestartDecision", "decide", "effective_policy"]


class Restart(Enum):
    NEVER = "never"  # the container rests (done); the pod phase decides what follows
    NOW = "now"
    LATER = "later"  # after ``delay`` seconds, in CrashLoopBackOff


@dataclass(frozen=True, slots=True)
class RestartDecision:
    action: Restart
    delay: float = 0.0
    backoff_count: int = 0  # the count to store for the next exit


def effective_policy(pod_policy: str | None, init: bool) -> str:
    policy = pod_policy or "Always"
    if init and policy == "Always":
        return "OnFailure"  # init containers never restart on success
    return policy


def decide(policy: str, exit_code: int, ran_for: float, backoff_count: int, backoff: Backoff) -> RestartDecision:
    """The decision for one exit; ``policy`` is already :func:`effective_policy`'s result."""
    if policy == "Never" or (policy == "OnFailure" and exit_code == 0):
        return RestartDecision(Restart.NEVER, 0.0, backoff_count)
    count = backoff.next_count(backoff_count, ran_for)
    delay = backoff.delay(count)
    return RestartDecision(Restart.LATER if delay > 0 else Restart.NOW, delay, count + 1)
