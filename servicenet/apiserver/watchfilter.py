"""Pure core: which event a selector-filtered watcher sees (no I/O).

A watch with a label or field selector must look as if the store only held matching objects
(upstream ``cacheWatcher.convertToWatchEvent``). So an update is re-typed by whether the object
matched before and after it:

==========  ===============  ==============  =========
store       matched before   matches now     watcher
==========  ===============  ==============  =========
ADDED       (no old object)  yes / no        ADDED / —
MODIFIED    yes              yes             MODIFIED
MODIFIED    no               yes             ADDED
MODIFIED    yes              no              DELETED
MODIFIED    no               no              —
DELETED     (last state)     yes / no        DELETED / —
==========  ===============  ==============  =========
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from servicenet.api.fieldselectors import FieldSelector
from servicenet.api.selectors import LabelSelector
from servicenet.api.views import labels_of

__all__ = ["Selection", "filter_event"]


@dataclass(frozen=True, slots=True)
class Selection:
    """The label and field selectors of one LIST or WATCH (either may be absent)."""

    labels: LabelSelector | None = None
    fields: FieldSelector | None = None

    @staticmethod
    def parse(label_selector: str, field_selector: str, kind: str) -> Selection:
        """Raises a 400 ``ApiStatusError`` for a selector that does not parse."""
        return Selection(LabelSelector.parse(label_selector) if label_selector else None,
                         FieldSelector.parse(field_selector, kind) if field_selector else None)

    @property
    def active(self) -> bool:
        return self.labels is not None or self.fields is not None

    def matches(self, obj: Mapping[str, Any]) -> bool:
        if self.labels is not None and not self.labels.matches(labels_of(obj)):
            return False
        return self.fields is None or self.fields.matches(obj)


def filter_event(etype: str, cur: Mapping[str, Any], prev: Mapping[str, Any] | None,
                 selection: Selection) -> str | None:
    """The event type the watcher sees for one store event, or ``None`` to send nothing.

    ``cur`` is the object after the event (for DELETED, its last state); ``prev`` the object
    before it (``None`` for ADDED).
    """
    if not selection.active:
        return etype
    now = selection.matches(cur)
    if etype == "DELETED":
        return "DELETED" if now else None
    was = prev is not None and selection.matches(prev)
    if now:
        return "MODIFIED" if was else "ADDED"
    return "DELETED" if was else None
