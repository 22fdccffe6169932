"""Which host a CXone tenant's API lives on, without I/O.

CXone tells it at login (developer.niceincontact.com, "Getting started"; public
integration code): the access-key login's ``id_token`` is a JWT whose payload carries
the tenant's ``area`` (``na1``, ``eu1``, ``au1``…) and ``tenantId``; the API host is then
``https://api-{area}.{domain}`` (``https://api-na1.niceincontact.com``), and
``GET https://cxone.niceincontact.com/.well-known/cxone-configuration?tenantId=…`` answers
with the same (``area``, ``domain``, ``apiEndpoint``). The token endpoint itself is named
by ``/.well-known/openid-configuration`` (``token_endpoint``).

Only the payload of the id token is read, to learn a host name; nothing is authorised by
it, so its signature is not checked here (the token comes straight from the login
endpoint over TLS).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import urlsplit

#: CXone's login host (access-key login and the .well-known documents).
DEFAULT_AUTH_BASE = "https://cxone.niceincontact.com"
#: Token endpoint of the access-key login.
DEFAULT_TOKEN_URL = DEFAULT_AUTH_BASE + "/auth/token"
#: Domain of the API hosts when the configuration names none.
DEFAULT_DOMAIN = "niceincontact.com"
#: Path of the tenant configuration document.
WELL_KNOWN_PATH = "/.well-known/cxone-configuration"
#: Largest id token decoded (characters).
MAX_ID_TOKEN = 16 * 1024

_AREA_RE = re.compile(r"^[a-z]{2,4}\d{1,3}$")
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class HostDiscoveryError(ValueError):
    """No API host can be derived; the message says from what."""


def id_token_claims(id_token: str) -> dict[str, Any]:
    """The payload of a JWT (RFC 7519 §3: base64url JSON between the first two dots).

    :raises HostDiscoveryError: not three dot-separated parts, or a payload that is not a JSON object.
    """
    if not isinstance(id_token, str) or len(id_token) > MAX_ID_TOKEN or id_token.count(".") != 2:
        raise HostDiscoveryError("id_token is not a JWT (three dot-separated parts)")
    payload = id_token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise HostDiscoveryError("id_token payload is not base64url JSON") from None
    if not isinstance(claims, dict):
        raise HostDiscoveryError("id_token payload is not a JSON object")
    return claims


def api_host_for_area(area: str, domain: str = DEFAULT_DOMAIN) -> str:
    """``https://api-{area}.{domain}``, the pattern of CXone's regional API hosts.

    :raises HostDiscoveryError: an area or domain that does not look like one (``na1``, ``niceincontact.com``).
    """
    area, domain = str(area).strip().lower(), str(domain).strip().lower().strip(".")
    if not _AREA_RE.match(area):
        raise HostDiscoveryError(f"area {area!r} is not a CXone area such as na1 or eu1")
    if not _DOMAIN_RE.match(domain):
        raise HostDiscoveryError(f"domain {domain!r} is not a DNS domain")
    return f"https://api-{area}.{domain}"


def api_base_from_configuration(doc: Any) -> str:
    """The API base URL from a ``.well-known/cxone-configuration`` answer: ``apiEndpoint``
    (``api_endpoint``) when given, else :func:`api_host_for_area` of ``area`` and ``domain``.

    :raises HostDiscoveryError: neither.
    """
    if not isinstance(doc, dict):
        raise HostDiscoveryError("cxone-configuration answer is not a JSON object")
    for key in ("apiEndpoint", "api_endpoint", "apiBaseUrl"):
        value = doc.get(key)
        if isinstance(value, str) and urlsplit(value).scheme in ("https", "http") and urlsplit(value).netloc:
            return value.rstrip("/")
    if doc.get("area"):
        return api_host_for_area(doc["area"], doc.get("domain") or DEFAULT_DOMAIN)
    raise HostDiscoveryError("cxone-configuration answer names neither apiEndpoint nor area")


def tenant_of(claims: dict[str, Any]) -> str | None:
    """The tenant id claim (``tenantId``, ``tenant_id`` or ``tenant``), if any."""
    for key in ("tenantId", "tenant_id", "tenant"):
        value = claims.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def auth_base_of(token_url: str) -> str:
    """``scheme://host[:port]`` of the token endpoint: where the .well-known documents live."""
    parts = urlsplit(token_url)
    return f"{parts.scheme}://{parts.netloc}"
