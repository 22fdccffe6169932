"""Genesys Cloud regions: host suffixes and the API/login base URLs derived from them.

Source: the official SDKs' ``PureCloudRegionHosts`` table (PureCloudPlatformClientV2;
``/work/shared/reference/genesys.md``). An org lives in one region; its API is at
``https://api.{host}`` and its OAuth server at ``https://login.{host}``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: AWS region name → Genesys Cloud host suffix (PureCloudRegionHosts).
REGION_HOSTS: dict[str, str] = {
    "us_east_1": "mypurecloud.com",
    "us_east_2": "use2.us-gov-pure.cloud",
    "us_west_2": "usw2.pure.cloud",
    "ca_central_1": "cac1.pure.cloud",
    "eu_west_1": "mypurecloud.ie",
    "eu_west_2": "euw2.pure.cloud",
    "eu_central_1": "mypurecloud.de",
    "eu_central_2": "euc2.pure.cloud",
    "ap_south_1": "aps1.pure.cloud",
    "ap_northeast_1": "mypurecloud.jp",
    "ap_northeast_2": "apne2.pure.cloud",
    "ap_northeast_3": "apne3.pure.cloud",
    "ap_southeast_2": "mypurecloud.com.au",
    "sa_east_1": "sae1.pure.cloud",
    "me_central_1": "mec1.pure.cloud",
    "mx_central_1": "mxc1.pure.cloud",
    "ap_southeast_1": "apse1.pure.cloud",
    # the EU Sovereign Cloud has its own domain suffix (eusc-pure.cloud, not pure.cloud)
    "eusc_de_east_1": "edee1.eusc-pure.cloud",
}


@dataclass(frozen=True)
class Endpoints:
    """Where an org's API and OAuth server are: base URLs without a trailing slash."""

    api_base: str
    login_base: str

    @property
    def token_url(self) -> str:
        """The client-credentials token endpoint, ``{login_base}/oauth/token``."""
        return f"{self.login_base}/oauth/token"


def region_host(region: str) -> str:
    """The host suffix for ``region``: a host (``mypurecloud.ie``) or an AWS name (``eu-west-1``).

    :raises ValueError: an unknown region, naming the known ones.
    """
    value = region.strip().lower()
    for prefix in ("https://", "api.", "login."):
        value = value.removeprefix(prefix)
    value = value.rstrip("/")
    if value in REGION_HOSTS.values():
        return value
    key = value.replace("-", "_")
    if key in REGION_HOSTS:
        return REGION_HOSTS[key]
    raise ValueError(f"unknown Genesys Cloud region {region!r}; known hosts: "
                     f"{', '.join(sorted(set(REGION_HOSTS.values())))} (or their AWS names, e.g. eu-west-1)")


def endpoints(region: str | None = None, *, api_base: str | None = None, login_base: str | None = None) -> Endpoints:
    """The API and login bases: explicit ones win (emulator, proxies), else derived from ``region``.

    :raises ValueError: neither a region nor both explicit bases, or an unknown region.
    """
    host = region_host(region) if region else None
    if host is None and not (api_base and login_base):
        raise ValueError("give `region` (e.g. mypurecloud.ie), or both `api_base` and `login_base`")
    api = (api_base or f"https://api.{host}").rstrip("/")
    login = (login_base or f"https://login.{host}").rstrip("/")
    return Endpoints(api, login)
