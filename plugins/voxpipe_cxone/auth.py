"""CXone OAuth 2.0 token requests.

Two grants:

- ``password`` with an access key (CXone's documented login, developer.niceincontact.com):
  ``username`` = access-key id, ``password`` = access-key secret, plus the registered
  application's ``client_id``/``client_secret``, either in the form body or as HTTP Basic
  (RFC 6749 §2.3.1; both are seen in public integrations). The answer adds an ``id_token``
  whose ``area`` claim names the tenant's API host (:mod:`.hosts`);
- ``client_credentials`` (the seed's recording API): form ``grant_type``, ``client_id``,
  ``client_secret``, ``scope``.

Secrets travel in the form body or the ``Authorization`` header of a POST, never in the URL.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Mapping

import httpx

from voxpipe.download.api import request_json
from voxpipe.download.retry import RetryPolicy
from voxpipe.download.tokens import Token
from voxpipe.errors import StreamError


@dataclass(frozen=True)
class TokenRequest:
    """The form and headers of one token request (secrets hidden from ``repr``)."""

    form: Mapping[str, str] = field(repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


def token_request(*, grant: str, client_id: str, client_secret: str, client_auth: str = "form",
                  access_key_id: str | None = None, access_key_secret: str | None = None,
                  scope: str = "") -> TokenRequest:
    """Build the token request of ``grant`` (``access_key`` or ``client_credentials``) with the
    client credentials in the form (``client_auth="form"``) or as HTTP Basic (``"basic"``)."""
    if grant == "access_key":
        form = {"grant_type": "password", "username": access_key_id or "", "password": access_key_secret or ""}
    else:
        form = {"grant_type": "client_credentials", "scope": scope}
    headers = {"Accept": "application/json"}
    if client_auth == "basic":
        raw = f"{client_id}:{client_secret}".encode("utf-8")
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
    else:
        form.update(client_id=client_id, client_secret=client_secret)
    return TokenRequest(form, headers)


@dataclass(frozen=True)
class Login:
    """A token answer: the access token and, for the access-key login, the ``id_token``."""

    token: Token
    id_token: str | None = field(default=None, repr=False)


async def fetch_token(client: httpx.AsyncClient, token_url: str, request: TokenRequest | dict[str, str], *,
                      policy: RetryPolicy | None = None) -> Login:
    """POST the token request to ``token_url``.

    :raises StreamError: reason ``auth-failed`` when the server refuses the credentials.
    """
    if not isinstance(request, TokenRequest):
        request = TokenRequest(request, {"Accept": "application/json"})
    try:
        _, body = await request_json(client, "POST", token_url, data=dict(request.form), policy=policy,
                                     what="token request", headers=dict(request.headers))
    except StreamError as exc:
        raise StreamError(f"CXone token request failed: {exc}", reason="auth-failed") from None
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise StreamError("CXone token answer carries no access_token", reason="auth-failed")
    try:
        expires_in = float(body.get("expires_in", 3600))
    except (TypeError, ValueError):
        expires_in = 3600.0
    id_token = body.get("id_token") if isinstance(body.get("id_token"), str) else None
    return Login(Token(body["access_token"], expires_in), id_token)
