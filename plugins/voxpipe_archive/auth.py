"""Bearer-token authentication for the retrieval API (RFC 6750 §2.1, RFC 9110 §11).

Tokens come from a file (one per line, ``#`` comments and blank lines ignored) and/or
the ``VOXPIPE_SERVE_TOKENS`` environment variable (comma or whitespace separated). Only
their SHA-256 digests are kept, and a presented token is compared with every digest by
:func:`hmac.compare_digest`, so neither timing nor length reveals a token. Anonymous
access exists only when explicitly enabled. Tokens never appear in logs, errors or reprs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from pathlib import Path
from typing import Mapping

#: Environment variable holding tokens.
TOKENS_ENV = "VOXPIPE_SERVE_TOKENS"
#: Shortest token accepted, in characters (a guessable token is refused at startup).
MIN_TOKEN_LENGTH = 16
#: Most tokens accepted (each request is compared with all of them).
MAX_TOKENS = 256
#: Longest Authorization header value looked at, in bytes.
MAX_HEADER_BYTES = 4096
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")  # RFC 6750 b64token


class TokenConfigError(ValueError):
    """The token configuration is unusable; the message names the file and line, never the token."""


class BearerAuth:
    """Checks ``Authorization: Bearer <token>`` headers against a set of tokens.

    :param tokens: accepted tokens.
    :param allow_anonymous: let requests without valid credentials through.
    :raises TokenConfigError: no tokens and anonymous access not enabled.
    """

    def __init__(self, tokens: list[str], *, allow_anonymous: bool = False):
        if not tokens and not allow_anonymous:
            raise TokenConfigError(f"no tokens configured: give --token-file or set {TOKENS_ENV}, "
                                   "or pass --allow-anonymous to serve without authentication")
        self._digests = tuple(hashlib.sha256(t.encode()).digest() for t in tokens)
        self.allow_anonymous = allow_anonymous

    def __repr__(self) -> str:
        return f"BearerAuth(<{len(self._digests)} tokens>, allow_anonymous={self.allow_anonymous})"

    @property
    def token_count(self) -> int:
        return len(self._digests)

    def check(self, authorization: bytes | None) -> str | None:
        """``None`` when the request may proceed, else the ``error`` code for the challenge
        (``invalid_request`` for a malformed header, ``invalid_token`` for an unknown token,
        ``""`` when credentials are missing, as RFC 6750 §3.1 asks). With anonymous access
        enabled only a request *without* an Authorization header passes unauthenticated;
        wrong credentials are still refused."""
        if authorization is None:
            return None if self.allow_anonymous else ""
        if len(authorization) > MAX_HEADER_BYTES:
            return "invalid_request"
        scheme, _, credentials = authorization.decode("latin-1").strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return "invalid_request"
        digest = hashlib.sha256(credentials.strip().encode("latin-1")).digest()
        ok = False
        for known in self._digests:  # no early exit: time does not depend on which token matched
            ok |= hmac.compare_digest(digest, known)
        return None if ok else "invalid_token"


def _check_token(token: str, where: str) -> str:
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenConfigError(f"{where}: token is shorter than {MIN_TOKEN_LENGTH} characters")
    if not _TOKEN_CHARS.match(token):
        raise TokenConfigError(f"{where}: token contains characters not allowed in a bearer token (RFC 6750 b64token)")
    return token


def load_tokens(token_file: Path | None = None, environ: Mapping[str, str] | None = None) -> list[str]:
    """Tokens from ``token_file`` and the ``VOXPIPE_SERVE_TOKENS`` variable of ``environ``.

    :raises TokenConfigError: unreadable file, a short or malformed token (named by file
        and line), or more than :data:`MAX_TOKENS`.
    """
    environ = os.environ if environ is None else environ
    tokens: list[str] = []
    if token_file is not None:
        try:
            text = token_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenConfigError(f"{token_file}: cannot read the token file ({exc.__class__.__name__})") from None
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if line and not line.startswith("#"):
                tokens.append(_check_token(line, f"{token_file}:{lineno}"))
    for i, token in enumerate(re.split(r"[\s,]+", environ.get(TOKENS_ENV, "").strip()), 1):
        if token:
            tokens.append(_check_token(token, f"{TOKENS_ENV} (token {i})"))
    if len(tokens) > MAX_TOKENS:
        raise TokenConfigError(f"{len(tokens)} tokens configured; at most {MAX_TOKENS} are accepted")
    return tokens
