"""Fault injection for the CXone emulator: configuration, pure decisions, scripts.

Two sources of faults, consulted per request by :class:`FaultPlan`:

* a **script** — a FIFO of :class:`FaultAction` queued by tests
  (:meth:`FaultPlan.schedule`), each consumed by the next request of a matching
  :class:`RequestKind` (by default the three body-serving kinds);
* **random** faults — :func:`decide`, a pure function of a seeded
  :class:`random.Random`, the :class:`FaultConfig` probabilities and the request
  kind. Every call draws the same number of values whatever the
  configuration, so a ``--seed`` reproduces the schedule exactly.

Fault kinds mirror what the engine issue says clients must survive: 429 with
``Retry-After``, 5xx, a connection dropped mid-body, a ``Range`` ignored (200
with the whole body), an ``application/json`` error body on an audio endpoint
(the seed's blob-storage timeout), and the recording changing on the server
(new ETag).
"""

from __future__ import annotations

import enum
import random
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Final
from collections.abc import Iterable

__all__ = [
    "RequestKind",
    "FaultKind",
    "FaultAction",
    "FaultConfig",
    "NO_FAULT",
    "BODY_KINDS",
    "API_KINDS",
    "MAX_SCRIPTED_ACTIONS",
    "decide",
    "drop_point",
    "FaultPlan",
]

MAX_SCRIPTED_ACTIONS: Final = 10_000
"""Most fault actions a script may hold at once."""

DRAWS_PER_DECISION: Final = 7
"""Random values :func:`decide` draws per request (fixed, for reproducible schedules)."""


class RequestKind(enum.StrEnum):
    """What a request asks the emulator for (one per endpoint)."""

    TOKEN = "token"
    METADATA = "metadata"
    DOWNLOAD = "download"
    MEDIA_FILE = "media_file"
    STREAM = "stream"
    PLAYBACK = "playback"


BODY_KINDS: Final = frozenset({RequestKind.DOWNLOAD, RequestKind.MEDIA_FILE, RequestKind.STREAM})
"""Request kinds whose response body is recording bytes."""

API_KINDS: Final = BODY_KINDS | {RequestKind.METADATA, RequestKind.PLAYBACK}
"""Request kinds subject to random 429/5xx faults (token requests never are)."""

RANGED_KINDS: Final = frozenset({RequestKind.DOWNLOAD, RequestKind.MEDIA_FILE})


class FaultKind(enum.StrEnum):
    """One injected misbehaviour."""

    NONE = "none"
    RATE_LIMIT = "rate-limit"
    """429 Too Many Requests with ``Retry-After``."""
    SERVER_ERROR = "server-error"
    """A 5xx with a JSON body."""
    DROP = "drop"
    """Send part of the body, then close the connection (truncated body)."""
    IGNORE_RANGE = "ignore-range"
    """Answer 200 with the whole body whatever ``Range`` asked."""
    JSON_ERROR = "json-error"
    """200/206 with ``Content-Type: application/json`` error payload instead of audio."""
    ETAG_CHANGE = "etag-change"
    """The recording changes on the server (new version, new ETag) before this request."""


@dataclass(frozen=True)
class FaultAction:
    """One fault to apply to one request.

    ``status`` is used by SERVER_ERROR (500–599). ``retry_after`` (seconds) and
    ``retry_after_http_date`` shape RATE_LIMIT's ``Retry-After`` (delay-seconds
    or IMF-fixdate, RFC 9110 §10.2.3). DROP sends ``drop_after`` body bytes when
    given, else ``floor(drop_fraction × body length)``, always fewer than the
    whole body. ``ignore_range`` adds an ignored ``Range`` to a DROP (or any
    body-serving action): a whole-body 200 that is then cut short.
    """

    kind: FaultKind
    status: int = 503
    retry_after: float = 1.0
    retry_after_http_date: bool = False
    drop_after: int | None = None
    drop_fraction: float = 0.5
    ignore_range: bool = False

    @property
    def ignores_range(self) -> bool:
        """True when this action makes the server ignore the request's ``Range``."""
        return self.kind is FaultKind.IGNORE_RANGE or self.ignore_range

    def __post_init__(self) -> None:
        if not isinstance(self.kind, FaultKind):
            object.__setattr__(self, "kind", FaultKind(self.kind))
        if self.kind is FaultKind.SERVER_ERROR and not 500 <= self.status <= 599:
            raise ValueError(f"server-error fault status must be 500..599, got {self.status}")
        if self.retry_after < 0:
            raise ValueError(f"retry_after must be ≥ 0 seconds, got {self.retry_after}")
        if self.drop_after is not None and self.drop_after < 0:
            raise ValueError(f"drop_after must be ≥ 0 bytes, got {self.drop_after}")
        if not 0.0 <= self.drop_fraction < 1.0:
            raise ValueError(f"drop_fraction must be in [0, 1), got {self.drop_fraction}")


NO_FAULT: Final = FaultAction(FaultKind.NONE)


@dataclass(frozen=True)
class FaultConfig:
    """Per-request probabilities (0..1) of random faults, and their shape."""

    rate_limit: float = 0.0
    server_error: float = 0.0
    drop: float = 0.0
    ignore_range: float = 0.0
    json_error: float = 0.0
    retry_after: float = 1.0
    retry_after_http_date: bool = False
    server_error_statuses: tuple[int, ...] = (500, 502, 503, 504)

    def __post_init__(self) -> None:
        for name in ("rate_limit", "server_error", "drop", "ignore_range", "json_error"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"fault probability {name.replace('_', '-')} must be within 0..1, got {p}")
        if not self.server_error_statuses or any(not 500 <= s <= 599 for s in self.server_error_statuses):
            raise ValueError(f"server_error_statuses must be 5xx codes, got {self.server_error_statuses}")

    @property
    def any(self) -> bool:
        """True when some random fault can happen."""
        return any((self.rate_limit, self.server_error, self.drop, self.ignore_range, self.json_error))


def decide(rng: random.Random, config: FaultConfig, kind: RequestKind) -> FaultAction:
    """Pick the random fault (or :data:`NO_FAULT`) for one request of ``kind``.

    Pure apart from advancing ``rng`` by exactly :data:`DRAWS_PER_DECISION`
    values. Faults are tried in the order 429, 5xx, JSON error, then drop and
    ignore-range (which combine: a whole-body 200 cut short); only faults that
    make sense for the request kind are eligible (ranges only for ranged
    downloads, bodies only for body-serving kinds, nothing for token requests).
    """
    u_429, u_5xx, u_json, u_ignore, u_drop, u_fraction, u_status = (rng.random() for _ in range(DRAWS_PER_DECISION))
    if kind not in API_KINDS:
        return NO_FAULT
    if u_429 < config.rate_limit:
        return FaultAction(
            FaultKind.RATE_LIMIT,
            retry_after=config.retry_after,
            retry_after_http_date=config.retry_after_http_date,
        )
    if u_5xx < config.server_error:
        statuses = config.server_error_statuses
        return FaultAction(FaultKind.SERVER_ERROR, status=statuses[int(u_status * len(statuses))])
    if kind in BODY_KINDS and u_json < config.json_error:
        return FaultAction(FaultKind.JSON_ERROR)
    ignore = kind in RANGED_KINDS and u_ignore < config.ignore_range
    if kind in BODY_KINDS and u_drop < config.drop:
        return FaultAction(FaultKind.DROP, drop_fraction=u_fraction, ignore_range=ignore)
    if ignore:
        return FaultAction(FaultKind.IGNORE_RANGE)
    return NO_FAULT


def drop_point(action: FaultAction, body_length: int) -> int:
    """Body bytes to send before dropping the connection: in ``[0, body_length - 1]``."""
    if body_length <= 0:
        return 0
    wanted = action.drop_after if action.drop_after is not None else int(action.drop_fraction * body_length)
    return max(0, min(wanted, body_length - 1))


@dataclass
class _Scripted:
    action: FaultAction
    kinds: frozenset[RequestKind]


@dataclass
class FaultPlan:
    """Thread-safe source of the fault for each request: script first, then :func:`decide`.

    ``seed`` None draws a random seed (reported as :attr:`seed` so a run can be
    reproduced).
    """

    config: FaultConfig = field(default_factory=FaultConfig)
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.seed is None:
            self.seed = random.SystemRandom().randrange(2**32)
        self._rng = random.Random(self.seed)
        self._script: deque[_Scripted] = deque()
        self._lock = threading.Lock()

    def schedule(self, *actions: FaultAction | FaultKind | str, kinds: Iterable[RequestKind | str] = BODY_KINDS) -> None:
        """Queue ``actions``; each is consumed by the next request whose kind is in ``kinds``.

        Only the head of the queue is considered, so actions apply in order.
        Raises ValueError past :data:`MAX_SCRIPTED_ACTIONS` queued actions.
        """
        kind_set = frozenset(RequestKind(k) for k in kinds)
        if not kind_set:
            raise ValueError("schedule() needs at least one request kind")
        items = [_Scripted(a if isinstance(a, FaultAction) else FaultAction(FaultKind(a)), kind_set) for a in actions]
        with self._lock:
            if len(self._script) + len(items) > MAX_SCRIPTED_ACTIONS:
                raise ValueError(
                    f"fault script would hold {len(self._script) + len(items)} actions; the limit is {MAX_SCRIPTED_ACTIONS}"
                )
            self._script.extend(items)

    def clear(self) -> None:
        """Drop every queued scripted action."""
        with self._lock:
            self._script.clear()

    def pending(self) -> list[FaultAction]:
        """Scripted actions not yet consumed, in order."""
        with self._lock:
            return [s.action for s in self._script]

    def next_action(self, kind: RequestKind) -> FaultAction:
        """The fault for the next request of ``kind`` (consumes a scripted action or draws)."""
        with self._lock:
            if self._script and kind in self._script[0].kinds:
                return self._script.popleft().action
            return decide(self._rng, self.config, kind)
