"""The ``dated`` sink: each recording stored as ``ROOT/YYYY-MM-DD/<id>.<format>``."""

import os
import time
from pathlib import Path

import trio

from voxpipe.atomic import fsync_dir, temp_path_for
from voxpipe.components import Sink, SinkWriter
from voxpipe.errors import SinkError
from voxpipe.naming import SAFE_ID
from voxpipe.settings import Settings, setting


class DatedSinkSettings(Settings):
    root: Path = setting(description="Directory that receives one sub-directory per day.", example="./by-day")
    fsync: bool = setting(True, description="fsync each file (and its directory) before it becomes visible.")


class DatedSink(Sink):
    """Store each recording under ROOT/YYYY-MM-DD/ (the day the call started)."""

    type = "dated"  # what users write as `type:` in YAML
    Settings = DatedSinkSettings

    def archive_dir(self):
        return self.settings.root  # the pipeline's state defaults to ROOT/.voxpipe/<pipeline>

    async def check_connect(self):
        from voxpipe.connectcheck import check_writable_dir  # `voxpipe check --connect`

        return [await trio.to_thread.run_sync(check_writable_dir, self.settings.root)]

    async def begin(self, stream):
        # At begin, stream.metadata and stream.facts hold only what discovery knew; the source
        # fills in format and dates as it reads. So write to a temporary file in ROOT and
        # choose the final name at commit.
        root = self.settings.root
        if not SAFE_ID.match(stream.id):  # ids come from a remote platform: never a path
            raise SinkError(f"recording id {stream.id!r} cannot be a file name", reason="bad-id")

        def open_temp():  # blocking file-system calls run in a worker thread, never on the event loop
            root.mkdir(parents=True, exist_ok=True)
            temp = temp_path_for(root / stream.id)  # .<id>.<random>.part: hidden, same file system
            return temp, open(temp, "xb")

        temp, file = await trio.to_thread.run_sync(open_temp)
        return DatedWriter(self.settings, stream, temp, file)


def final_path(root, stream):
    """ROOT/YYYY-MM-DD/<id>.<format>: the day the call started when the platform said,
    else the day it was received."""
    started = stream.facts.started_at
    day = started.strftime("%Y-%m-%d") if started else time.strftime("%Y-%m-%d", time.gmtime(stream.started_at))
    return root / day / f"{stream.id}.{stream.metadata.get('format') or 'bin'}"


class DatedWriter(SinkWriter):
    def __init__(self, settings, stream, temp, file):
        self.settings, self.stream, self.temp, self.file = settings, stream, temp, file

    async def write(self, chunk):
        await trio.to_thread.run_sync(self.file.write, chunk.data)

    async def prepare(self):
        def sync():
            self.file.flush()
            if self.settings.fsync:
                os.fsync(self.file.fileno())
            self.file.close()

        await trio.to_thread.run_sync(sync)

    async def commit(self, result):
        final = final_path(self.settings.root, self.stream)

        def publish():
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                raise SinkError(f"recording {self.stream.id}: {final} already exists", reason="exists")
            os.replace(self.temp, final)  # visible under its final name only now
            if self.settings.fsync:
                fsync_dir(final.parent)
                fsync_dir(self.temp.parent)

        await trio.to_thread.run_sync(publish)
        return {"path": str(final)}  # recorded in result.stored (with "sink": "dated")

    async def abort(self, result):  # idempotent; also called after prepare
        def discard():
            self.file.close()
            self.temp.unlink(missing_ok=True)

        await trio.to_thread.run_sync(discard)
