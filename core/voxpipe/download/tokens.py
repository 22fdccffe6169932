"""An OAuth 2.0 bearer-token cache shared by every stream of a source.

The token is refreshed ``refresh_margin`` seconds (30 s by default, as the CXone seed
requires) before it expires, by one task at a time however many streams ask; the
others wait for that refresh instead of starting their own. A 401 calls
:meth:`TokenCache.invalidate` with the token that was refused, so a stale token is
refreshed once, not once per stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Awaitable, Callable, Mapping

import trio


@dataclass(frozen=True)
class Token:
    """A bearer token and its lifetime; ``repr`` hides the value."""

    value: str = field(repr=False)
    expires_in: float  # seconds from issue

    def __repr__(self) -> str:
        return f"Token(<hidden>, expires_in={self.expires_in})"


class TokenCache:
    """Caches one token; ``fetch`` obtains a new one (it raises on failure).

    :param fetch: coroutine function returning a :class:`Token`.
    :param refresh_margin: seconds before expiry at which the token counts as stale.
    """

    def __init__(self, fetch: Callable[[], Awaitable[Token]], *, refresh_margin: float = 30.0):
        self._fetch = fetch
        self._margin = refresh_margin
        self._lock = trio.Lock()
        self._value: str | None = None
        self._stale_at = 0.0
        self.refreshes = 0

    def _valid(self) -> bool:
        return self._value is not None and trio.current_time() < self._stale_at

    async def get(self) -> str:
        """A valid token, refreshing it first if needed."""
        if self._valid():
            return self._value  # type: ignore[return-value]
        async with self._lock:
            if not self._valid():
                token = await self._fetch()
                self.refreshes += 1
                self._value = token.value
                # a token living shorter than the margin is used for half its life
                margin = self._margin if token.expires_in > 2 * self._margin else token.expires_in / 2
                self._stale_at = trio.current_time() + token.expires_in - margin
            return self._value  # type: ignore[return-value]

    def invalidate(self, refused: str) -> None:
        """Mark ``refused`` stale (after a 401), unless a newer token already replaced it."""
        if self._value == refused:
            self._stale_at = 0.0


class BearerTokens(TokenCache):
    """A :class:`TokenCache` that also builds and un-builds ``Authorization`` headers.

    :meth:`headers` is what request helpers take as ``auth``; :meth:`refused` is their
    ``on_401``: it invalidates exactly the token that was refused (RFC 6750 §3.1).
    """

    async def headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {await self.get()}"}

    def refused(self, sent: Mapping[str, str]) -> None:
        value = sent.get("Authorization", "")
        if value.startswith("Bearer "):
            self.invalidate(value[len("Bearer "):])
