"""What to do with an HTTP answer, without I/O: accept, retry, wait, refresh, restart or fail.

One decision table for every HTTP request a source makes (JSON API calls
(:mod:`.api`), ranged media requests (:mod:`.downloader`), range probes
(:mod:`.httpsource`)), so a new source cannot get a status wrong in its own copy:

========================  ===================  ==================================================
status                    action               why
========================  ===================  ==================================================
in ``ok``                 ``ACCEPT``           (a JSON body where media was expected: ``RETRY``)
401                       ``REFRESH_TOKEN``    RFC 6750 §3.1: the token expired or was revoked
429                       ``RATE_LIMITED``     RFC 6585 §4; wait ``Retry-After`` (RFC 9110 §10.2.3)
416 to a range request    ``RESTART``          RFC 9110 §15.5.17: the resource's size changed
5xx, 408                  ``RETRY``            transient; ``Retry-After`` honoured when given
anything else             ``FAIL``             reason ``http-{status}`` (403: an expired signed URL)
========================  ===================  ==================================================

:class:`RetryBudget` then turns a sequence of decisions for one request into waits, or
into :class:`RetriesExhausted` once :class:`~voxpipe.download.retry.RetryPolicy` says so.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from typing import Mapping

from .retry import RetryPolicy, parse_retry_after

#: Media types that mark an error payload where media bytes were expected.
JSON_TYPES = ("application/json",)


class Action(enum.Enum):
    ACCEPT = "accept"
    RETRY = "retry"
    RATE_LIMITED = "rate-limited"
    REFRESH_TOKEN = "refresh-token"
    RESTART = "restart"
    FAIL = "fail"


@dataclass(frozen=True)
class Decision:
    """The verdict on one answer.

    :ivar action: what the caller does next.
    :ivar reason: stable reason code (``http-404``, ``json-error-body``, ``range-not-satisfiable``…).
    :ivar wait: seconds the server asked to wait (``Retry-After``), or ``None``.
    """

    action: Action
    reason: str = ""
    wait: float | None = None

    @property
    def retryable(self) -> bool:
        """Whether the same request may be sent again (after :meth:`RetryBudget.next_wait`)."""
        return self.action in (Action.RETRY, Action.RATE_LIMITED, Action.REFRESH_TOKEN)


def _media_type(headers: Mapping[str, str]) -> str:
    return str(headers.get("content-type", "")).split(";")[0].strip().lower()


def classify(status: int, headers: Mapping[str, str] | None = None, *, now: float, ok: tuple[int, ...] = (200,),
             media: bool = False, range_asked: bool = False) -> Decision:
    """Decide what an answer with ``status`` and ``headers`` means (see the module table).

    :param headers: the answer's headers (case-insensitive mapping, e.g. :class:`httpx.Headers`).
    :param now: the current Unix time in seconds (for an HTTP-date ``Retry-After``).
    :param ok: statuses that are an answer.
    :param media: the body is expected to be media: an ``ok`` answer whose Content-Type is
        JSON is an error payload (CXone's blob-storage timeouts), to be retried.
    :param range_asked: the request carried ``Range`` (a 416 then means the size changed).
    """
    headers = headers or {}
    if status in ok:
        ctype = _media_type(headers)
        if media and (ctype in JSON_TYPES or ctype.endswith("+json")):
            return Decision(Action.RETRY, "json-error-body")
        return Decision(Action.ACCEPT)
    if status == 401:
        return Decision(Action.REFRESH_TOKEN, "http-401")
    if status == 429:
        return Decision(Action.RATE_LIMITED, "http-429", parse_retry_after(headers.get("retry-after"), now=now))
    if status == 416 and range_asked:
        return Decision(Action.RESTART, "range-not-satisfiable")
    if status >= 500 or status == 408:
        return Decision(Action.RETRY, f"http-{status}", parse_retry_after(headers.get("retry-after"), now=now))
    return Decision(Action.FAIL, f"http-{status}")


class RetriesExhausted(Exception):
    """The budget for one request is spent; ``reason`` is the stable code for the error to raise.

    Reasons: ``http-401`` (refused again after a token refresh), ``http-429-exhausted``
    (too many 429s, or a ``Retry-After`` longer than allowed), ``download-failed``
    (``max_attempts`` transient failures without progress).
    """

    def __init__(self, message: str, *, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class RetryBudget:
    """Counts the retries of one request and says how long to wait before the next one.

    :param policy: the limits (attempts, 429s, longest ``Retry-After``, backoff).
    :param rng: jitter source (seeded in tests).
    :param can_refresh: whether a 401 may be answered by refreshing the token (once).
    """

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    rng: random.Random | None = None
    can_refresh: bool = True
    failures: int = 0
    rate_limited: int = 0
    refreshed: bool = False

    def progress(self) -> None:
        """Bytes arrived since the last failure: count transient failures afresh."""
        self.failures = 0

    def transient(self) -> float:
        """A transport error or another transient failure: seconds to wait before retrying.

        :raises RetriesExhausted: ``download-failed`` after ``max_attempts`` failures.
        """
        return self.next_wait(Decision(Action.RETRY, "transport"))

    def next_wait(self, decision: Decision) -> float:
        """Seconds to wait before retrying after ``decision`` (0 for a token refresh).

        :raises RetriesExhausted: the budget for the decision's kind is spent.
        :raises ValueError: the decision is not :attr:`~Decision.retryable`.
        """
        p = self.policy
        if decision.action is Action.REFRESH_TOKEN:
            if self.refreshed or not self.can_refresh:
                raise RetriesExhausted("401 Unauthorized" + (" after a token refresh" if self.refreshed else ""),
                                       reason="http-401")
            self.refreshed = True
            return 0.0
        if decision.action is Action.RATE_LIMITED:
            self.rate_limited += 1
            if self.rate_limited > p.max_rate_limited:
                raise RetriesExhausted(f"still rate-limited (429) after {self.rate_limited} waits",
                                       reason="http-429-exhausted")
            wait = decision.wait if decision.wait is not None else p.backoff(self.rate_limited, self.rng)
            if wait > p.max_retry_after:
                raise RetriesExhausted(f"asked to retry after {wait:.0f} s, more than the {p.max_retry_after:.0f} s "
                                       "allowed", reason="http-429-exhausted")
            return wait
        if decision.action is Action.RETRY:
            self.failures += 1
            if self.failures >= p.max_attempts:
                raise RetriesExhausted(f"giving up after {self.failures} attempts", reason="download-failed")
            return decision.wait if decision.wait is not None else p.backoff(self.failures, self.rng)
        raise ValueError(f"{decision.action.value} is not a retry")
