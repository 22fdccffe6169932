"""Standard Webhooks signatures, sans-IO: secrets, signing and verification.

Source: the Standard Webhooks specification (github.com/standard-webhooks/standard-webhooks,
``spec/standard-webhooks.md``):

- a secret is written ``whsec_<base64 of the key bytes>``; 24 to 64 bytes are recommended
  and enforced here;
- the signed content is ``{webhook-id}.{webhook-timestamp}.{raw body}`` (bytes);
- the signature is ``v1,<base64 of HMAC-SHA256(key, signed content)>``; several are
  separated by spaces in ``webhook-signature`` (one per secret while rotating);
- receivers compare in constant time and reject timestamps outside a tolerance
  (:data:`DEFAULT_TOLERANCE`, 5 minutes).

This is our own implementation; the tests cross-check it against the reference
``standardwebhooks`` package. Secret bytes never appear in a repr, a message or a log.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from typing import Iterable, Mapping

SECRET_PREFIX = "whsec_"
#: Key length bounds in bytes (the specification's recommendation).
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
#: Seconds a receiver accepts between ``webhook-timestamp`` and its clock, either way.
DEFAULT_TOLERANCE = 300
#: Signatures accepted in one ``webhook-signature`` header by :func:`verify` (bounds work per request).
MAX_SIGNATURES = 16
SIGNATURE_VERSION = "v1"

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"
SIGNATURE_HEADERS = (HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE)

SECRET_FORMAT = (f"expected '{SECRET_PREFIX}' followed by the base64 of {MIN_SECRET_BYTES} to "
                 f"{MAX_SECRET_BYTES} random bytes (generate one with `voxpipe webhooks --new-secret`)")


class SignatureError(ValueError):
    """A delivery failed verification: missing header, bad timestamp, or no matching signature."""


class Secret:
    """A signing key decoded from its ``whsec_`` form. Its repr and str never show the key."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes):
        if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
            raise ValueError(f"webhook secret is {len(key)} bytes; {SECRET_FORMAT}")
        self._key = bytes(key)

    @property
    def key(self) -> bytes:
        return self._key

    def __repr__(self) -> str:
        return "Secret('whsec_**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash(hashlib.sha256(self._key).digest())


def parse_secret(text: str) -> Secret:
    """Decode ``whsec_<base64>`` into a :class:`Secret`.

    :raises ValueError: wrong prefix, invalid base64 or a key outside 24–64 bytes. The
        message describes the expected form and never contains the value.
    """
    if not isinstance(text, str) or not text.startswith(SECRET_PREFIX):
        raise ValueError(f"not a Standard Webhooks secret: {SECRET_FORMAT}")
    encoded = text[len(SECRET_PREFIX):].strip()
    encoded += "=" * (-len(encoded) % 4)  # unpadded base64 is common; the reference library accepts it too
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"webhook secret is not valid base64: {SECRET_FORMAT}") from None
    return Secret(key)


def generate_secret(nbytes: int = 32) -> str:
    """A new random secret in ``whsec_`` form (``nbytes`` key bytes, 24–64)."""
    key = os.urandom(nbytes)
    Secret(key)  # checks the length
    return SECRET_PREFIX + base64.b64encode(key).decode("ascii")


def signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    """The bytes the HMAC covers: ``{id}.{timestamp}.{body}``."""
    return f"{msg_id}.{int(timestamp)}.".encode() + body


def signature(secret: Secret, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64 HMAC-SHA256>`` signature."""
    mac = hmac.new(secret.key, signed_content(msg_id, timestamp, body), hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(mac).decode('ascii')}"


def sign(msg_id: str, timestamp: int, body: bytes, secrets: Iterable[Secret]) -> dict[str, str]:
    """The three Standard Webhooks headers for one delivery attempt.

    :param msg_id: the event's ``webhook-id`` (the same on every attempt).
    :param timestamp: Unix seconds of this attempt.
    :param body: the exact request body bytes.
    :param secrets: one or more keys; each adds a signature (rotation).
    :raises ValueError: no secret given, or an empty id or one containing whitespace.
    """
    keys = list(secrets)
    if not keys:
        raise ValueError("at least one webhook secret is needed to sign")
    if not msg_id or any(c.isspace() for c in msg_id):
        raise ValueError(f"invalid webhook-id {msg_id!r}: must be non-empty without whitespace")
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(int(timestamp)),
        HEADER_SIGNATURE: " ".join(signature(k, msg_id, timestamp, body) for k in keys),
    }


def verify(body: bytes, headers: Mapping[str, str], secrets: Iterable[Secret], *, now: float | None = None,
           tolerance: float = DEFAULT_TOLERANCE) -> str:
    """Check a received delivery; returns its ``webhook-id``.

    :param headers: the request headers (any case).
    :param secrets: the keys the receiver accepts (any one matching signature suffices).
    :param now: the receiver's Unix time (default: the clock).
    :param tolerance: seconds of accepted clock difference.
    :raises SignatureError: a header is missing, the timestamp is malformed or outside
        the tolerance, or no ``v1`` signature matches any secret (constant-time compare).
    """
    lower = {k.lower(): v for k, v in headers.items()}
    missing = [h for h in SIGNATURE_HEADERS if not lower.get(h)]
    if missing:
        raise SignatureError(f"missing header(s): {', '.join(missing)}")
    msg_id, raw_ts, raw_sigs = lower[HEADER_ID], lower[HEADER_TIMESTAMP], lower[HEADER_SIGNATURE]
    if not raw_ts.isdigit():
        raise SignatureError(f"{HEADER_TIMESTAMP} is not integer Unix seconds")
    timestamp = int(raw_ts)
    now = time.time() if now is None else now
    if timestamp < now - tolerance:
        raise SignatureError(f"{HEADER_TIMESTAMP} is more than {tolerance:.0f} s in the past")
    if timestamp > now + tolerance:
        raise SignatureError(f"{HEADER_TIMESTAMP} is more than {tolerance:.0f} s in the future")
    offered: list[bytes] = []
    for item in raw_sigs.split()[:MAX_SIGNATURES]:
        version, _, encoded = item.partition(",")
        if version != SIGNATURE_VERSION:
            continue  # other schemes (v1a: ed25519) are not ours to check
        try:
            offered.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    content = f"{msg_id}.{timestamp}.".encode() + body
    matched = False
    for key in secrets:
        expected = hmac.new(key.key, content, hashlib.sha256).digest()
        for candidate in offered:
            matched |= hmac.compare_digest(expected, candidate)  # no early exit: timing does not reveal which
    if not matched:
        raise SignatureError("no matching signature")
    return msg_id
