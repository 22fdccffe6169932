"""JSON API calls (metadata, tokens, job polling) with the downloader's retry rules.

429 waits for ``Retry-After``; 5xx, 408 and transport errors back off with jitter; a 401
refreshes the token once; every loop is bounded by :class:`RetryPolicy`. Errors name the
method, the URL's path (never its query, which may carry signatures) and the status.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping

import httpx
import trio

from ..errors import StreamError
from .retry import RetryPolicy
from .status import Action, RetriesExhausted, RetryBudget, classify

if TYPE_CHECKING:  # pragma: no cover
    from .ratelimit import RateLimiter

log = logging.getLogger("voxpipe.download")

#: Largest JSON body accepted from an API (bytes).
MAX_JSON_BODY = 16 * 1024 * 1024


class APIError(StreamError):
    """An API call failed for good; ``status`` is the last HTTP status (0: no answer).

    ``code`` and ``context_id`` are the platform's error ``code`` and ``contextId`` when its
    error body carries them (Genesys Cloud: ``{message, code, status, contextId, ...}``;
    support asks for the ``contextId``), or the OAuth ``error`` (RFC 6749 §5.2) as ``code``.
    """

    reason = "api-error"

    def __init__(self, message: str, *, status: int = 0, reason: str | None = None, code: str | None = None,
                 context_id: str | None = None):
        super().__init__(message, reason=reason or (f"http-{status}" if status else "api-unreachable"))
        self.status = status
        self.code = code
        self.context_id = context_id


def redact_url(url: str | httpx.URL) -> str:
    """``scheme://host/path`` with no query string or credentials, for messages and logs."""
    u = httpx.URL(str(url))
    return f"{u.scheme}://{u.host}{':' + str(u.port) if u.port else ''}{u.path}"


class RedactURLFilter(logging.Filter):
    """Rewrites :class:`httpx.URL` arguments of log records to :func:`redact_url` form.

    Why: httpx logs every request line at INFO with the full URL, and temporary media URLs
    (CXone ``fileToPlayUrl``) carry their authorisation in the query string.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(redact_url(a) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


_HTTPX_FILTER = RedactURLFilter()


def install_httpx_log_redaction() -> None:
    """Attach :class:`RedactURLFilter` to the ``httpx`` logger (idempotent)."""
    logger = logging.getLogger("httpx")
    if _HTTPX_FILTER not in logger.filters:
        logger.addFilter(_HTTPX_FILTER)


async def request_json(client: httpx.AsyncClient, method: str, url: str, *,
                       auth: Callable[[], Awaitable[Mapping[str, str]]] | None = None,
                       on_401: Callable[[Mapping[str, str]], None] | None = None,
                       policy: RetryPolicy | None = None, ok: tuple[int, ...] = (200,),
                       rng: random.Random | None = None, what: str = "", limiter: "RateLimiter | None" = None,
                       **kwargs: Any) -> tuple[int, Any]:
    """Send a request and decode its JSON answer, retrying transient failures.

    :param ok: statuses that count as an answer (e.g. ``(200, 202)`` for job polling).
    :param what: context for messages, e.g. ``"recording 1234 metadata"``.
    :param limiter: the credential's request budget: every attempt (retries included)
        waits for it, and a 429 slows it down (:mod:`.ratelimit`).
    :returns: ``(status, decoded JSON or None for an empty body)``.
    :raises APIError: a non-retryable status, or retries exhausted.
    """
    budget = RetryBudget(policy or RetryPolicy(), rng or random.Random(), can_refresh=auth is not None)
    where = f"{method} {redact_url(url)}" + (f" ({what})" if what else "")
    while True:
        headers = dict(kwargs.pop("headers", {}) or {})
        sent = dict(headers)
        if auth is not None:
            sent.update(await auth())
        if limiter is not None:
            await limiter.acquire()
        try:
            response = await client.request(method, url, headers=sent, **kwargs)
            kwargs["headers"] = headers
        except httpx.TransportError as exc:
            kwargs["headers"] = headers
            try:
                await trio.sleep(budget.transient())
            except RetriesExhausted:
                raise APIError(f"{where}: {type(exc).__name__} after {budget.failures} attempts") from None
            continue
        status = response.status_code
        decision = classify(status, response.headers, now=time.time(), ok=ok)
        if decision.action is Action.ACCEPT:
            if len(response.content) > MAX_JSON_BODY:
                raise APIError(f"{where}: answer larger than {MAX_JSON_BODY} bytes", status=status)
            if not response.content:
                return status, None
            try:
                return status, response.json()
            except ValueError:
                raise APIError(f"{where}: answer is not JSON", status=status, reason="bad-json") from None
        if decision.action is Action.RATE_LIMITED and limiter is not None:
            limiter.on_rate_limited(decision.wait)
        wait: float | None = None
        if decision.retryable:
            try:
                wait = budget.next_wait(decision)
            except RetriesExhausted as exc:
                if exc.reason == "download-failed":
                    raise APIError(f"{where}: HTTP {status} after {budget.failures} attempts", status=status) from None
                if exc.reason == "http-429-exhausted":
                    raise APIError(f"{where}: {exc}", status=429, reason=exc.reason) from None
                # a 401 refused again (or without a token to refresh) is final: described below
        if wait is None:
            detail = error_detail(response)
            raise APIError(f"{where}: HTTP {status} {response.reason_phrase}: {detail.text}", status=status,
                           code=detail.code, context_id=detail.context_id)
        if decision.action is Action.REFRESH_TOKEN:
            if on_401 is not None:
                on_401(sent)
            continue
        log.info("%s: HTTP %d; retrying in %.2f s", where, status, wait)
        await trio.sleep(wait)


@dataclass(frozen=True)
class ErrorDetail:
    """What an error body says, for messages: ``text`` ends with the code and context id."""

    text: str
    code: str | None = None
    context_id: str | None = None


def _field(payload: dict, key: str, limit: int = 120) -> str | None:
    value = payload.get(key)
    return str(value)[:limit] if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "" \
        else None


def error_detail(response: httpx.Response) -> ErrorDetail:
    """The error body of a refused request, reduced to what helps a person and support.

    Known fields only (an error body may echo request parameters): ``message``,
    ``error_description``, ``errorMsg`` or ``detail`` as the text; ``code`` (or the OAuth
    ``error``, RFC 6749 §5.2) and ``contextId`` appended as ``(code X, contextId Y)``.
    """
    try:
        payload = response.json()
    except ValueError:
        return ErrorDetail(response.text[:200].strip() or "(empty body)")
    if not isinstance(payload, dict):
        return ErrorDetail(f"(a JSON {type(payload).__name__})")
    code = _field(payload, "code") or _field(payload, "error")
    context_id = _field(payload, "contextId")
    text = next((_field(payload, k, 300) for k in ("message", "error_description", "errorMsg", "detail")
                 if _field(payload, k)), None)
    if text is None:  # an unknown shape: name its fields, not their values (they may echo credentials)
        text = "" if code else f"(fields: {', '.join(sorted(map(str, payload))[:10]) or 'none'})"
    labels = [f"code {code}"] if code else []
    labels += [f"contextId {context_id}"] if context_id else []
    if labels:
        text = f"{text} ({', '.join(labels)})" if text else ", ".join(labels)
    return ErrorDetail(text, code, context_id)
