"""CXone OAuth 2.0 token requests.

Two grants:

- ``client_credentials`` (the seed's recording API): form ``grant_type``, ``client_id``,
  ``client_secret``, ``scope``;
- ``password`` with an access key (CXone's documented login, developer.niceincontact.com):
  ``username`` = access-key id, ``password`` = access-key secret, plus the registered
  application's ``client_id``/``client_secret``.

Secrets travel in the form body of a POST, never in the URL.
"""

from __future__ import annotations

import httpx

from voxpipe.download.api import request_json
from voxpipe.download.retry import RetryPolicy
from voxpipe.download.tokens import Token
from voxpipe.errors import StreamError


async def fetch_token(client: httpx.AsyncClient, token_url: str, form: dict[str, str], *,
                      policy: RetryPolicy | None = None) -> Token:
    """POST ``form`` to ``token_url`` and return the access token.

    :raises StreamError: reason ``auth-failed`` when the server refuses the credentials.
    """
    try:
        _, body = await request_json(client, "POST", token_url, data=form, policy=policy, what="token request",
                                     headers={"Accept": "application/json"})
    except StreamError as exc:
        raise StreamError(f"CXone token request failed: {exc}", reason="auth-failed") from None
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise StreamError("CXone token answer carries no access_token", reason="auth-failed")
    try:
        expires_in = float(body.get("expires_in", 3600))
    except (TypeError, ValueError):
        expires_in = 3600.0
    return Token(body["access_token"], expires_in)
