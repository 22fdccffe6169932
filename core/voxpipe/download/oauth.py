"""OAuth 2.0 client-credentials grant (RFC 6749 §4.4), for any component that needs a token.

``POST token_url`` with ``grant_type=client_credentials`` (and ``scope`` if given); the
client authenticates with HTTP Basic (``client_auth="basic"``, RFC 6749 §2.3.1 — the
default, what Genesys Cloud asks) or with ``client_id``/``client_secret`` in the form
(``"form"``, what some CXone tenants' gateways ask). The answer is ``{"access_token",
"expires_in"}``. Pair it with :class:`voxpipe.download.tokens.TokenCache` /
``BearerTokens`` for caching and refresh before expiry. The secret travels only in the
request (header or body), never in URLs, logs or errors.
"""

from __future__ import annotations

import base64
from typing import Literal, Mapping

import httpx

from ..errors import StreamError
from .api import APIError, request_json
from .retry import RetryPolicy
from .tokens import Token

#: Token lifetime assumed when the answer gives none (seconds).
DEFAULT_EXPIRES_IN = 3600.0
ClientAuth = Literal["basic", "form"]


async def client_credentials_token(client: httpx.AsyncClient, token_url: str, client_id: str, client_secret: str, *,
                                   scope: str | None = None, client_auth: ClientAuth = "basic",
                                   policy: RetryPolicy | None = None,
                                   headers: Mapping[str, str] | None = None) -> Token:
    """Obtain a token by the client-credentials grant.

    :raises StreamError: reason ``auth-failed`` (refused, unreachable, or no
        ``access_token`` in the answer); the message names the client id, never the secret.
    """
    form = {"grant_type": "client_credentials"}
    if scope:
        form["scope"] = scope
    sent = {"Accept": "application/json", **(headers or {})}
    if client_auth == "basic":
        raw = f"{client_id}:{client_secret}".encode("utf-8")
        sent["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
    else:
        form.update(client_id=client_id, client_secret=client_secret)
    try:
        _, body = await request_json(client, "POST", token_url, policy=policy, what="token request", data=form,
                                     headers=sent)
    except APIError as exc:
        raise StreamError(f"token request failed (client {client_id}): {exc}", reason="auth-failed") from None
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str) or not body["access_token"]:
        raise StreamError(f"token answer for client {client_id} carries no access_token", reason="auth-failed")
    try:
        expires_in = float(body.get("expires_in", DEFAULT_EXPIRES_IN))
    except (TypeError, ValueError):
        expires_in = DEFAULT_EXPIRES_IN
    return Token(body["access_token"], expires_in)
