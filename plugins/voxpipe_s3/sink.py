"""The ``s3`` sink: each stream becomes one object, uploaded in parts, verified, never overwritten.

Per stream (see ``docs/object-storage.md``):

- ``write``: bytes are (optionally) gzip-compressed and cut into parts
  (:class:`voxpipe_s3.parts.PartCutter`); each full part is uploaded at once with its
  SHA-256 (``x-amz-checksum-sha256``, which S3 verifies), so a stream holds one part in
  memory, never the recording, and nothing is spooled to disk. The multipart upload is
  created with the first full part (the key's facts are known by then) and recorded in
  the sink's upload journal;
- ``prepare``: the last part is uploaded (a recording smaller than one part is kept for
  a single PUT);
- ``commit`` (only after every verifier passed): CompleteMultipartUpload (or PutObject)
  with ``If-None-Match: *``, so an existing key is never replaced; a 412 compares the
  existing object's SHA-256 (its sidecar's ``stored_sha256``) with ours: equal counts
  as stored, different fails the recording and touches nothing. Then HeadObject with
  ``ChecksumMode=ENABLED`` checks size and checksum (and the Object Lock retention and
  legal hold) against what was sent, and the sidecar manifest is written beside it;
- ``abort``: AbortMultipartUpload; ``suspend`` (shutdown) keeps the upload for resume.

Resume: the checkpoint holds the upload id and its parts (number, size, SHA-256, ETag).
A resumed writer asks for the stream from byte 0 (:attr:`SinkWriter.resume_offset`; a
multipart upload cannot be read back, so :attr:`S3Sink.replays` is ``False``): the
engine re-reads the source, the verifiers see every byte, and the writer recomputes
each part and skips those already stored (checked against the checkpoint's SHA-256, or
ListParts' size and checksum/ETag), uploading only the rest.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterator

import trio

from voxpipe.components import Sink, SinkWriter
from voxpipe.errors import RunError, SinkError
from voxpipe.model import Stream

from . import client as s3
from .parts import MAX_PARTS, ResumeState, parse_state
from .settings import S3SinkSettings
from .writer import S3Writer

log = logging.getLogger("voxpipe.s3")

#: Seconds after which an upload no checkpoint holds counts as abandoned even if the
#: process that created it cannot be checked (another host): far longer than a live
#: writer takes from creating an upload to its first checkpoint.
ORPHAN_GRACE_SECONDS = 6 * 3600


class S3Sink(Sink):
    """Store each stream as an S3 object: multipart upload with SHA-256 checksums, never overwritten, JSON sidecar."""

    type = "s3"
    Settings = S3SinkSettings
    replays = False
    #: The upload lives in the bucket: a worker on another machine can continue it.
    shares_partial_state = True

    def __init__(self, settings: S3SinkSettings, context: Any):
        super().__init__(settings, context)
        self._client: Any = None
        self._client_lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The sink's boto3 client, made on first use (call it from worker threads only)."""
        with self._client_lock:
            if self._client is None:
                self._client = s3.client_for(self.settings)
            return self._client

    # ------------------------------------------------------------ run-wide

    async def start(self, nursery: trio.Nursery) -> None:
        """Check the bucket before any download: it exists, and has Object Lock when the settings ask for it."""
        await trio.to_thread.run_sync(self.preflight)

    def preflight(self) -> None:
        """:raises RunError: the bucket is missing or unreachable, or lacks Object Lock while asked for."""
        bucket = self.settings.bucket
        try:
            client = self.client
            client.head_bucket(Bucket=bucket)
        except s3.S3Unavailable as exc:
            raise RunError(str(exc)) from None
        except s3.ERRORS as exc:
            raise RunError(f"s3 sink: bucket {bucket!r} cannot be used: {s3.describe(exc)}") from None
        if self.settings.needs_object_lock:
            what = "object_lock" if self.settings.object_lock is not None else "legal_hold"
            try:
                config = client.get_object_lock_configuration(Bucket=bucket).get("ObjectLockConfiguration", {})
            except s3.ERRORS as exc:
                if s3.error_code(exc) == "ObjectLockConfigurationNotFoundError":
                    config = {}
                else:
                    raise RunError(f"s3 sink: cannot read the Object Lock configuration of bucket {bucket!r} "
                                   f"({s3.describe(exc)}), which {what} needs") from None
            if config.get("ObjectLockEnabled") != "Enabled":
                raise RunError(f"s3 sink: {what} is set but bucket {bucket!r} does not have Object Lock enabled "
                               "(it can only be enabled on a versioned bucket; see docs/object-storage.md)")

    def destination(self) -> str:
        """``s3://bucket/prefix``: where this sink stores (run summaries, ``check --connect``)."""
        return f"s3://{self.settings.bucket}/{self.settings.prefix}"

    async def check_connect(self) -> list[Any]:
        """``voxpipe check --connect``: the bucket exists and is reachable with the credentials
        of the AWS chain, and has Object Lock when the settings ask for it (nothing is written)."""
        from voxpipe.components import ConnectCheck  # the --connect protocol (core)

        where = f"s3://{self.settings.bucket}"
        try:
            await trio.to_thread.run_sync(self.preflight)
        except RunError as exc:
            return [ConnectCheck("destination", False, str(exc))]
        detail = f"{where} reachable" + (", Object Lock enabled" if self.settings.needs_object_lock else "")
        return [ConnectCheck("destination", True, detail)]

    async def aclose(self) -> None:
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            await trio.to_thread.run_sync(client.close)

    def write_options(self) -> dict[str, Any]:
        """Storage class and encryption arguments of PutObject and CreateMultipartUpload."""
        s = self.settings
        out: dict[str, Any] = {}
        if s.storage_class:
            out["StorageClass"] = s.storage_class
        if s.sse:
            out["ServerSideEncryption"] = s.sse
            if s.sse_kms_key_id:
                out["SSEKMSKeyId"] = s.sse_kms_key_id
        return out

    # ------------------------------------------------------------ streams

    async def begin(self, stream: Stream) -> SinkWriter:
        return S3Writer(self, stream)

    async def resume(self, stream: Stream, checkpoint: dict[str, Any]) -> SinkWriter:
        state = parse_state(checkpoint, recording_id=stream.id)
        if state.bucket != self.settings.bucket:
            raise SinkError(f"recording {stream.id}: checkpoint is for bucket {state.bucket!r}, the sink now writes "
                            f"to {self.settings.bucket!r}", reason="bad-checkpoint")
        listed: dict[int, dict[str, Any]] = {}
        if state.upload_id is not None:
            listed = await trio.to_thread.run_sync(self._list_parts, stream, state)
        return S3Writer(self, stream, state=state, listed=listed)

    def _list_parts(self, stream: Stream, state: ResumeState) -> dict[int, dict[str, Any]]:
        """The parts S3 holds for the checkpoint's upload; checks the checkpoint's parts are among them.

        :raises SinkError: ``bad-checkpoint`` when the upload is gone or lacks a checkpointed part.
        """
        where = f"recording {stream.id}: multipart upload of s3://{state.bucket}/{state.key}"
        listed: dict[int, dict[str, Any]] = {}
        try:
            paginator = self.client.get_paginator("list_parts")
            for page in paginator.paginate(Bucket=state.bucket, Key=state.key, UploadId=state.upload_id):
                for part in page.get("Parts", []):
                    listed[int(part["PartNumber"])] = part
                if len(listed) > MAX_PARTS:
                    break
        except s3.ERRORS as exc:
            raise SinkError(f"{where} cannot be continued: {s3.describe(exc)}", reason="bad-checkpoint") from None
        for part in state.parts:
            held = listed.get(part.number)
            if held is None or int(held.get("Size", -1)) != part.size:
                raise SinkError(f"{where}: part {part.number} of the checkpoint is not stored", reason="bad-checkpoint")
        return listed

    def replay(self, checkpoint: dict[str, Any]) -> Iterator[bytes]:
        raise NotImplementedError("an S3 multipart upload cannot be read back; resumed writers start at byte 0")

    def discard(self, checkpoint: dict[str, Any]) -> None:
        """Abort the checkpoint's upload (superseded: its stream starts afresh)."""
        try:
            state = parse_state(checkpoint, recording_id="?")
        except SinkError:
            return
        if state.upload_id and state.key and state.bucket == self.settings.bucket:
            s3.abort_upload(self.client, state.bucket, self.settings.prefix, state.key, state.upload_id)

    def cleanup_orphans(self, checkpoints: list[dict[str, Any]]) -> list[str]:
        """Abort the uploads of this pipeline a crash left open, except those the checkpoints hold.

        Workers on several machines (or processes) may share a pipeline and its bucket: an
        upload no checkpoint holds yet may be another worker's, just created. So only uploads
        whose creating process on this host is gone, or older than
        :data:`ORPHAN_GRACE_SECONDS`, are aborted.
        """
        held = {cp.get("upload_id") for cp in checkpoints if isinstance(cp, dict)}
        removed = []
        now = time.time()
        try:
            for entry in s3.journal_entries(self.client, self.settings.bucket, self.settings.prefix):
                if entry.pipeline != self.context.pipeline or entry.upload_id in held:
                    continue
                if not entry.abandoned(now, ORPHAN_GRACE_SECONDS):
                    continue
                s3.abort_upload(self.client, entry.bucket, self.settings.prefix, entry.key, entry.upload_id)
                removed.append(f"s3://{entry.bucket}/{entry.key} (upload {entry.upload_id})")
        except (*s3.ERRORS, s3.S3Unavailable) as exc:  # the preflight in start() reports it clearly
            log.warning("s3 sink: could not clean up stale uploads in bucket %s: %s", self.settings.bucket,
                        s3.describe(exc))
        return removed
