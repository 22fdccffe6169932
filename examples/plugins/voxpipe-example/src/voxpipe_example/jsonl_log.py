"""The ``jsonl-log`` sink: one JSON line per recording's outcome, after it was stored (or not)."""

import json
from pathlib import Path

import trio

from voxpipe.components import Sink, SinkWriter
from voxpipe.settings import Settings, setting


class JsonlLogSettings(Settings):
    path: Path = setting(description="JSON Lines file appended to (created if missing).", example="./outcomes.jsonl")


class JsonlLogSink(Sink):
    """Append one JSON line per recording: where it was stored, its SHA-256, or why it failed."""

    type = "jsonl-log"
    Settings = JsonlLogSettings
    announces = True  # committed after every storing sink, so result.stored is complete

    def __init__(self, settings, context):
        super().__init__(settings, context)  # no I/O here: the file is opened in start()
        self.file = None
        self.lock = trio.Lock()  # many streams finish concurrently

    async def start(self, nursery):
        def open_log():
            self.settings.path.parent.mkdir(parents=True, exist_ok=True)
            return open(self.settings.path, "a", encoding="utf-8")

        self.file = await trio.to_thread.run_sync(open_log)

    async def aclose(self):  # idempotent
        if self.file is not None:
            file, self.file = self.file, None
            await trio.to_thread.run_sync(file.close)

    async def begin(self, stream):
        return JsonlLogWriter(self)

    async def append(self, record):
        line = json.dumps(record, sort_keys=True) + "\n"
        async with self.lock:
            await trio.to_thread.run_sync(lambda: (self.file.write(line), self.file.flush()))


class JsonlLogWriter(SinkWriter):
    def __init__(self, sink):
        self.sink = sink

    async def write(self, chunk):
        pass  # an announcing sink receives the bytes too, but keeps nothing

    async def commit(self, result):
        await self.sink.append({
            "id": result.id, "status": "ok", "bytes": result.bytes,
            "sha256": result.digests.get("sha256"),  # when a sha256 verifier ran
            "format": result.metadata.get("format"),
            "stored": [entry["path"] for entry in result.stored if "path" in entry],
        })
        return None

    async def abort(self, result):
        if not result.retrying:  # the engine will try again: only the final outcome is logged
            await self.sink.append({"id": result.id, "status": "failed", "reason": result.reason,
                                    "message": result.message})
