"""Structured logging: one line per record, ``ts level component msg key=value ...``."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any


class _KVFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        ts += f".{int(record.msecs):03d}Z"
        parts = [ts, record.levelname.lower(), record.name, _quote(record.getMessage())]
        extra: dict[str, Any] = getattr(record, "kv", {}) or {}
        parts.extend(f"{k}={_quote(str(v))}" for k, v in extra.items())
        if record.exc_info:
            parts.append("exc=" + _quote(self.formatException(record.exc_info)))
        return " ".join(parts)


def _quote(s: str) -> str:
    if not s or any(c in s for c in ' "=\n'):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return s


def setup(level: str = "info") -> None:
    """Configure the root logger once for a servicenet process."""
    root = logging.getLogger()
    if any(getattr(h, "_servicenet", False) for h in root.handlers):
        root.setLevel(level.upper())
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_KVFormatter())
    handler._servicenet = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())


class Logger:
    """A thin wrapper so call sites read ``log.info("synced", services=10)``."""

    def __init__(self, name: str) -> None:
        self._log = logging.getLogger(name)

    def _emit(self, level: int, msg: str, kv: dict[str, Any], exc: bool = False) -> None:
        if self._log.isEnabledFor(level):
            self._log.log(level, msg, extra={"kv": kv}, exc_info=exc)

    def debug(self, msg: str, **kv: Any) -> None:
        self._emit(logging.DEBUG, msg, kv)

    def info(self, msg: str, **kv: Any) -> None:
        self._emit(logging.INFO, msg, kv)

    def warning(self, msg: str, **kv: Any) -> None:
        self._emit(logging.WARNING, msg, kv)

    def error(self, msg: str, **kv: Any) -> None:
        self._emit(logging.ERROR, msg, kv)

    def exception(self, msg: str, **kv: Any) -> None:
        self._emit(logging.ERROR, msg, kv, exc=True)


def get(name: str) -> Logger:
    return Logger(f"servicenet.{name}")
