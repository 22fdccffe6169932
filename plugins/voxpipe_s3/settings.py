"""Settings of the ``s3`` sink (declared once: validation, ``docs/configuration.md``, ``voxpipe plugins``)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Literal
from urllib.parse import urlsplit

from pydantic import field_validator, model_validator

from voxpipe import naming
from voxpipe.compression import GzipOptions
from voxpipe.settings import Settings, setting

from .parts import MAX_PART_SIZE, MIN_PART_SIZE

#: Bucket names S3 accepts (general purpose buckets: 3-63 lower-case letters, digits, dots, hyphens).
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
#: Default part size: 16 MiB (a 2 GB recording is 128 parts; one part is the sink's memory per stream).
DEFAULT_PART_SIZE = 16 << 20
#: Formats stored as received by ``compress: auto`` (already compressed: gzip would gain nothing).
COMPRESSED_FORMATS = frozenset({"mp3", "mp4", "m4a", "ogg", "opus", "webm", "aac", "flac", "gz", "zip"})
#: Longest retention accepted, in days (100 years).
MAX_RETENTION_DAYS = 36_500


class ObjectLockSettings(Settings):
    """Object Lock retention applied to every stored object and its sidecar."""

    mode: Literal["GOVERNANCE", "COMPLIANCE"] = setting(
        description="`COMPLIANCE`: nobody, not even the root account, can shorten or remove the retention. "
        "`GOVERNANCE`: users with `s3:BypassGovernanceRetention` can.", example="COMPLIANCE")
    days: int = setting(description="Retention period in days, counted from the recording's own date (the call's "
                        "start as the platform reported it), not the upload time.", example=2557, ge=1,
                        le=MAX_RETENTION_DAYS)


class S3SinkSettings(GzipOptions):
    bucket: str = setting(description="Bucket the recordings are stored in (it must exist).", example="call-archive")
    prefix: str = setting("", description="Key prefix of everything this sink writes (objects, sidecars, its upload "
                          "journal under `<prefix>.voxpipe/`); `voxpipe s3 uploads` works under it.",
                          example="recordings/")
    key: str = setting("{year}/{month}/{day}/{recording_id}.{format}",
                       description="Object key template after `prefix` (same fields as the file sinks' `name`: "
                       + ", ".join("`{%s}`" % f for f in naming.TEMPLATE_FIELDS) + "). `.gz` is added when "
                       "compressed.", example="{org_id}/{year}/{month}/{contact_id}.{format}")
    layout: Literal["template", "genesys-export"] = setting(
        "template", description="`template`: keys from `key`, sidecar `<key>.json`. `genesys-export`: Genesys "
        "Cloud's own S3 export layout, `{org_id}/year=YYYY/month=M/day=D/hour=H/conversation_id=ID/{recording_id}` "
        "with `{recording_id}_metadata.json` beside it (partitions from the conversation's start, UTC), so "
        "existing Athena/Glue tables keep working.")
    manifest: bool = setting(True, description="Write the JSON manifest (sidecar) next to each object.")
    endpoint_url: str | None = setting(None, description="Endpoint of an S3-compatible store (MinIO, Ceph RGW, "
                                       "Wasabi, R2...); default: AWS for `region`. No credentials in the URL.",
                                       example="https://minio.example.net:9000")
    addressing_style: Literal["auto", "path", "virtual"] = setting(
        "auto", description="`path` (`https://host/bucket/key`, what most S3-compatible stores need), `virtual` "
        "(`https://bucket.host/key`) or `auto`.")
    region: str | None = setting(None, description="AWS region; default: from the AWS configuration chain.",
                                 example="eu-west-1")
    profile: str | None = setting(None, description="Named profile of the AWS configuration files. Credentials "
                                  "come from the standard AWS chain (environment, profile, SSO, instance or task "
                                  "role) and never from this file.", example="archive-writer")
    storage_class: str | None = setting(None, description="Storage class of the objects (`STANDARD`, "
                                        "`STANDARD_IA`, `GLACIER_IR`...); default: the bucket's.",
                                        example="STANDARD_IA", pattern=r"^[A-Z_]{1,32}$")
    sse: Literal["AES256", "aws:kms"] | None = setting(None, description="Server-side encryption: `AES256` "
                                                       "(S3-managed keys) or `aws:kms`; default: the bucket's.")
    sse_kms_key_id: str | None = setting(None, description="KMS key id or ARN for `sse: aws:kms` (default: the "
                                         "account's `aws/s3` key).", example="alias/call-archive")
    compress: Literal["none", "gzip", "auto"] = setting(
        "none", description="`none`: objects are the bytes as received. `gzip`: gzip-compressed (same compressors "
        "as the gzip sink: `level`, `engine`). `auto`: gzip unless the format is already compressed "
        f"({', '.join(sorted(COMPRESSED_FORMATS))}).")
    part_size: int = setting(DEFAULT_PART_SIZE, description="Multipart upload part size in bytes (5 MiB to 5 GiB); "
                             "the memory each stream holds. Raised for a recording whose announced size would "
                             "need more than 10,000 parts. Recordings smaller than one part are stored with one "
                             "PUT.", ge=MIN_PART_SIZE, le=MAX_PART_SIZE)
    object_lock: ObjectLockSettings | None = setting(None, description="Object Lock retention of each object and "
                                                     "its sidecar: `mode` (`GOVERNANCE` or `COMPLIANCE`) and `days` "
                                                     "counted from the recording's own date. The bucket must have "
                                                     "Object Lock enabled (checked before any download).", example={"mode": "COMPLIANCE", "days": 2557})
    legal_hold: bool = setting(False, description="Place an Object Lock legal hold on each object (needs a bucket "
                               "with Object Lock).")
    max_connections: int = setting(16, description="HTTP connections to the store (shared by every stream).",
                                   ge=1, le=256)

    @field_validator("bucket")
    @classmethod
    def _check_bucket(cls, value: str) -> str:
        if not BUCKET_NAME.match(value) or ".." in value:
            raise ValueError(f"{value!r} is not a valid bucket name (3-63 characters: a-z, 0-9, '.', '-')")
        return value

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if value.startswith("/") or any(p in ("..", ".") for p in PurePosixPath(value).parts) or "\x00" in value:
            raise ValueError("prefix must be a relative key prefix without '.', '..' or a leading '/'")
        return value

    @field_validator("key")
    @classmethod
    def _check_key(cls, value: str) -> str:
        return naming.check_template(value)

    @field_validator("endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if not value:  # empty (an unset ${S3_ENDPOINT_URL:-}): AWS
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("endpoint_url must be an http:// or https:// URL")
        if parts.username or parts.password:
            # never echo the value: it holds a secret
            raise ValueError("endpoint_url must not contain credentials (use the AWS credential chain)")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> "S3SinkSettings":
        if self.sse_kms_key_id is not None and self.sse != "aws:kms":
            raise ValueError("sse_kms_key_id needs sse: aws:kms")
        return self

    @property
    def needs_object_lock(self) -> bool:
        """Whether the bucket must have Object Lock enabled."""
        return self.object_lock is not None or self.legal_hold

    def gzip_for(self, fmt: str | None) -> bool:
        """Whether a recording of format ``fmt`` is stored gzip-compressed."""
        if self.compress == "auto":
            return (fmt or "").lower() not in COMPRESSED_FORMATS
        return self.compress == "gzip"
