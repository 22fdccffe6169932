"""Temporary, signed media URLs for the Media Playback API emulation.

``fileToPlayUrl`` in a Media Playback answer points at this server's
``/media-playback/v1/files/{id}?expires=UNIX&sig=HEX``. As with CDN signed
URLs, the URL itself is the time-limited authorisation: ``sig`` is
HMAC-SHA256 under a key private to this emulator instance over
``"{id}\\n{expires}"``. It is not a bearer secret of the client, but the
emulator still redacts ``sig`` from its logs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

__all__ = ["MediaUrlSigner", "SIGNATURE_PARAMS"]

SIGNATURE_PARAMS: Final = frozenset({"sig", "signature", "expires"})
"""Query parameters that make up a media URL's signature."""


class MediaUrlSigner:
    """Signs and checks ``(recording id, expiry)`` pairs; key is random per instance."""

    def __init__(self, ttl: float, key: bytes | None = None) -> None:
        if ttl <= 0:
            raise ValueError(f"media URL ttl must be > 0 seconds, got {ttl}")
        self.ttl = ttl
        self._key = key if key is not None else secrets.token_bytes(32)

    def _mac(self, rec_id: str, expires: int) -> str:
        return hmac.new(self._key, f"{rec_id}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def sign(self, rec_id: str, now: float) -> dict[str, str]:
        """Query parameters for a URL to ``rec_id`` valid for :attr:`ttl` seconds from ``now``."""
        expires = int(now + self.ttl)
        return {"expires": str(expires), "sig": self._mac(rec_id, expires)}

    def check(self, rec_id: str, expires: str | None, sig: str | None, now: float) -> str | None:
        """None when the signature is valid and unexpired, else the reason it is refused."""
        if not expires or not sig:
            return "media URL lacks its expires/sig parameters"
        if not expires.isascii() or not expires.isdigit():
            return "media URL expires parameter is not a Unix time"
        if not hmac.compare_digest(sig.encode(), self._mac(rec_id, int(expires)).encode()):
            return "media URL signature does not match"
        if int(expires) <= now:
            return "media URL has expired"
        return None
