"""DefaultTolerationSeconds admission (pure): bounded NoExecute tolerations for lost nodes.

On pod create the API server gives every pod that does not already tolerate them
``node.kubernetes.io/not-ready`` and ``node.kubernetes.io/unreachable`` ``NoExecute``
tolerations with ``tolerationSeconds`` (upstream default 300 each), so that the node
lifecycle controller's taints evict the pod only after that long.
"""

from __future__ import annotations

from typing import Any

NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
DEFAULT_SECONDS = 300


def _covers(t: Any, key: str) -> bool:
    """A toleration that already speaks about NoExecute ``key`` (or every key)."""
    if not isinstance(t, dict):
        return False
    if t.get("effect") not in (None, "", "NoExecute"):
        return False
    return t.get("key") == key or (not t.get("key") and t.get("operator") == "Exists")


def add_default_tolerations(spec: dict[str, Any], not_ready_seconds: int | None = DEFAULT_SECONDS,
                            unreachable_seconds: int | None = DEFAULT_SECONDS) -> None:
    """Append the two defaults to ``spec.tolerations`` where missing (None = do not add that one)."""
    tols = spec.get("tolerations")
    if not isinstance(tols, list):
        tols = []
    added = []
    for key, seconds in ((NOT_READY_TAINT, not_ready_seconds), (UNREACHABLE_TAINT, unreachable_seconds)):
        if seconds is None or any(_covers(t, key) for t in tols):
            continue
        added.append({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": int(seconds)})
    if added:
        spec["tolerations"] = [*tols, *added]
