"""OAuth token endpoint and bearer-token checks of the emulator (sans-IO).

Two grants issue tokens, as the CXone reference notes describe:

* ``client_credentials`` (the seed documents): form ``client_id``,
  ``client_secret``, ``scope`` → ``access_token``, ``expires_in``,
  ``token_type``, ``scope``.
* ``password`` (CXone's documented access-key login): ``username`` /
  ``password`` = access-key id / secret plus the app's ``client_id`` /
  ``client_secret`` → additionally ``refresh_token`` and ``id_token``, an
  unsigned JWT-shaped token (``alg: none``) whose payload has an ``area``
  claim (the real API host is ``https://api-{area}.niceincontact.com``).

``refresh_token`` exchanges a refresh token for a new access token. Client
credentials may also come in HTTP Basic (RFC 6749 §2.3.1). Errors follow
RFC 6749 §5.2 (``{"error", "error_description"}``); bearer failures follow
RFC 6750 §3 (401 with ``WWW-Authenticate``; 403 ``insufficient_scope``).
Tokens are opaque random strings; nothing here logs or echoes them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final
from collections.abc import Mapping

__all__ = [
    "SCOPES",
    "MAX_LIVE_TOKENS",
    "Credentials",
    "TokenReply",
    "AuthFailure",
    "TokenService",
    "decode_id_token",
]

SCOPES: Final = ("recording:download", "recording:read")
"""Scopes the emulator grants; a request for anything else is ``invalid_scope``."""

MAX_LIVE_TOKENS: Final = 10_000
"""Most access (and, separately, refresh) tokens remembered; oldest are evicted first."""

REFRESH_TOKEN_TTL: Final = 24 * 3600.0
"""Seconds a refresh token stays valid."""


@dataclass(frozen=True)
class Credentials:
    """What the emulator accepts at its token endpoint."""

    client_id: str
    client_secret: str
    access_key_id: str
    access_key_secret: str
    area: str = "na1"
    tenant_id: str = "emulator-tenant"

    def __repr__(self) -> str:  # secrets never in reprs
        return f"Credentials(client_id={self.client_id!r}, access_key_id={self.access_key_id!r}, area={self.area!r})"


@dataclass(frozen=True)
class TokenReply:
    """An HTTP answer from the token endpoint: status and JSON body."""

    status: int
    body: dict
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class AuthFailure:
    """Why a bearer token was refused: status 401 or 403, RFC 6750 error code, description."""

    status: int
    error: str
    description: str

    @property
    def www_authenticate(self) -> str:
        """``WWW-Authenticate`` header value (RFC 6750 §3)."""
        return f'Bearer realm="cxone-emulator", error="{self.error}", error_description="{self.description}"'


@dataclass(frozen=True)
class _Grant:
    expires_at: float
    scopes: frozenset[str]
    client_id: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode_id_token(id_token: str) -> dict:
    """Payload of an id token issued by the emulator (no signature: ``alg`` is ``none``)."""
    parts = id_token.split(".")
    if len(parts) != 3:
        raise ValueError("id token is not three dot-separated parts")
    pad = "=" * (-len(parts[1]) % 4)
    return json.loads(base64.urlsafe_b64decode(parts[1] + pad))


def _error(status: int, error: str, description: str) -> TokenReply:
    headers: tuple[tuple[str, str], ...] = ()
    if status == 401:
        headers = (("www-authenticate", 'Basic realm="cxone-emulator"'),)
    return TokenReply(status, {"error": error, "error_description": description}, headers)


class TokenService:
    """Issues and checks tokens. Thread-safe; ``now`` is Unix seconds from the caller's clock."""

    def __init__(self, credentials: Credentials, *, token_ttl: float) -> None:
        if token_ttl <= 0:
            raise ValueError(f"token ttl must be > 0 seconds, got {token_ttl}")
        self.credentials = credentials
        self.token_ttl = token_ttl
        self._tokens: OrderedDict[str, _Grant] = OrderedDict()
        self._refresh: OrderedDict[str, _Grant] = OrderedDict()
        self._lock = threading.Lock()
        self.issued = 0

    # -- token endpoint ----------------------------------------------------
    def token_request(self, form: Mapping[str, str], basic: tuple[str, str] | None, now: float) -> TokenReply:
        """Answer one token request (form fields already decoded)."""
        client_id = form.get("client_id")
        client_secret = form.get("client_secret")
        if basic is not None:
            client_id, client_secret = basic
        grant_type = form.get("grant_type")
        if not grant_type:
            return _error(400, "invalid_request", "grant_type is missing")
        if grant_type not in ("client_credentials", "password", "refresh_token"):
            return _error(400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
        if not client_id or not client_secret:
            return _error(400, "invalid_request", "client_id and client_secret are required")
        if not (
            hmac.compare_digest(client_id.encode(), self.credentials.client_id.encode())
            and hmac.compare_digest(client_secret.encode(), self.credentials.client_secret.encode())
        ):
            return _error(401, "invalid_client", "unknown client or wrong client secret")
        scopes = self._parse_scope(form.get("scope"))
        if isinstance(scopes, TokenReply):
            return scopes
        if grant_type == "client_credentials":
            return TokenReply(200, self._issue(scopes, client_id, now))
        if grant_type == "password":
            username, password = form.get("username"), form.get("password")
            if not username or not password:
                return _error(400, "invalid_request", "password grant needs username (access-key id) and password (access-key secret)")
            if not (
                hmac.compare_digest(username.encode(), self.credentials.access_key_id.encode())
                and hmac.compare_digest(password.encode(), self.credentials.access_key_secret.encode())
            ):
                return _error(400, "invalid_grant", "unknown access key or wrong access-key secret")
            body = self._issue(scopes, client_id, now)
            body["refresh_token"] = self._new_refresh(scopes, client_id, now)
            body["id_token"] = self._id_token(client_id, now)
            return TokenReply(200, body)
        # refresh_token
        presented = form.get("refresh_token")
        if not presented:
            return _error(400, "invalid_request", "refresh_token is missing")
        with self._lock:
            grant = self._refresh.get(presented)
        if grant is None or grant.expires_at <= now or grant.client_id != client_id:
            return _error(400, "invalid_grant", "refresh token is unknown or expired")
        body = self._issue(grant.scopes if form.get("scope") is None else scopes, client_id, now)
        body["refresh_token"] = presented
        body["id_token"] = self._id_token(client_id, now)
        return TokenReply(200, body)

    def _parse_scope(self, raw: str | None) -> frozenset[str] | TokenReply:
        if raw is None or not raw.strip():
            return frozenset(SCOPES)
        asked = frozenset(raw.split())
        unknown = sorted(asked - set(SCOPES))
        if unknown:
            return _error(400, "invalid_scope", f"unknown scope(s) {' '.join(unknown)}; available: {' '.join(SCOPES)}")
        return asked

    def _issue(self, scopes: frozenset[str], client_id: str, now: float) -> dict:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._remember(self._tokens, token, _Grant(now + self.token_ttl, scopes, client_id), now)
            self.issued += 1
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": int(self.token_ttl) if float(self.token_ttl).is_integer() else self.token_ttl,
            "scope": " ".join(s for s in SCOPES if s in scopes),
        }

    def _new_refresh(self, scopes: frozenset[str], client_id: str, now: float) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._remember(self._refresh, token, _Grant(now + REFRESH_TOKEN_TTL, scopes, client_id), now)
        return token

    @staticmethod
    def _remember(table: OrderedDict[str, _Grant], token: str, grant: _Grant, now: float) -> None:
        if len(table) >= MAX_LIVE_TOKENS:
            for key in [k for k, g in table.items() if g.expires_at <= now]:
                del table[key]
            while len(table) >= MAX_LIVE_TOKENS:
                table.popitem(last=False)
        table[token] = grant

    def _id_token(self, client_id: str, now: float) -> str:
        header = {"alg": "none", "typ": "JWT"}
        subject = hashlib.sha256(self.credentials.access_key_id.encode()).hexdigest()[:16]
        payload = {
            "iss": "https://cxone-emulator.invalid",
            "sub": f"user:{subject}",
            "aud": client_id,
            "iat": int(now),
            "exp": int(now + self.token_ttl),
            "area": self.credentials.area,
            "tenantId": self.credentials.tenant_id,
        }
        return f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(payload).encode())}."

    # -- resource endpoints ------------------------------------------------
    def authenticate(self, authorization: str | None, now: float, required_scope: str | None) -> AuthFailure | None:
        """Check an ``Authorization`` header; None when it carries a live token with ``required_scope``."""
        if not authorization:
            return AuthFailure(401, "invalid_request", "missing Authorization: Bearer token")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return AuthFailure(401, "invalid_request", "Authorization must be a Bearer token")
        with self._lock:
            grant = self._tokens.get(token.strip())
        if grant is None:
            return AuthFailure(401, "invalid_token", "unknown access token")
        if grant.expires_at <= now:
            return AuthFailure(401, "invalid_token", "access token expired")
        if required_scope is not None and required_scope not in grant.scopes:
            return AuthFailure(403, "insufficient_scope", f"token lacks scope {required_scope}")
        return None
