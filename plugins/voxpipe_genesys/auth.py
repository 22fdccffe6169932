"""Genesys Cloud OAuth client-credentials grant.

``POST {login_base}/oauth/token`` with the form ``grant_type=client_credentials`` and the
client id and secret in an HTTP Basic ``Authorization`` header (RFC 6749 §2.3.1, §4.4;
RFC 7617); the answer is ``{"access_token", "token_type": "bearer", "expires_in"}`` in
seconds (Genesys developer center, "Client credentials grant"; the official SDKs'
``get_client_credentials_token``). Secrets travel in headers only, never in URLs or
messages.
"""

from __future__ import annotations

import base64
from typing import Mapping

import httpx

from voxpipe.download.api import APIError, request_json
from voxpipe.download.retry import RetryPolicy
from voxpipe.download.tokens import Token
from voxpipe.errors import StreamError

#: Token lifetime assumed when the answer gives none (seconds; Genesys' default is 86400).
DEFAULT_EXPIRES_IN = 3600.0


def basic_authorization(client_id: str, client_secret: str) -> dict[str, str]:
    """The ``Authorization: Basic base64(id:secret)`` header (RFC 7617 §2)."""
    raw = f"{client_id}:{client_secret}".encode("utf-8")
    return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}


async def fetch_token(client: httpx.AsyncClient, token_url: str, client_id: str, client_secret: str, *,
                      policy: RetryPolicy | None = None) -> Token:
    """Obtain an access token by the client-credentials grant.

    :raises APIError: reason ``auth-failed``, credentials refused (``code``: the OAuth ``error``).
    :raises StreamError: reason ``auth-failed``, no ``access_token`` in the answer. Messages
        never carry the secret.
    """
    header = basic_authorization(client_id, client_secret)

    async def auth() -> Mapping[str, str]:
        return header

    try:
        _, body = await request_json(client, "POST", token_url, auth=auth, policy=policy, what="token request",
                                     data={"grant_type": "client_credentials"},
                                     headers={"Accept": "application/json"})
    except APIError as exc:
        # keeps the OAuth `error` (RFC 6749 §5.2) as `code`, for the audit log and support
        raise APIError(f"Genesys Cloud token request failed (client {client_id}): {exc}", status=exc.status,
                       reason="auth-failed", code=exc.code, context_id=exc.context_id) from None
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str) or not body["access_token"]:
        raise StreamError("Genesys Cloud token answer carries no access_token", reason="auth-failed")
    try:
        expires_in = float(body.get("expires_in", DEFAULT_EXPIRES_IN))
    except (TypeError, ValueError):
        expires_in = DEFAULT_EXPIRES_IN
    return Token(body["access_token"], expires_in)
