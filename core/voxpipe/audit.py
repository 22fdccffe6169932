"""The audit log: one JSON object per line, appended, flushed per line.

Lines carry ``ts`` (Unix seconds, float), ``event`` and the event's fields. Events the
engine and first-party components write: ``run-start``, ``segment`` (one per ranged
response: offset, length in bytes, HTTP status, attempt, ms), ``stream`` (one per stream
outcome: status, reason, bytes, seconds, digests, stored paths), ``run-end``.

Values are written as given: callers must never pass a secret (the engine and the
first-party plugins pass ids, offsets, statuses and digests only).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any


class AuditLog:
    """Append-only JSON Lines file, safe to write from the event loop and worker threads.

    :param path: the file; parent directories are created.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file = open(self.path, "a", encoding="utf-8", buffering=1)  # line-buffered: a line per write()
        self._closed = False

    def write(self, event: str, **fields: Any) -> None:
        """Append one line ``{"ts": …, "event": event, **fields}``."""
        line = _line(event, fields)
        with self._lock:
            if not self._closed:
                self._file.write(line + "\n")

    def write_durable(self, event: str, **fields: Any) -> None:
        """Append one line like :meth:`write` and fsync it before returning.

        For lines that must survive a crash or power cut that happens right after, such as
        the intent line written before a deletion (retention).
        """
        line = _line(event, fields)
        with self._lock:
            if self._closed:
                raise ValueError(f"audit log {self.path} is closed")
            self._file.write(line + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Flush, fsync and close. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            finally:
                self._file.close()

    def __enter__(self) -> "AuditLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _line(event: str, fields: dict[str, Any]) -> str:
    return json.dumps({"ts": round(time.time(), 6), "event": event, **fields}, default=str, separators=(",", ":"))


def read_audit(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read an audit log back (a torn last line from a crash is skipped)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out
