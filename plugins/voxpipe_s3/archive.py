"""An S3 bucket (prefix) as an archive for ``voxpipe serve`` and ``voxpipe retention``.

Location: ``s3://bucket/prefix`` with optional query parameters ``endpoint_url``,
``region``, ``addressing_style``, ``profile`` (credentials: the standard AWS chain).

- Catalogue: ListObjectsV2 under the prefix; each sidecar (``<key>.json`` beside its
  object, or the Genesys layout's ``<recording id>_metadata.json``) is read (bounded,
  :data:`voxpipe.manifest.MAX_MANIFEST_BYTES`) and parsed like a file manifest; a sidecar
  whose ETag is unchanged is not read again. The sink's own ``.voxpipe/`` keys are skipped.
- Reads: HeadObject at open (size, version, ETag), then one ranged GetObject per response
  (``Range``, ``If-Match`` the ETag seen at open, the manifest's version id when known),
  read in bounded blocks from the stream, so a large recording is never held in memory.
- Holds: an S3 legal hold ON, or an Object Lock retain-until date not yet reached, keeps a
  recording (what HeadObject reports); deletion removes the manifest's version of the
  object, then the sidecar's current version. Object Lock refuses versions still locked
  (AccessDenied), which retention reports as refused.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from voxpipe.archive_storage import DeleteRefused, Entry, EntryLookup, NotStored
from voxpipe.manifest import MAX_MANIFEST_BYTES, ManifestError, parse_manifest, recording_time

from . import client as s3
from .keys import GENESYS_SIDECAR_SUFFIX, is_internal_key
from .settings import BUCKET_NAME

log = logging.getLogger("voxpipe.s3")

#: Seconds a catalogue is trusted before the bucket is listed again.
DEFAULT_TTL = 30.0
#: Most objects listed per refresh.
MAX_OBJECTS = s3.MAX_LISTED
#: Query parameters an ``s3://`` location accepts.
LOCATION_PARAMS = ("endpoint_url", "region", "addressing_style", "profile")


class S3Range:
    """A streaming ranged GetObject body (see :class:`voxpipe.archive_storage.RangeReader`)."""

    def __init__(self, body: Any):
        self.body = body

    def read(self, n: int) -> bytes:
        return self.body.read(n)

    def close(self) -> None:
        self.body.close()


class S3Object:
    """An opened object: ``size`` and ranged readers pinned to the version and ETag seen at open."""

    def __init__(self, client: Any, bucket: str, key: str, head: dict[str, Any], version_id: str | None):
        self.client, self.bucket, self.key = client, bucket, key
        self.size = int(head["ContentLength"])
        self.etag = head.get("ETag")
        self.version_id = version_id
        self._open: list[S3Range] = []

    def open_range(self, start: int, length: int) -> S3Range:
        if length <= 0:
            return S3Range(_Empty())
        extra: dict[str, Any] = {"VersionId": self.version_id} if self.version_id else {}
        if self.etag:
            extra["IfMatch"] = self.etag
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={start}-{start + length - 1}",
                                          **extra)["Body"]
        except s3.ERRORS as exc:
            raise OSError(f"s3://{self.bucket}/{self.key}: {s3.describe(exc)}") from None
        reader = S3Range(body)
        self._open.append(reader)
        return reader

    def close(self) -> None:
        while self._open:
            self._open.pop().close()


class _Empty:
    def read(self, n: int) -> bytes:
        return b""

    def close(self) -> None:
        pass


class S3Catalogue:
    """The recordings under ``prefix`` in ``bucket`` (see the module docstring); thread-safe."""

    def __init__(self, client: Any, bucket: str, prefix: str, *, ttl: float = DEFAULT_TTL):
        self.client, self.bucket, self.prefix, self.ttl = client, bucket, prefix, ttl
        self.root = f"s3://{bucket}/{prefix}"
        self.truncated = False
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._sidecars: dict[str, tuple[str, Entry | None, str | None]] = {}  # key -> (etag, entry, version id)
        self._lookup = EntryLookup()
        self.versions: dict[str, str | None] = {}  # relative name -> the manifest's version id of the object
        self.sidecar_keys: dict[str, str] = {}  # relative name -> sidecar key

    def invalidate(self) -> None:
        with self._lock:
            self._checked_at = None

    def refresh(self, *, force: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            if not force and self._checked_at is not None and now - self._checked_at < self.ttl:
                return
            self._scan()
            self._checked_at = now

    def _scan(self) -> None:
        listed: dict[str, str] = {}
        self.truncated = False
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                if len(listed) >= MAX_OBJECTS:
                    self.truncated = True
                    log.warning("archive: more than %d objects under %s; the catalogue is truncated", MAX_OBJECTS,
                                self.root)
                    break
                if not is_internal_key(self.prefix, item["Key"]):
                    listed[item["Key"]] = item.get("ETag", "")
            if self.truncated:
                break
        sidecars: dict[str, tuple[str, Entry | None, str | None]] = {}
        for key, etag in listed.items():
            target = _described_object(key, listed)
            if target is None:
                continue
            cached = self._sidecars.get(key)
            sidecars[key] = cached if cached is not None and cached[0] == etag else (etag, *self._read(key, target))
        self._sidecars = sidecars
        entries = [e for _, e, _ in sidecars.values() if e is not None]
        self.versions = {e.relative: v for _, e, v in sidecars.values() if e is not None}
        self.sidecar_keys = {e.relative: k for k, (_, e, _) in sidecars.items() if e is not None}
        self._lookup = EntryLookup.of(entries)

    def _read(self, key: str, target: str) -> tuple[Entry | None, str | None]:
        try:
            data = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read(MAX_MANIFEST_BYTES + 1)
        except s3.ERRORS as exc:
            log.warning("archive: s3://%s/%s: cannot be read (%s)", self.bucket, key, s3.describe(exc))
            return None, None
        if len(data) > MAX_MANIFEST_BYTES:
            log.debug("archive: s3://%s/%s: larger than %d bytes; skipped", self.bucket, key, MAX_MANIFEST_BYTES)
            return None, None
        try:
            # parsed as if it were named "<object>.json", so the stored_file check applies to either layout
            manifest = parse_manifest(Path(target + ".json"), data)
            version = json.loads(data).get("version_id")
        except (ManifestError, ValueError) as exc:
            log.debug("archive: skipping s3://%s/%s: %s", self.bucket, key, exc)
            return None, None
        when, when_key = recording_time(manifest)
        relative = target[len(self.prefix):]
        return Entry(manifest, relative, when, when_key), version if isinstance(version, str) else None

    def entries(self) -> tuple[Entry, ...]:
        return self._lookup.all

    def by_recording_id(self, recording_id: str) -> tuple[Entry, ...]:
        return self._lookup.by_id.get(recording_id, ())

    def by_interaction_id(self, interaction_id: str) -> tuple[Entry, ...]:
        return self._lookup.by_interaction.get(interaction_id, ())


def _described_object(key: str, listed: dict[str, str]) -> str | None:
    """The object a sidecar key describes, if ``key`` is a sidecar and its object is listed."""
    if key.endswith(GENESYS_SIDECAR_SUFFIX):
        base = key[: -len(GENESYS_SIDECAR_SUFFIX)]
        for candidate in (base, base + ".gz"):
            if candidate in listed:
                return candidate
        return None
    if key.endswith(".json") and key[: -len(".json")] in listed:
        return key[: -len(".json")]
    return None


class S3ArchiveStorage:
    """:class:`voxpipe.archive_storage.ArchiveStorage` for ``s3://bucket/prefix``."""

    def __init__(self, client: Any, bucket: str, prefix: str, *, ttl: float = DEFAULT_TTL):
        self.client, self.bucket, self.prefix = client, bucket, prefix
        self.catalogue = S3Catalogue(client, bucket, prefix, ttl=ttl)
        self.label = f"s3://{bucket}/{prefix}"

    @classmethod
    def from_location(cls, location: str) -> "S3ArchiveStorage":
        """Open ``s3://bucket/prefix?endpoint_url=...``; checks the bucket is reachable.

        :raises ValueError: a malformed location or an unusable bucket (message names it).
        """
        parts = urlsplit(location)
        bucket, prefix = parts.netloc, parts.path.lstrip("/")
        if not BUCKET_NAME.match(bucket):
            raise ValueError(f"{bucket!r} is not a valid bucket name")
        params = dict(parse_qsl(parts.query))
        unknown = set(params) - set(LOCATION_PARAMS)
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(sorted(unknown))}; known: {', '.join(LOCATION_PARAMS)}")
        try:
            client = s3.make_client(region=params.get("region"), endpoint_url=params.get("endpoint_url"),
                                    addressing_style=params.get("addressing_style", "auto"),
                                    profile=params.get("profile"), max_connections=32)
            client.head_bucket(Bucket=bucket)
        except s3.S3Unavailable as exc:
            raise ValueError(str(exc)) from None
        except s3.ERRORS as exc:
            raise ValueError(f"bucket {bucket!r} cannot be used: {s3.describe(exc)}") from None
        return cls(client, bucket, prefix)

    def _key(self, entry: Entry) -> str:
        return self.prefix + entry.relative

    def open(self, entry: Entry) -> S3Object:
        key = self._key(entry)
        version = self.catalogue.versions.get(entry.relative)
        rid = entry.manifest.recording_id
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key, **({"VersionId": version} if version else {}))
        except s3.ERRORS as exc:
            raise NotStored(f"recording {rid} is not in the archive", "gone") from None
        return S3Object(self.client, self.bucket, key, head, version)

    def hold(self, entry: Entry) -> str | None:
        key = self._key(entry)
        version = self.catalogue.versions.get(entry.relative)
        head = self.client.head_object(Bucket=self.bucket, Key=key, **({"VersionId": version} if version else {}))
        if head.get("ObjectLockLegalHoldStatus") == "ON":
            return "S3 legal hold"
        until = head.get("ObjectLockRetainUntilDate")
        if isinstance(until, datetime) and until > datetime.now(timezone.utc):
            return f"Object Lock {head.get('ObjectLockMode')} until {until.isoformat()}"
        return None

    def delete(self, entry: Entry) -> None:
        key = self._key(entry)
        version = self.catalogue.versions.get(entry.relative)
        self._delete(key, version)
        sidecar = self.catalogue.sidecar_keys.get(entry.relative)
        if sidecar is not None:
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=sidecar)
            except s3.ERRORS as exc:
                return  # already gone
            self._delete(sidecar, head.get("VersionId") if head.get("VersionId") not in (None, "null") else None)
        self.catalogue.invalidate()

    def _delete(self, key: str, version: str | None) -> None:
        # A version id deletes that version for good; without one (unversioned bucket) the
        # object itself. Object Lock refuses locked versions with AccessDenied.
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key, **({"VersionId": version} if version else {}))
        except s3.ERRORS as exc:
            raise DeleteRefused(f"s3://{self.bucket}/{key}: {s3.describe(exc)}") from None
