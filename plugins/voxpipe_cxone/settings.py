"""Settings of the ``cxone`` source (declared once; docs and validation come from here).

Modes (how recordings are found, and which API serves their media):

- ``data-extraction`` (real tenants): every recording whose call started in a time window
  (``from``/``to`` or ``since: last-run``), found through a Data Extraction job
  (:mod:`.extraction`), each segment's media through Media Playback;
- ``playback``: given ACD call ids (contact ids), media through Media Playback's contacts lookup;
- ``recording-v2``: the seed documents' ``/api/v2/recording`` endpoints, by recording id
  (``download`` is accepted as its former name);
- ``stream``: the seed's streaming endpoint ``/api/v2/recordings/{id}/stream``.

Without ``mode`` it follows from what is given: ``from``/``since`` → data-extraction,
``acd_call_ids`` → playback, ``recordings`` → recording-v2.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import SecretStr, field_validator, model_validator

from voxpipe.download.httpsource import HTTPSourceSettings
from voxpipe.download.parallel import MAX_CONNECTIONS_PER_STREAM
from voxpipe.settings import setting

from .extraction import Window, parse_bound, zone
from .hosts import DEFAULT_TOKEN_URL
from .stream_request import StreamRequestError, check_offsets

#: CXone Media Playback API's default budget (help.nicecxone.com): requests per window.
PLAYBACK_RATE_LIMIT = (150, 300.0)
MODES = ("data-extraction", "playback", "recording-v2", "stream")

_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")
_RATE_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_rate_limit(spec: str) -> tuple[int, float] | None:
    """``"150/5m"`` → ``(150, 300.0)``; ``"off"`` → ``None``. Window units: s (default), m, h.

    :raises ValueError: anything else, or a zero count/window.
    """
    if spec.strip().lower() == "off":
        return None
    m = _RATE_RE.match(spec)
    if not m:
        raise ValueError(f"rate_limit {spec!r} is not REQUESTS/WINDOW such as 150/5m, 300/60 or off")
    count, window = int(m.group(1)), float(m.group(2)) * _RATE_UNITS[m.group(3)]
    if count < 1 or window <= 0:
        raise ValueError(f"rate_limit {spec!r} needs at least 1 request per a window longer than 0 s")
    return count, window


def parse_duration(spec: str | float | int) -> float:
    """``"2h"`` → 7200.0; a number is seconds. Units: s, m, h, d.

    :raises ValueError: anything else or a negative value.
    """
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        if spec < 0:
            raise ValueError(f"duration {spec} is negative")
        return float(spec)
    m = _DURATION_RE.match(str(spec))
    if not m:
        raise ValueError(f"{spec!r} is not a duration such as 90, 30m, 2h or 1d")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


class CxoneSettings(HTTPSourceSettings):
    mode: Literal["data-extraction", "playback", "recording-v2", "stream", "download"] | None = setting(
        None, description="`data-extraction` (find recordings by date: Data Extraction + Media Playback; real "
        "tenants), `playback` (given ACD call ids, Media Playback), `recording-v2` (the seed's `/api/v2/recording` "
        "endpoints by recording id; `download` is its former name) or `stream` (the seed's streaming endpoint). "
        "Default: from what is given (`from`/`since`, `acd_call_ids`, `recordings`).", example="data-extraction")
    api_base: str | None = setting(None, description="Base URL of the CXone API (no trailing path). Optional with "
                                   "`grant: access_key`: the host then comes from the login (the id token's `area` "
                                   "claim, or `.well-known/cxone-configuration`).",
                                   example="https://api-na1.niceincontact.com", pattern=r"^https?://")
    token_url: str = setting(DEFAULT_TOKEN_URL, description="OAuth 2.0 token endpoint. Its host also serves "
                             "`/.well-known/cxone-configuration` (API host discovery).",
                             example="https://cxone.niceincontact.com/auth/token", pattern=r"^https?://")
    grant: Literal["client_credentials", "access_key"] = setting(
        "client_credentials", description="`access_key` (CXone's documented login: password grant with an access "
        "key plus the app's client id/secret) or `client_credentials` (the seed recording API's app credentials).")
    client_auth: Literal["form", "basic"] = setting(
        "form", description="How the app's client id/secret travel to the token endpoint: in the form body, or as "
        "HTTP Basic (RFC 6749 §2.3.1); both are seen in CXone integrations.")
    client_id: str = setting(description="OAuth client id of the registered application.", example="${CXONE_CLIENT_ID}")
    client_secret: SecretStr = setting(description="OAuth client secret (use `${VAR}`; never logged).",
                                       example="${CXONE_CLIENT_SECRET}")
    access_key_id: str | None = setting(None, description="Access-key id, for `grant: access_key`.",
                                        example="${CXONE_ACCESS_KEY_ID}")
    access_key_secret: SecretStr | None = setting(None, description="Access-key secret, for `grant: access_key`.",
                                                  example="${CXONE_ACCESS_KEY_SECRET}")
    scope: str = setting("recording:download recording:read", description="OAuth scopes requested "
                         "(`client_credentials` only).")
    from_: str | None = setting(None, alias="from", description="Data extraction: first call start time archived: a "
                                "date (`2026-11-29`, start of that day) or a time (`2026-11-29T08:00`, `...Z`, "
                                "`...+01:00`), in `timezone` unless it has an offset. With `since: last-run`, where "
                                "the first run starts (default: the start of yesterday).", example="2026-11-29")
    to: str | None = setting(None, description="Data extraction: end of the window (exclusive): a date (the whole "
                             "day included) or a time. Default: now.", example="2026-11-29")
    since: Literal["last-run"] | None = setting(None, description="Data extraction: `last-run` starts each window "
                                                "where the previous complete run's ended (a watermark kept in the "
                                                "ledger), minus `overlap`.", example="last-run")
    timezone: str = setting("UTC", description="Zone of `from`/`to` values without an offset: `UTC` or an IANA "
                            "name.", example="Europe/Paris")
    overlap: str = setting("2h", description="Data extraction with `since: last-run`: how far before the watermark "
                           "each window starts again, for recordings CXone lists late (duration: 90, 30m, 2h, 1d). "
                           "Recordings already stored are skipped by the ledger.", example="2h")
    days_per_job: int = setting(1, description="Data extraction: most days one job covers; a longer window is split "
                                "into several jobs.", ge=1, le=31)
    entity_version: Literal["7", "10"] = setting("7", description="Version of the `recording-interaction-metadata` "
                                                  "entity to extract (both are parsed by column name).")
    job_poll_interval: float = setting(5.0, description="Seconds before the first job status poll; doubles per poll "
                                       "up to `max_job_poll_interval`.", gt=0, le=600)
    max_job_poll_interval: float = setting(60.0, description="Longest wait between two job status polls (seconds).",
                                           gt=0, le=3600)
    max_job_wait: float = setting(3600.0, description="Seconds a Data Extraction job may stay RUNNING before the "
                                  "run fails (`extraction-timeout`).", gt=0, le=86400)
    media_lookup: Literal["segments", "contacts"] = setting(
        "segments", description="Data extraction: how each segment's media URL is found: "
        "`/media-playback/v1/segments/{id}` (falls back to the contacts lookup on 404) or "
        "`/media-playback/v1/contacts?acd-call-id=` by the segment's contact id.")
    recordings: list[str] = setting([], description="Recording ids to archive (`recording-v2`, `stream`).",
                                    example=["100001", "100002"])
    recordings_file: Path | None = setting(None, description="File with one recording id per line "
                                           "(blank lines and `#` comments ignored).", example="./ids.txt")
    acd_call_ids: list[str] = setting([], description="ACD call ids to archive through the Media Playback API "
                                      "(`playback`). Stream id: the call id, or `{call id}-{n}` for each of a "
                                      "contact's several voice interactions.", example=["584930211"])
    acd_call_ids_file: Path | None = setting(None, description="File with one ACD call id per line (blank lines "
                                             "and `#` comments ignored).", example="./calls.txt")
    stream_offsets: tuple[int, ...] = setting((0,), description="Stream mode: offsets in seconds, sent "
                                              "comma-separated in groups of at most 3 per request; each group is one "
                                              "stream (`{id}` for one group, else `{id}@{first offset}`).",
                                              example=[0, 15, 30])
    stream_codec: str | None = setting(None, description="Stream mode: `codec` to ask for (default: omitted, "
                                       "as stored).", example="opus")
    stream_max_duration: int | None = setting(None, description="Stream mode: `maxDuration` in seconds capping each "
                                              "offset's segment.", example=180, ge=1)
    connections: int = setting(1, description="Concurrent ranged requests per recording (split download, like "
                               "aria2). Each holds up to `chunk_size` bytes in memory; all streams together "
                               "stay within `max_connections`.", ge=1, le=MAX_CONNECTIONS_PER_STREAM)
    rate_limit: str | None = setting(None, description="Request budget of the credentials: `REQUESTS/WINDOW` "
                                     "(window in s, m or h), or `off`. Shared by all streams, applied to every "
                                     "request but the token's; 429s slow it down further. Default: `150/5m` (CXone "
                                     "Media Playback's default) in `data-extraction` and `playback`, else off.",
                                     example="150/5m")
    max_duration: float = setting(4 * 3600.0, description="Longest recording accepted, in seconds "
                                  "(from metadata `duration`); longer ones fail without downloading.", gt=0)
    format: str | None = setting(None, description="Media format to ask for (`?format=`, `recording-v2`), e.g. "
                                 "`mp3`; default: as stored.", example="mp3")

    @field_validator("rate_limit")
    @classmethod
    def _check_rate(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate_limit(value)
        return value

    @field_validator("overlap")
    @classmethod
    def _check_overlap(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        zone(value)
        return value

    @property
    def effective_mode(self) -> str:
        """The mode in force (see the module doc)."""
        if self.mode == "download":
            return "recording-v2"
        if self.mode is not None:
            return self.mode
        if self.from_ is not None or self.since is not None or self.to is not None:
            return "data-extraction"
        if self.acd_call_ids or self.acd_call_ids_file is not None:
            return "playback"
        return "recording-v2"

    @property
    def overlap_seconds(self) -> float:
        return parse_duration(self.overlap)

    @model_validator(mode="after")
    def _check(self) -> "CxoneSettings":
        mode = self.effective_mode
        by_recording = bool(self.recordings) or self.recordings_file is not None
        by_call = bool(self.acd_call_ids) or self.acd_call_ids_file is not None
        by_date = self.from_ is not None or self.since is not None or self.to is not None
        given = [name for name, on in (("recording ids", by_recording), ("ACD call ids", by_call),
                                       ("a date window (from/to/since)", by_date)) if on]
        if len(given) > 1:
            raise ValueError(f"give one discovery per source, not {' and '.join(given)}")
        if mode == "data-extraction":
            if not (self.from_ is not None or self.since is not None):
                raise ValueError("`mode: data-extraction` needs `from` (and optionally `to`) or `since: last-run`")
            tz = zone(self.timezone)
            try:
                start = parse_bound(self.from_, tz, end=False) if self.from_ else None
                end = parse_bound(self.to, tz, end=True) if self.to else None
            except ValueError as exc:
                raise ValueError(f"from/to: {exc}") from None
            if start is not None and end is not None:
                Window(start, end)  # raises when empty or too long
            if self.since is not None and self.to is not None:
                raise ValueError("`since: last-run` runs up to now; leave out `to`")
        elif mode == "playback" and not by_call:
            raise ValueError("`mode: playback` needs `acd_call_ids` or `acd_call_ids_file`")
        elif mode in ("recording-v2", "stream") and not by_recording:
            if not given:
                raise ValueError("give `from`/`since` (find recordings by date), `acd_call_ids`/`acd_call_ids_file` "
                                 "(Media Playback) or `recordings`/`recordings_file` (recording ids)")
            raise ValueError(f"`mode: {mode}` reads the recording API by recording id: give `recordings`")
        if self.grant == "access_key" and (not self.access_key_id or self.access_key_secret is None):
            raise ValueError("`grant: access_key` needs `access_key_id` and `access_key_secret`")
        if self.api_base is None and self.grant != "access_key":
            raise ValueError("`api_base` is required with `grant: client_credentials` (only the access-key login "
                             "tells the API host)")
        if self.max_job_poll_interval < self.job_poll_interval:
            raise ValueError("`max_job_poll_interval` is shorter than `job_poll_interval`")
        try:
            check_offsets(self.stream_offsets)
        except StreamRequestError as exc:
            raise ValueError(f"stream_offsets: {exc}") from None
        if self.stream_codec is not None and not (self.stream_codec.isascii() and self.stream_codec.isalnum()):
            raise ValueError(f"stream_codec {self.stream_codec!r} is not a codec name such as opus")
        return self

    @property
    def request_budget(self) -> tuple[int, float] | None:
        """``(requests, window seconds)`` in force, or ``None`` (no client-side limit)."""
        if self.rate_limit is not None:
            return parse_rate_limit(self.rate_limit)
        if self.effective_mode in ("playback", "data-extraction"):
            return PLAYBACK_RATE_LIMIT
        return None

