"""HTTP Message Signatures as Genesys AudioHook uses them (sans-IO, no clock of its own).

AudioHook (developer.genesys.cloud/devapps/audiohook, and Genesys' reference
implementation ``purecloudlabs/audiohook-reference-implementation``) signs the
WebSocket upgrade request with HTTP Message Signatures (the IETF draft that became
RFC 9421), ``hmac-sha256`` keyed by the base64-decoded *client secret* of the API key
named by ``keyid``. The signature must cover ``@request-target``, ``@authority``,
``audiohook-organization-id``, ``audiohook-session-id``, ``audiohook-correlation-id``
and ``x-api-key``; it carries ``keyid``, ``nonce`` (at least 22 characters), ``alg``,
``created`` and ``expires`` (Unix seconds). The signature base is one line per
covered component, ``"name": value``, then ``"@signature-params": <the inner list as
sent>``, joined by ``\\n`` (RFC 9421 §2.5).

:func:`verify` raises :class:`SignatureError` naming what is wrong (never the secret);
:func:`sign` builds the two header values (the emulator's side). Structured fields
(RFC 8941) are parsed and serialised by ``http_sfv``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from typing import Mapping

import http_sfv

#: Components an AudioHook signature must cover (Genesys' reference authenticator).
REQUIRED_COMPONENTS = ("@request-target", "@authority", "audiohook-organization-id", "audiohook-session-id",
                       "audiohook-correlation-id", "x-api-key")
#: Seconds of clock skew tolerated between Genesys and us.
MAX_CLOCK_SKEW = 3
#: Oldest signature accepted (seconds since ``created``).
MAX_SIGNATURE_AGE = 10
#: Shortest ``nonce`` accepted (characters).
MIN_NONCE_CHARS = 22
#: Longest Signature / Signature-Input header parsed (bytes).
MAX_HEADER_BYTES = 8192
ALGORITHM = "hmac-sha256"


class SignatureError(ValueError):
    """The request's signature is missing, malformed, stale or wrong (the message says which)."""


def decode_secret(secret: str) -> bytes:
    """The HMAC key from an AudioHook client secret (base64).

    :raises ValueError: not base64.
    """
    try:
        return base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the AudioHook client secret is not base64") from None


def _canonical(value: str) -> str:
    return " ".join(part.strip() for part in value.strip().splitlines())


def _base(components: list[str], headers: Mapping[str, str], request_target: str, authority: str,
          params_text: str) -> bytes:
    lines = []
    for name in components:
        if name == "@request-target":
            value = request_target
        elif name == "@authority":
            value = authority
        elif name.startswith("@"):
            raise SignatureError(f"derived component {name!r} is not supported")
        else:
            if name not in headers:
                raise SignatureError(f"covered header {name!r} is not in the request")
            value = _canonical(headers[name])
        lines.append(f'"{name}": {value}')
    lines.append(f'"@signature-params": {params_text}')
    return "\n".join(lines).encode()


def verify(headers: Mapping[str, str], *, request_target: str, api_key: str, key: bytes, now: float) -> None:
    """Check the AudioHook signature of an upgrade request.

    :param headers: request headers, names lower-case (values as received).
    :param request_target: the request's path and query, as sent on the request line.
    :param api_key: the API key expected in ``keyid`` (and ``X-API-KEY``).
    :param key: the HMAC key (:func:`decode_secret` of the client secret).
    :param now: current Unix time (s).
    :raises SignatureError: unsigned, malformed, not covering :data:`REQUIRED_COMPONENTS`,
        a short nonce, another ``keyid``, created in the future, expired or too old, or a
        signature that does not match.
    """
    raw_input, raw_sig = headers.get("signature-input"), headers.get("signature")
    if raw_input is None and raw_sig is None:
        raise SignatureError("the request is not signed (no Signature and Signature-Input headers)")
    if raw_input is None or raw_sig is None:
        raise SignatureError("the request has only one of the Signature and Signature-Input headers")
    if len(raw_input) > MAX_HEADER_BYTES or len(raw_sig) > MAX_HEADER_BYTES:
        raise SignatureError(f"a signature header exceeds {MAX_HEADER_BYTES} bytes")
    inputs, sigs = http_sfv.Dictionary(), http_sfv.Dictionary()
    try:
        inputs.parse(raw_input.encode())
        sigs.parse(raw_sig.encode())
    except ValueError as exc:
        raise SignatureError(f"a signature header is not a structured-field dictionary: {exc}") from None
    if not len(inputs):
        raise SignatureError("Signature-Input is empty")
    label = next(iter(inputs))
    inner = inputs[label]
    sig_item = sigs.get(label) if label in sigs else None
    if not isinstance(inner, http_sfv.InnerList):
        raise SignatureError(f"Signature-Input {label!r} is not an inner list")
    if sig_item is None or not isinstance(sig_item.value, bytes):
        raise SignatureError(f"Signature has no byte sequence labelled {label!r}")
    components = []
    for item in inner:
        if not isinstance(item.value, str) or len(item.params):
            raise SignatureError("Signature-Input lists a component that is not a plain string")
        components.append(item.value)
    missing = [c for c in REQUIRED_COMPONENTS if c not in components]
    if missing:
        raise SignatureError(f"the signature does not cover {', '.join(missing)}")
    params = dict(inner.params)
    alg = params.get("alg", ALGORITHM)
    if alg != ALGORITHM:
        raise SignatureError(f"signature algorithm {alg!r} is not {ALGORITHM}")
    nonce = params.get("nonce")
    if not isinstance(nonce, str) or len(nonce) < MIN_NONCE_CHARS:
        raise SignatureError(f"the signature's nonce is missing or shorter than {MIN_NONCE_CHARS} characters")
    if params.get("keyid") != api_key:
        raise SignatureError("the signature's keyid is not the X-API-KEY")
    created, expires = params.get("created"), params.get("expires")
    if not isinstance(created, int):
        raise SignatureError("the signature has no integer 'created' parameter")
    if created > now + MAX_CLOCK_SKEW:
        raise SignatureError("the signature was created in the future")
    if created + MAX_SIGNATURE_AGE < now - MAX_CLOCK_SKEW:
        raise SignatureError(f"the signature is older than {MAX_SIGNATURE_AGE} s")
    if isinstance(expires, int) and expires < now - MAX_CLOCK_SKEW:
        raise SignatureError("the signature has expired")
    params_text = str(inner)
    base = _base(components, headers, request_target, _canonical(headers.get("host", "")), params_text)
    expected = hmac.new(key, base, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, sig_item.value):
        raise SignatureError("the signature does not match (wrong client secret, or the request was altered)")


def sign(headers: Mapping[str, str], *, request_target: str, authority: str, api_key: str, key: bytes,
         created: int, expires_in: int = 30, nonce: str | None = None, label: str = "sig1") -> dict[str, str]:
    """``{"signature-input": …, "signature": …}`` for a request with ``headers`` (lower-case
    names; must hold the covered AudioHook headers), as Genesys signs it."""
    inner = http_sfv.InnerList([http_sfv.Item(c) for c in REQUIRED_COMPONENTS])
    inner.params["keyid"] = api_key
    inner.params["nonce"] = nonce or secrets.token_urlsafe(18)
    inner.params["alg"] = ALGORITHM
    inner.params["created"] = created
    inner.params["expires"] = created + expires_in
    params_text = str(inner)
    base = _base(list(REQUIRED_COMPONENTS), headers, request_target, authority, params_text)
    signature = hmac.new(key, base, hashlib.sha256).digest()
    return {"signature-input": f"{label}={params_text}",
            "signature": f"{label}=:{base64.b64encode(signature).decode()}:"}
