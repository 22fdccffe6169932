"""The ``s3`` sink's per-stream writer: parts, checkpoints, conditional completion, read-back, sidecar.

See :mod:`voxpipe_s3.sink` for the whole protocol. Every method ending in ``_sync`` runs
in a worker thread (boto3 is synchronous).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Mapping

import trio

from voxpipe.compression import Compressor, GzipCompressor
from voxpipe.components import SinkWriter
from voxpipe.errors import SinkError
from voxpipe.manifest import MAX_MANIFEST_BYTES, build_manifest, dumps
from voxpipe.model import Chunk, Stream, StreamResult

from . import client as s3
from .keys import Names, object_names, retain_until
from .parts import (MAX_PARTS, Part, PartCutter, ResumeState, b64_sha256, checkpoint_state, checksum_matches,
                    composite_sha256, plan_part_size)
from .settings import S3SinkSettings

if TYPE_CHECKING:  # pragma: no cover
    from .sink import S3Sink

#: Content types by stored format.
CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "mp4": "video/mp4", "m4a": "audio/mp4",
                 "ogg": "audio/ogg", "opus": "audio/ogg", "webm": "audio/webm", "flac": "audio/flac"}
#: Retention shorter than this at upload time is not applied (S3 refuses a retain-until date in the past).
MIN_REMAINING_RETENTION = timedelta(minutes=1)
#: Object metadata key holding the stored bytes' SHA-256 (hex) on single-PUT objects.
SHA256_METADATA = "voxpipe-sha256"



class S3Writer(SinkWriter):
    """One stream's upload (see the module docstring)."""

    def __init__(self, sink: "S3Sink", stream: Stream, *, state: ResumeState | None = None,
                 listed: Mapping[int, Mapping[str, Any]] | None = None):
        self.sink = sink
        self.settings: S3SinkSettings = sink.settings
        self.stream = stream
        self.bucket = self.settings.bucket
        self.cutter: PartCutter | None = None
        self.description: str | None = None  # the manifest's compression
        self.suffix = ""
        self.names: Names | None = None
        self.upload_id: str | None = None
        self.parts: list[Part] = []
        self.stored_hash = hashlib.sha256()
        self.stored_bytes = 0
        self.single: bytearray | None = None  # a recording smaller than one part: one PUT at commit
        self.uploaded = self.reused = 0
        self.lock: tuple[str, datetime] | None = None
        self.lock_note: str | None = None
        self.done = False
        self._state = state
        self._known: dict[int, Part] = {}
        self._listed: dict[int, Mapping[str, Any]] = {}
        if state is not None:
            self.resume_offset = 0  # the parts are recomputed from the re-read source, not re-uploaded
            self.upload_id = state.upload_id
            self._known = {p.number: p for p in state.parts}
            self._listed = {n: p for n, p in (listed or {}).items() if n not in self._known}

    # ------------------------------------------------------------ parts

    def _setup(self) -> None:
        metadata = self.stream.metadata
        state = self._state
        if state is not None:
            gzip = state.compression is not None
            part_size = state.part_size
        else:
            gzip = self.settings.gzip_for(str(metadata.get("format") or ""))
            part_size = plan_part_size(self.settings.part_size, metadata.get("size"))
        compressor = GzipCompressor(self.settings.level, self.settings.compressor_engine()) if gzip else Compressor()
        if state is not None and compressor.description != state.compression:
            raise SinkError(f"recording {self.stream.id}: the checkpoint's upload was compressed as "
                            f"{state.compression}, the sink now compresses as {compressor.description}",
                            reason="resume-mismatch", retryable=True)
        self.description, self.suffix = compressor.description, compressor.suffix
        self.cutter = PartCutter(compressor, part_size)

    def _write_sync(self, data: bytes) -> None:
        if self.cutter is None:
            self._setup()
        for part in self.cutter.feed(data):
            self._store_part(part)

    async def write(self, chunk: Chunk) -> None:
        await trio.to_thread.run_sync(self._write_sync, chunk.data)

    def _where(self) -> str:
        key = self.names.key if self.names else "?"
        return f"recording {self.stream.id}: s3://{self.bucket}/{key}"

    def _resolve_names(self) -> Names:
        if self.names is None:
            s, stream = self.settings, self.stream
            names = object_names(layout=s.layout, prefix=s.prefix, template=s.key, recording_id=stream.id,
                                 metadata=stream.metadata, source=stream.source, pipeline=stream.pipeline,
                                 received_at=stream.started_at, facts=stream.facts, suffix=self.suffix)
            if self._state is not None and self._state.key and self._state.key != names.key:
                # the upload exists under the checkpoint's key: finish it there
                names = Names(self._state.key, self._state.sidecar or names.sidecar)
            self.names = names
            if s.object_lock is not None:
                until = retain_until(stream.facts, stream.metadata, stream.started_at, s.object_lock.days)
                until = until.replace(microsecond=0)
                if until - datetime.now(timezone.utc) >= MIN_REMAINING_RETENTION:
                    self.lock = (s.object_lock.mode, until)
                else:
                    self.lock_note = f"retention ended {until.isoformat()} (before the upload): not applied"
        return self.names

    def _lock_options(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.lock is not None:
            out["ObjectLockMode"], out["ObjectLockRetainUntilDate"] = self.lock
        if self.settings.legal_hold:
            out["ObjectLockLegalHoldStatus"] = "ON"
        return out

    def _object_options(self) -> dict[str, Any]:
        fmt = str(self.stream.metadata.get("format") or "").lower()
        content_type = "application/gzip" if self.suffix else CONTENT_TYPES.get(fmt, "application/octet-stream")
        metadata = {"voxpipe-recording-id": self.stream.id, "voxpipe-pipeline": self.stream.pipeline,
                    "voxpipe-source": self.stream.source}
        return {"ContentType": content_type, "Metadata": metadata, **self.sink.write_options(), **self._lock_options()}

    def _create_sync(self) -> None:
        names = self._resolve_names()
        client = self.sink.client
        try:
            # Object Lock arguments go on CreateMultipartUpload, as S3 documents; commit
            # checks the completed object and applies them afterwards where a store ignored them
            response = client.create_multipart_upload(Bucket=self.bucket, Key=names.key, ChecksumAlgorithm="SHA256",
                                                      **self._object_options())
        except s3.ERRORS as exc:
            raise s3.sink_error(exc, f"{self._where()}: CreateMultipartUpload failed", retryable=True) from None
        self.upload_id = response["UploadId"]
        s3.journal_add(client, self.bucket, self.settings.prefix, key=names.key, upload_id=self.upload_id,
                       pipeline=self.stream.pipeline, recording_id=self.stream.id)

    def _listed_matches(self, listed: Mapping[str, Any], data: bytearray, checksum: str) -> bool:
        """Whether a part ListParts reported (uploaded after the last checkpoint) holds ``data``."""
        if int(listed.get("Size", -1)) != len(data):
            return False
        if listed.get("ChecksumSHA256"):
            return listed["ChecksumSHA256"] == checksum
        if self.settings.sse == "aws:kms":
            return False  # the ETag of an SSE-KMS part is not its MD5: unprovable, upload it again
        return str(listed.get("ETag", "")).strip('"') == hashlib.md5(data, usedforsecurity=False).hexdigest()

    def _store_part(self, data: bytearray) -> None:
        number = len(self.parts) + 1
        if number > MAX_PARTS:
            raise SinkError(f"{self._where()}: more than {MAX_PARTS} parts of {self.cutter.part_size} bytes; raise "
                            "part_size", reason="too-many-parts")
        checksum = b64_sha256(data)
        self.stored_hash.update(data)
        self.stored_bytes += len(data)
        known = self._known.get(number)
        if known is not None:
            if known.size != len(data) or known.sha256 != checksum:
                raise SinkError(f"{self._where()}: part {number} as stored ({known.size} bytes, SHA-256 {known.sha256}) "
                                f"differs from the source's bytes on this run ({len(data)} bytes, SHA-256 {checksum}); "
                                "the upload is abandoned and the recording starts again",
                                reason="resume-mismatch", retryable=True)
            self.parts.append(known)
            self.reused += 1
            return
        listed = self._listed.get(number)
        if listed is not None and self._listed_matches(listed, data, checksum):
            self.parts.append(Part(number, len(data), checksum, str(listed["ETag"])))
            self.reused += 1
            return
        if self.upload_id is None:
            self._create_sync()
        self._resolve_names()  # a resumed upload: the checkpoint's key
        try:
            response = self.sink.client.upload_part(Bucket=self.bucket, Key=self.names.key, UploadId=self.upload_id,
                                                    PartNumber=number, Body=data, ChecksumAlgorithm="SHA256",
                                                    ChecksumSHA256=checksum)
        except s3.ERRORS as exc:
            raise s3.sink_error(exc, f"{self._where()}: UploadPart {number} failed", retryable=True) from None
        returned = response.get("ChecksumSHA256")
        if returned and returned != checksum:
            raise SinkError(f"{self._where()}: part {number} stored with SHA-256 {returned}, sent {checksum}",
                            reason="checksum-mismatch", retryable=True)
        self.parts.append(Part(number, len(data), checksum, str(response["ETag"])))
        self.uploaded += 1

    async def checkpoint(self) -> dict[str, Any]:
        # Uploaded parts are durable in S3 already; bytes still in the part buffer are not,
        # which is why a resumed writer starts at byte 0 (see S3Sink.resume).
        names = self.names
        if names is None and self._state is not None and self._state.key:
            names = Names(self._state.key, self._state.sidecar or "")
        # a resumed writer still recomputing keeps the earlier checkpoint's parts beyond its own
        parts = self.parts + [p for n, p in sorted(self._known.items()) if n > len(self.parts)]
        state = checkpoint_state(bucket=self.bucket, key=names.key if names else None,
                                 sidecar=names.sidecar if names else None, upload_id=self.upload_id,
                                 part_size=self.cutter.part_size if self.cutter else self.settings.part_size,
                                 compression=self.description if self.cutter else None, parts=parts,
                                 raw_offset=self.cutter.raw_bytes if self.cutter else 0)
        if self._state is not None and self.cutter is None:
            state["compression"], state["part_size"] = self._state.compression, self._state.part_size
        return state

    def _prepare_sync(self) -> None:
        if self.cutter is None:
            self._setup()
        last = self.cutter.finish()
        if self.upload_id is None and not self.parts:
            self._resolve_names()
            self.single = last
            self.stored_hash.update(last)
            self.stored_bytes += len(last)
        elif last or not self.parts:
            self._store_part(last)
        if self._state is not None and len(self.parts) < len(self._known):
            raise SinkError(f"{self._where()}: the source gave fewer bytes than the checkpoint's {len(self._known)} "
                            "parts hold", reason="resume-mismatch", retryable=True)

    async def prepare(self) -> None:
        await trio.to_thread.run_sync(self._prepare_sync)

    # ------------------------------------------------------------ commit

    @property
    def expected_checksum(self) -> str:
        if self.single is not None:
            return b64_sha256(self.single)
        return composite_sha256([p.sha256 for p in self.parts])

    async def commit(self, result: StreamResult) -> Mapping[str, Any]:
        stored = await trio.to_thread.run_sync(self._commit_sync, result)
        self.done = True
        return stored

    def _commit_sync(self, result: StreamResult) -> dict[str, Any]:
        names = self._resolve_names()
        client = self.sink.client
        stored_sha = self.stored_hash.hexdigest()
        existing = False
        try:
            if self.single is not None:
                options = self._object_options()
                options["Metadata"][SHA256_METADATA] = stored_sha
                response = client.put_object(Bucket=self.bucket, Key=names.key, Body=self.single,
                                             ChecksumAlgorithm="SHA256", ChecksumSHA256=self.expected_checksum,
                                             IfNoneMatch="*", **options)
            else:
                response = client.complete_multipart_upload(
                    Bucket=self.bucket, Key=names.key, UploadId=self.upload_id, IfNoneMatch="*",
                    MultipartUpload={"Parts": [p.completed() for p in self.parts]})
        except s3.ERRORS as exc:
            if s3.http_status(exc) != 412 and s3.error_code(exc) != "PreconditionFailed":
                raise s3.sink_error(exc, f"{self._where()}: storing the object failed", retryable=True) from None
            # the key exists: the upload stays open after a 412, so abort it, then compare
            self._abort_sync()
            if not self._existing_is_same(stored_sha):
                raise SinkError(f"{self._where()} already exists with different content (SHA-256 of this "
                                f"recording's stored bytes: {stored_sha}); nothing was changed", reason="exists") from None
            existing, response = True, {}
        version_id = response.get("VersionId")
        if version_id == "null":  # an unversioned bucket (S3 answers "null" for its only version)
            version_id = None
        if not existing:
            version_id = self._verify_sync(version_id) or version_id
            if self.upload_id is not None:
                s3.journal_remove(client, self.bucket, self.settings.prefix, self.upload_id)
        stored: dict[str, Any] = {"url": f"s3://{self.bucket}/{names.key}", "bucket": self.bucket, "key": names.key,
                                  "sha256": stored_sha, "bytes": self.stored_bytes,
                                  "parts": len(self.parts) or 1, "parts_uploaded": self.uploaded,
                                  "parts_reused": self.reused, "already_stored": existing}
        if version_id:
            stored["version_id"] = version_id
        if self.settings.manifest:
            self._put_sidecar(result, names, stored_sha, version_id)
            stored["manifest"] = f"s3://{self.bucket}/{names.sidecar}"
        return stored

    def _existing_is_same(self, stored_sha: str) -> bool:
        """Whether the object already under the key holds exactly the bytes this writer stored.

        Proof, in order: its sidecar's ``stored_sha256``; its ``voxpipe-sha256`` metadata;
        its SHA-256 checksum (composite for multipart objects) with its size.
        """
        client, names = self.sink.client, self.names
        try:
            head = client.head_object(Bucket=self.bucket, Key=names.key, ChecksumMode="ENABLED")
        except s3.ERRORS as exc:
            raise s3.sink_error(exc, f"{self._where()}: reading the existing object failed", retryable=True) from None
        if int(head.get("ContentLength", -1)) != self.stored_bytes:
            return False
        try:
            body = client.get_object(Bucket=self.bucket, Key=names.sidecar)["Body"].read(MAX_MANIFEST_BYTES)
            sha = json.loads(body).get("stored_sha256")
            if isinstance(sha, str):
                return sha == stored_sha
        except (*s3.ERRORS, ValueError, AttributeError):  # no sidecar (yet): try the object itself
            pass
        sha = head.get("Metadata", {}).get(SHA256_METADATA)
        if sha:
            return sha == stored_sha
        returned = head.get("ChecksumSHA256")
        return bool(returned) and checksum_matches(returned, self.expected_checksum)

    def _verify_sync(self, version_id: str | None) -> str | None:
        """Read the completed object back: size, SHA-256 checksum, Object Lock, legal hold.

        :raises SinkError: ``verify-failed`` naming what differs (the object is deleted when
            its lock allows; the message says when it does not).
        """
        client = self.sink.client
        version = {"VersionId": version_id} if version_id else {}
        try:
            head = client.head_object(Bucket=self.bucket, Key=self.names.key, ChecksumMode="ENABLED", **version)
        except s3.ERRORS as exc:
            raise s3.sink_error(exc, f"{self._where()}: stored, but reading it back failed", reason="verify-failed",
                                retryable=True) from None
        problems = []
        if int(head.get("ContentLength", -1)) != self.stored_bytes:
            problems.append(f"size {head.get('ContentLength')} bytes, sent {self.stored_bytes}")
        returned = head.get("ChecksumSHA256")
        if not returned:
            problems.append("no SHA-256 checksum returned")
        elif not checksum_matches(returned, self.expected_checksum):
            problems.append(f"SHA-256 checksum {returned}, sent {self.expected_checksum}")
        if not problems and (self.lock is not None or self.settings.legal_hold):
            problems += self._ensure_lock(head, version)
        if problems:
            self._remove_bad_version(version_id, problems)
        return version_id

    def _lock_problems(self, head: Mapping[str, Any]) -> list[str]:
        problems = []
        if self.lock is not None:
            mode, until = self.lock
            got_until = head.get("ObjectLockRetainUntilDate")
            if head.get("ObjectLockMode") != mode or not isinstance(got_until, datetime) or \
                    abs((got_until - until).total_seconds()) >= 1:
                problems.append(f"Object Lock {head.get('ObjectLockMode')} until {got_until}, asked {mode} until "
                                f"{until.isoformat()}")
        if self.settings.legal_hold and head.get("ObjectLockLegalHoldStatus") != "ON":
            problems.append(f"legal hold {head.get('ObjectLockLegalHoldStatus') or 'OFF'}, asked ON")
        return problems

    def _ensure_lock(self, head: Mapping[str, Any], version: Mapping[str, Any]) -> list[str]:
        """Apply retention and legal hold with PutObjectRetention/PutObjectLegalHold when the
        store did not apply them at upload (moto ignores them on CreateMultipartUpload),
        then read them back; returns what is still not as asked."""
        if not self._lock_problems(head):
            return []
        client = self.sink.client
        try:
            if self.lock is not None:
                mode, until = self.lock
                client.put_object_retention(Bucket=self.bucket, Key=self.names.key, **version,
                                            Retention={"Mode": mode, "RetainUntilDate": until},
                                            ChecksumAlgorithm="SHA256")
            if self.settings.legal_hold:
                client.put_object_legal_hold(Bucket=self.bucket, Key=self.names.key, **version,
                                             LegalHold={"Status": "ON"}, ChecksumAlgorithm="SHA256")
        except s3.ERRORS as exc:
            return [f"Object Lock could not be applied: {s3.describe(exc)}"]
        head = client.head_object(Bucket=self.bucket, Key=self.names.key, **version)
        return self._lock_problems(head)

    def _remove_bad_version(self, version_id: str | None, problems: list[str]) -> None:
        what = f"{self._where()} failed verification after upload: {'; '.join(problems)}"
        try:
            self.sink.client.delete_object(Bucket=self.bucket, Key=self.names.key,
                                           **({"VersionId": version_id} if version_id else {}))
        except s3.ERRORS as exc:
            raise SinkError(f"{what}; the object could not be deleted ({s3.describe(exc)}): remove it by hand",
                            reason="verify-failed") from None
        raise SinkError(f"{what}; the object was deleted", reason="verify-failed")

    def _put_sidecar(self, result: StreamResult, names: Names, stored_sha: str, version_id: str | None) -> None:
        fmt = self.stream.metadata.get("format")
        extra: dict[str, Any] = {"bucket": self.bucket, "key": names.key, "checksum_sha256": self.expected_checksum,
                                 "parts": len(self.parts) or 1}
        if version_id:
            extra["version_id"] = version_id
        # What was applied at upload. Not the manifest's top-level "legal_hold" (a directory
        # archive's hold): in a bucket, S3's own legal hold state is what retention reads.
        lock: dict[str, Any] = {}
        if self.lock is not None:
            lock = {"mode": self.lock[0], "retain_until": self.lock[1].strftime("%Y-%m-%dT%H:%M:%SZ")}
        elif self.lock_note:
            lock = {"mode": None, "note": self.lock_note}
        if self.settings.legal_hold:
            lock["legal_hold"] = "ON"
        if lock:
            extra["object_lock"] = lock
        manifest = build_manifest(stream=self.stream, result=result, stored_name=names.key.rsplit("/", 1)[-1],
                                  stored_size=self.stored_bytes, stored_sha256=stored_sha,
                                  compression=self.description, fmt=str(fmt).lower() if fmt else None, extra=extra)
        body = dumps(manifest)
        try:
            self.sink.client.put_object(Bucket=self.bucket, Key=names.sidecar, Body=body, IfNoneMatch="*",
                                        ChecksumAlgorithm="SHA256", ChecksumSHA256=b64_sha256(body),
                                        ContentType="application/json",
                                        **self.sink.write_options(), **self._lock_options())
        except s3.ERRORS as exc:
            if s3.http_status(exc) == 412 or s3.error_code(exc) == "PreconditionFailed":
                return  # written by the run that stored the object: kept as it is
            raise s3.sink_error(exc, f"{self._where()}: the object is stored, its sidecar {names.sidecar} "
                                "could not be written", retryable=True) from None

    # ------------------------------------------------------------ failure

    def _abort_sync(self) -> None:
        if self.upload_id is not None:
            upload_id, self.upload_id = self.upload_id, None
            s3.abort_upload(self.sink.client, self.bucket, self.settings.prefix, self.names.key if self.names
                            else self._state.key, upload_id)

    async def abort(self, result: StreamResult) -> None:
        if self.done:
            return
        self.done = True
        self.single = None
        await trio.to_thread.run_sync(self._abort_sync)

    async def suspend(self, result: StreamResult) -> None:
        """Keep the upload: the next run continues it from the last checkpoint's parts."""
        self.done = True
