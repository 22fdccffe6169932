"""Counters the emulator exposes at ``GET /_emulator/stats`` (thread-safe).

``bytes_served`` counts recording bytes (audio bodies of the download, media
file and stream endpoints) handed to the connection, per recording id and in
total; JSON bodies are not counted there. Tests compare these with the bytes a
client received, e.g. across a pipeline run that was killed and resumed.
"""

from __future__ import annotations

import threading
from collections import Counter

__all__ = ["EmulatorStats"]


class EmulatorStats:
    """Request, response and byte counters."""

    _EVENTS = ("rate_limited", "server_errors", "drops", "ignored_ranges", "json_errors", "etag_changes", "unauthorized", "tokens_issued", "extraction_jobs", "extraction_files")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Zero every counter."""
        with self._lock:
            self._requests: Counter[str] = Counter()
            self._statuses: Counter[int] = Counter()
            self._bytes: Counter[str] = Counter()
            self._events: Counter[str] = Counter()

    def request(self, route: str) -> None:
        with self._lock:
            self._requests[route] += 1

    def response(self, status: int) -> None:
        with self._lock:
            self._statuses[status] += 1

    def served(self, rec_id: str, nbytes: int) -> None:
        with self._lock:
            self._bytes[rec_id] += nbytes

    def event(self, name: str) -> None:
        if name not in self._EVENTS:
            raise ValueError(f"unknown stats event {name!r}")
        with self._lock:
            self._events[name] += 1

    def bytes_served(self, rec_id: str | None = None) -> int:
        """Recording bytes served for ``rec_id``, or in total when None."""
        with self._lock:
            return self._bytes[rec_id] if rec_id is not None else sum(self._bytes.values())

    def snapshot(self) -> dict:
        """JSON-ready copy: ``requests`` per route, ``responses`` per status,
        ``bytes_served`` per recording, ``bytes_served_total``, and event counts."""
        with self._lock:
            snap = {
                "requests": dict(self._requests),
                "requests_total": sum(self._requests.values()),
                "responses": {str(k): v for k, v in sorted(self._statuses.items())},
                "bytes_served": dict(self._bytes),
                "bytes_served_total": sum(self._bytes.values()),
            }
            snap.update({name: self._events[name] for name in self._EVENTS})
            return snap
