"""Settings of one CXone emulator instance (pydantic, frozen).

Defaults are demo credentials meant to be printed at start-up; they guard
nothing but a loopback test server. Secrets are :class:`pydantic.SecretStr`
so they never appear in a repr or a log line.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from .faults import FaultConfig
from .ratelimit import RateLimit

__all__ = ["EmulatorSettings", "DEMO_CLIENT_ID", "DEMO_CLIENT_SECRET", "DEMO_ACCESS_KEY_ID", "DEMO_ACCESS_KEY_SECRET"]

DEMO_CLIENT_ID = "demo-client"
DEMO_CLIENT_SECRET = "demo-secret"
DEMO_ACCESS_KEY_ID = "demo-access-key"
DEMO_ACCESS_KEY_SECRET = "demo-access-secret"


class EmulatorSettings(BaseModel):
    """Everything an emulator instance is configured with.

    ``host`` must be a loopback address (the emulator is a local test double).
    Times are seconds; probabilities live in ``faults``.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")

    recordings: Path
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)
    client_id: str = DEMO_CLIENT_ID
    client_secret: SecretStr = SecretStr(DEMO_CLIENT_SECRET)
    access_key_id: str = DEMO_ACCESS_KEY_ID
    access_key_secret: SecretStr = SecretStr(DEMO_ACCESS_KEY_SECRET)
    area: str = "na1"
    token_ttl: float = Field(3600.0, gt=0)
    media_url_ttl: float = Field(300.0, gt=0)
    rate_limit: RateLimit | None = None
    faults: FaultConfig = FaultConfig()
    seed: int | None = None
    hmac_key: SecretStr | None = None
    hmac_encoding: Literal["hex", "base64"] = "hex"
    sha256_in_metadata: bool = True
    tamper: tuple[str, ...] = ()
    storage_states: dict[str, str] = Field(default_factory=dict)
    stream_chunk_size: int = Field(256 * 1024, ge=1, le=16 << 20)
    """Bytes per chunk of the streaming endpoint's chunked body."""
    calls_end: float | None = None
    """Unix seconds the emulated calls end before (default: start-up time, to the minute)."""
    call_spacing: float = Field(600.0, gt=0, le=86400 * 31)
    """Seconds between the starts of consecutive calls (recordings sorted by id)."""
    tenant_id: str = "emulator-tenant"
    """Tenant id of the id token and of ``/.well-known/cxone-configuration``."""
    segment_answer: Literal["interactions", "redirectUrl", "fileToPlayUrl"] = "interactions"
    """Where ``/media-playback/v1/segments/{id}`` puts the media URL (all three shapes are seen)."""
    extraction_running_polls: int = Field(1, ge=0, le=10_000)
    """Status polls a Data Extraction job answers RUNNING before it ends."""
    extraction_running_seconds: float = Field(0.0, ge=0, le=86400)
    """Seconds a Data Extraction job stays RUNNING at least (a slow extraction)."""
    extraction_result_ttl: float = Field(3600.0, gt=0)
    """Seconds a SUCCEEDED job's CSV stays available (then EXPIRED)."""
    extraction_max_days: int = Field(31, ge=1, le=366)
    """Most days one Data Extraction job may cover (400 beyond)."""
    job_id_shape: Literal["object", "string"] = "object"
    """Job creation answer: ``{"jobId": …}`` or the bare id as a JSON string (both are seen)."""
    job_fates: tuple[str, ...] = ()
    """Fates of the first jobs created (SUCCEEDED, FAILED, CANCELLED, EXPIRED); then SUCCEEDED."""

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _parse_rate_limit(cls, value: object) -> object:
        return RateLimit.parse(value) if isinstance(value, str) else value

    @field_validator("host")
    @classmethod
    def _loopback_only(cls, host: str) -> str:
        if host == "localhost":
            return host
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"host {host!r} is not an IP address; the emulator binds loopback only (127.0.0.1, ::1)") from None
        if not addr.is_loopback:
            raise ValueError(f"host {host!r} is not a loopback address; the emulator binds loopback only (127.0.0.1, ::1)")
        return host

    @property
    def hmac_key_bytes(self) -> bytes | None:
        """The HMAC key as UTF-8 bytes, or None when recordings are not signed."""
        return self.hmac_key.get_secret_value().encode() if self.hmac_key is not None else None
