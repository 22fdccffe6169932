"""Components a third party might write, used by the engine tests.

They are registered through the plugin manager in the tests (``pm.register``), exactly
as an installed plugin's module would be through its entry point.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

import trio

from voxpipe import hookimpl
from voxpipe.components import Sink, SinkWriter, Source, Transform, TransformRun, Verifier, VerifierRun
from voxpipe.errors import StreamError, StreamRestart, VerificationError
from voxpipe.model import Chunk, StreamSpec, Verdict
from voxpipe.settings import Settings, setting


def pattern(recording_id: str, size: int) -> bytes:
    """Deterministic pseudo-random content for a recording id."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{recording_id}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


class MemorySettings(Settings):
    ids: list[str] = setting(description="Recording ids.")
    size: int = setting(100_000, description="Bytes per recording.")
    chunk: int = setting(10_000, description="Bytes per chunk.")
    fail: list[str] = setting([], description="Ids whose read fails half-way.")
    restart_once: list[str] = setting([], description="Ids that raise StreamRestart on the first attempt.")
    delay: float = setting(0.0, description="Seconds to sleep per chunk.")
    repeat: bool = setting(False, description="Repeat one chunk-sized block (fast, for huge streams).")


class MemorySource(Source):
    """Test source: deterministic bytes per id."""

    type = "memory"
    Settings = MemorySettings

    def __init__(self, settings, context):
        super().__init__(settings, context)
        self.produced: dict[str, int] = {}
        self.max_ahead = 0

    async def discover(self):
        for rid in self.settings.ids:
            yield StreamSpec(rid, {"format": "bin"})

    async def read(self, stream):
        if self.settings.repeat:
            block = pattern(stream.id, self.settings.chunk)
            for offset in range(0, self.settings.size, len(block)):
                yield Chunk(offset, block[: self.settings.size - offset])
            return
        data = pattern(stream.id, self.settings.size)
        stream.metadata["sha256"] = hashlib.sha256(data).hexdigest()
        for offset in range(0, len(data), self.settings.chunk):
            if stream.id in self.settings.fail and offset >= len(data) // 2:
                raise StreamError(f"recording {stream.id}: simulated failure at byte {offset}", reason="simulated")
            if stream.id in self.settings.restart_once and stream.attempt == 1 and offset >= len(data) // 2:
                raise StreamRestart(f"recording {stream.id}: simulated ETag change", reason="etag-changed")
            if self.settings.delay:
                await trio.sleep(self.settings.delay)
            self.produced[stream.id] = offset + self.settings.chunk
            yield Chunk(offset, data[offset:offset + self.settings.chunk])


class CollectSettings(Settings):
    delay: float = setting(0.0, description="Seconds to sleep per chunk written.")


#: Everything CollectSink instances committed or aborted, by recording id.
COLLECTED: dict[str, dict[str, Any]] = {}


class CollectSink(Sink):
    """Test sink: keeps bytes in memory; records commit/abort."""

    type = "collect"
    Settings = CollectSettings

    async def begin(self, stream):
        return _CollectWriter(self, stream)


class _CollectWriter(SinkWriter):
    def __init__(self, sink, stream):
        self.sink, self.stream, self.data = sink, stream, bytearray()
        self.prepared = False

    async def write(self, chunk):
        assert chunk.offset == len(self.data)
        if self.sink.settings.delay:
            await trio.sleep(self.sink.settings.delay)
        self.data += chunk.data

    async def prepare(self):
        self.prepared = True

    async def commit(self, result) -> Mapping[str, Any]:
        assert self.prepared
        COLLECTED[self.stream.id] = {"state": "committed", "data": bytes(self.data), "result": result}
        return {"path": f"memory://{self.stream.id}"}

    async def abort(self, result):
        COLLECTED[self.stream.id] = {"state": "aborted", "data": bytes(self.data), "reason": result.reason}


class XorSettings(Settings):
    key: int = setting(0x5A, description="Byte to XOR with.", ge=0, le=255)


class XorTransform(Transform):
    """Test transform: XOR every byte."""

    type = "xor"
    Settings = XorSettings

    def begin(self, stream):
        key = self.settings.key

        class Run(TransformRun):
            def process(self, data):
                return bytes(b ^ key for b in data)

        return Run()


class RejectSettings(Settings):
    ids: list[str] = setting([], description="Ids to reject.")
    early: bool = setting(False, description="Reject at the first chunk instead of at the end.")


class RejectVerifier(Verifier):
    """Test verifier: rejects listed ids."""

    type = "reject"
    Settings = RejectSettings

    def begin(self, stream):
        settings = self.settings

        class Run(VerifierRun):
            def update(self, chunk):
                if settings.early and stream.id in settings.ids:
                    raise VerificationError(f"recording {stream.id}: rejected at byte {chunk.offset}",
                                            reason="rejected-early")

            def finish(self):
                if stream.id in settings.ids:
                    return Verdict("reject", False, "rejected", f"recording {stream.id}: rejected")
                return Verdict("reject", True)

        return Run()


class ThirdPartyPlugin:
    """A plugin object as a third-party package's module would provide."""

    @hookimpl
    def register_sources(self, register):
        register(MemorySource)

    @hookimpl
    def register_sinks(self, register):
        register(CollectSink)

    @hookimpl
    def register_transforms(self, register):
        register(XorTransform)

    @hookimpl
    def register_verifiers(self, register):
        register(RejectVerifier)
