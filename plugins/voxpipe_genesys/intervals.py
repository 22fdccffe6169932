"""Splitting an analytics query interval until every part can be paged through: no I/O.

``POST /api/v2/analytics/conversations/details/query`` refuses ``pageSize × pageNumber``
above 100,000 (400 "Pagination may not exceed 100000 results"; official SDK docs, shared
reference ``genesys.md``), so an interval holding more conversations cannot be listed in
one query. :class:`IntervalPlan` keeps the parts still to query, earliest first, and
bisects a part whenever its ``totalHits`` show it cannot be paged through.

Boundaries. The query returns conversations that *started on a day touched by the
interval* and overlap it, so a part's answer may hold conversations that started before
the part (still active at its start). Each conversation is kept by the one part whose
half-open ``[start, end)`` holds its ``conversationStart`` (:meth:`Part.holds`); the parts
tile the interval, so every conversation that started in it is kept exactly once, and
the caller's set of ids seen removes any repeat caused by pages shifting while it reads.

Termination: ``totalHits`` of a part counts the conversations *active* in it, so halving
ends once fewer conversations are active at once than the query pages through (for the
real API: fewer than 100,000 concurrent conversations, far beyond any contact center);
otherwise :class:`TooDense` after about 40 halvings of a day, never an endless split.

Times are whole milliseconds since the epoch (the API's precision), so the text sent as
``interval`` and the boundary used for filtering are the same instant.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timezone

#: ``pageSize × pageNumber`` may not exceed this (the analytics query's paging limit).
MAX_QUERY_RESULTS = 100_000
#: Shortest part that may still be bisected (ms); a part this short that still holds more
#: than :data:`MAX_QUERY_RESULTS` conversations is an error, not an endless split.
MIN_SPLIT_MS = 2
#: Most parts one interval may be split into (bounds the plan's memory and requests).
MAX_PARTS = 100_000

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class TooDense(ValueError):
    """A part cannot be split further yet holds more conversations than the API pages through."""


def to_ms(moment: datetime) -> int:
    """An aware datetime → whole milliseconds since the epoch (rounded down)."""
    delta = moment.astimezone(timezone.utc) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def iso_ms(ms: int) -> str:
    """Milliseconds since the epoch → ``2026-11-01T08:00:00.000Z``."""
    seconds, millis = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


def parse_ms(text: str) -> int:
    """An ISO-8601 date-time (``Z`` or offset; naive means UTC) → milliseconds since the epoch.

    :raises ValueError: not an ISO-8601 date-time.
    """
    moment = datetime.fromisoformat(text.strip())
    return to_ms(moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc))


@dataclass(frozen=True, slots=True)
class Part:
    """A half-open ``[start_ms, end_ms)`` piece of the interval being discovered."""

    start_ms: int
    end_ms: int

    @property
    def interval(self) -> str:
        """The ``ConversationQuery.interval`` text of this part."""
        return f"{iso_ms(self.start_ms)}/{iso_ms(self.end_ms)}"

    def holds(self, start_ms: int) -> bool:
        """Whether a conversation that started at ``start_ms`` belongs to this part."""
        return self.start_ms <= start_ms < self.end_ms

    def bisect(self) -> tuple["Part", "Part"]:
        """The two halves (split on a whole millisecond).

        :raises TooDense: the part is shorter than :data:`MIN_SPLIT_MS`.
        """
        if self.end_ms - self.start_ms < MIN_SPLIT_MS:
            raise TooDense(f"interval {self.interval} cannot be split further")
        middle = self.start_ms + (self.end_ms - self.start_ms) // 2
        return Part(self.start_ms, middle), Part(middle, self.end_ms)


def fits(total_hits: int, page_size: int) -> bool:
    """Whether ``total_hits`` conversations can be paged through in pages of ``page_size``
    without ``pageSize × pageNumber`` exceeding :data:`MAX_QUERY_RESULTS`."""
    pages = -(-total_hits // page_size)
    return pages * page_size <= MAX_QUERY_RESULTS


class Step(enum.Enum):
    """What to do after reading one page of a part."""

    NEXT_PAGE = "next-page"  # ask for the following page of the same part
    SPLIT = "split"  # the part holds too many conversations: drop this answer, query its halves
    DONE = "done"  # the part is exhausted


def after_page(page_number: int, page_size: int, found: int, total_hits: int) -> Step:
    """The step after page ``page_number`` (1-based) answered ``found`` conversations of ``total_hits``.

    ``totalHits`` is checked on every page, not only the first: an interval still
    receiving conversations may grow past the limit while it is read (the ids already
    taken are then deduplicated by the caller).
    """
    if not fits(total_hits, page_size):
        return Step.SPLIT
    if found == 0 or page_number * page_size >= total_hits or (page_number + 1) * page_size > MAX_QUERY_RESULTS:
        return Step.DONE
    return Step.NEXT_PAGE


class IntervalPlan:
    """The parts of an interval still to query, earliest first.

    >>> plan = IntervalPlan(Part(0, 1000))
    >>> plan.next()
    Part(start_ms=0, end_ms=1000)
    >>> plan.split(Part(0, 1000)); plan.next()
    Part(start_ms=0, end_ms=500)

    :ivar splits: how many times a part was bisected.
    """

    def __init__(self, whole: Part):
        self._todo: list[Part] = [whole]  # a stack: the earliest part is last
        self.splits = 0

    def next(self) -> Part | None:
        """The earliest part not yet queried, or ``None`` when the interval is done."""
        return self._todo.pop() if self._todo else None

    def split(self, part: Part) -> None:
        """Replace ``part`` (just taken by :meth:`next`) by its two halves.

        :raises TooDense: the part cannot be split, or the plan would exceed :data:`MAX_PARTS`.
        """
        first, second = part.bisect()
        if self.splits + 1 >= MAX_PARTS:
            raise TooDense(f"interval split into more than {MAX_PARTS} parts")
        self.splits += 1
        self._todo.extend((second, first))

    @classmethod
    def of(cls, interval: str) -> "IntervalPlan":
        """A plan for ``START/END`` (ISO-8601, as the ``interval`` setting)."""
        start, _, end = interval.partition("/")
        return cls(Part(parse_ms(start), parse_ms(end)))
