"""boto3 clients and S3 error handling for the ``s3`` sink and the archive commands.

boto3 is synchronous (and its clients thread-safe): every call here runs in a worker
thread (``trio.to_thread.run_sync``), never on the event loop. Credentials come from the
standard AWS chain (environment, shared config/credentials files and ``profile``, SSO,
container and instance roles); nothing here reads or logs them.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Iterator

from voxpipe.errors import SinkError

from .keys import JOURNAL_DIR, JOURNAL_SUFFIX, journal_key

#: Retries botocore makes per request (``standard`` mode: throttling, 5xx, timeouts).
MAX_REQUEST_ATTEMPTS = 5
#: Seconds to connect / to wait for a response.
CONNECT_TIMEOUT, READ_TIMEOUT = 10, 120
#: Most keys one listing returns (bounded pagination).
MAX_LISTED = 100_000
#: Largest journal entry read, in bytes.
MAX_JOURNAL_ENTRY = 16 * 1024


try:
    from botocore.exceptions import BotoCoreError, ClientError
    #: What a failed boto3 call raises: an error answer (ClientError) or a transport or
    #: configuration failure (BotoCoreError: no credentials, endpoint unreachable...).
    ERRORS: tuple[type[Exception], ...] = (ClientError, BotoCoreError)
except ImportError:  # boto3 not installed: nothing to catch (make_client says what is missing)
    ERRORS = ()


class S3Unavailable(RuntimeError):
    """boto3 is not installed (``pip install 'voxpipe[s3]'``)."""


def make_client(*, region: str | None, endpoint_url: str | None, addressing_style: str, profile: str | None,
                max_connections: int) -> Any:
    """A boto3 S3 client (thread-safe) for these settings.

    :raises S3Unavailable: boto3 is not installed.
    """
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise S3Unavailable("the s3 sink needs boto3: pip install 'voxpipe[s3]'") from None
    session = boto3.session.Session(profile_name=profile, region_name=region)
    # payload_signing_enabled False: botocore would SHA-256 the whole body a second time to
    # sign it over plain http (it already skips that over https). Every body this plugin
    # sends carries a signed x-amz-checksum-sha256 header that S3 verifies, and completed
    # objects are read back and compared, so the body stays integrity-checked.
    config = Config(s3={"addressing_style": addressing_style, "payload_signing_enabled": False}, retries={"max_attempts": MAX_REQUEST_ATTEMPTS,
                    "mode": "standard"}, max_pool_connections=max_connections, connect_timeout=CONNECT_TIMEOUT,
                    read_timeout=READ_TIMEOUT,
                    # SHA-256 checksums are chosen per request; no CRC32 added behind our back
                    request_checksum_calculation="when_required", response_checksum_validation="when_required")
    return session.client("s3", endpoint_url=endpoint_url, config=config)


def client_for(settings: Any) -> Any:
    """:func:`make_client` for an ``s3`` sink's settings."""
    return make_client(region=settings.region, endpoint_url=settings.endpoint_url,
                       addressing_style=settings.addressing_style, profile=settings.profile,
                       max_connections=settings.max_connections)


def error_code(exc: BaseException) -> str | None:
    """The S3 error code of a botocore ``ClientError`` (``NoSuchUpload``, ``PreconditionFailed``...), else ``None``."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return str(status) if status else None
    return None


def http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


def describe(exc: BaseException) -> str:
    """A one-line description of a boto3 error: code and message, never request headers."""
    code = error_code(exc)
    response = getattr(exc, "response", None)
    message = response.get("Error", {}).get("Message") if isinstance(response, dict) else None
    if code:
        return f"{code}: {message}" if message else code
    return f"{type(exc).__name__}: {exc}"


def sink_error(exc: BaseException, what: str, *, reason: str = "s3-error", retryable: bool = False) -> SinkError:
    """A :class:`SinkError` for a failed S3 call; ``what`` names the operation and the key."""
    return SinkError(f"{what}: {describe(exc)}", reason=reason, retryable=retryable)


# ---------------------------------------------------------------- upload journal


@dataclass(frozen=True)
class JournalEntry:
    """One multipart upload the sink created: ``journal`` is the entry's own key."""

    journal: str
    bucket: str
    key: str
    upload_id: str
    pipeline: str
    recording_id: str
    created_at: float
    host: str = ""
    pid: int = 0

    def abandoned(self, now: float, grace: float) -> bool:
        """Whether no live writer can still be using the upload: the process that created it
        on this host is gone, or (another host's, or unknown) it is older than ``grace`` seconds."""
        if self.host == socket.gethostname() and self.pid > 0:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                pass
        return now - self.created_at > grace


def journal_add(client: Any, bucket: str, prefix: str, *, key: str, upload_id: str, pipeline: str,
                recording_id: str) -> str:
    """Record a new multipart upload in the journal; returns the entry's key."""
    entry = journal_key(prefix, upload_id)
    body = json.dumps({"key": key, "upload_id": upload_id, "pipeline": pipeline, "recording_id": recording_id,
                       "created_at": time.time(), "host": socket.gethostname(), "pid": os.getpid()},
                      sort_keys=True).encode()
    client.put_object(Bucket=bucket, Key=entry, Body=body, ContentType="application/json",
                      ChecksumAlgorithm="SHA256")
    return entry


def journal_remove(client: Any, bucket: str, prefix: str, upload_id: str) -> None:
    client.delete_object(Bucket=bucket, Key=journal_key(prefix, upload_id))


def journal_entries(client: Any, bucket: str, prefix: str) -> Iterator[JournalEntry]:
    """Every journal entry under ``prefix`` (at most :data:`MAX_LISTED`); unreadable ones are skipped."""
    listed = 0
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix + JOURNAL_DIR):
        for item in page.get("Contents", []):
            listed += 1
            if listed > MAX_LISTED:
                return
            name = item["Key"]
            if not name.endswith(JOURNAL_SUFFIX) or item.get("Size", 0) > MAX_JOURNAL_ENTRY:
                continue
            try:
                doc = json.loads(client.get_object(Bucket=bucket, Key=name)["Body"].read(MAX_JOURNAL_ENTRY))
                yield JournalEntry(journal=name, bucket=bucket, key=str(doc["key"]), upload_id=str(doc["upload_id"]),
                                   pipeline=str(doc.get("pipeline", "")), recording_id=str(doc.get("recording_id", "")),
                                   created_at=float(doc.get("created_at", 0)), host=str(doc.get("host", "")),
                                   pid=int(doc.get("pid", 0)))
            except (*ERRORS, ValueError, KeyError, TypeError):
                continue  # removed while listing, or not an entry this plugin wrote: skipped


def abort_upload(client: Any, bucket: str, prefix: str, key: str, upload_id: str) -> bool:
    """Abort a multipart upload and drop its journal entry; ``False`` if it was already gone."""
    gone = False
    try:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except ERRORS as exc:
        if error_code(exc) not in ("NoSuchUpload", "404"):
            raise
        gone = True
    journal_remove(client, bucket, prefix, upload_id)
    return not gone
