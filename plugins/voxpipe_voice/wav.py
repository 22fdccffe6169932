"""The ``wav`` sink: each call as a PCM WAV file, never visible with a wrong header.

Samples are appended to a temporary file (``.<id>.<random>.part``) behind a 44-byte
RIFF/WAVE header written with placeholder sizes; ``prepare`` patches the RIFF and
``data`` sizes, fsyncs and hashes the file; ``commit`` renames it to ``{dir}/{name}``
and writes the manifest (both from :mod:`voxpipe.filestore`), so the header is valid
at every moment the file exists under its final name. The format (sample rate, channels,
16-bit) comes from ``stream.metadata`` (``sample_rate``, ``channels``, ``sample_width``),
as the ``websocket-voice`` source fills it. Writes are synchronous into a buffered file:
a 20 ms chunk is a few hundred bytes and a thread hop would cost more than the write.
WAVE format: Microsoft/IBM RIFF spec (1991), WAVE_FORMAT_PCM (tag 1).
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import Any

import trio

from voxpipe import naming
from voxpipe.atomic import temp_path_for
from voxpipe.errors import SinkError
from voxpipe.filestore import FileSinkSettings, FileStoreSink, FileWriter
from voxpipe.model import Chunk, Stream
from voxpipe.settings import setting

#: Bytes of the canonical PCM WAV header (RIFF + fmt (16) + data headers).
HEADER_BYTES = 44
#: Largest data chunk a RIFF file can describe (its 32-bit size field, less the header).
MAX_DATA_BYTES = 0xFFFFFFFF - (HEADER_BYTES - 8)
#: Buffer of the temporary file (bytes): many 20 ms frames per write(2).
WRITE_BUFFER_BYTES = 64 * 1024
WAVE_FORMAT_PCM = 1


def wav_header(data_bytes: int, sample_rate: int, channels: int = 1, sample_width: int = 2) -> bytes:
    """The 44-byte header of a PCM WAV file holding ``data_bytes`` bytes of samples.

    :raises ValueError: a parameter out of range, or ``data_bytes`` too large for RIFF.
    """
    if not 0 <= data_bytes <= MAX_DATA_BYTES:
        raise ValueError(f"{data_bytes} bytes of samples do not fit a RIFF file (max {MAX_DATA_BYTES})")
    if not 1 <= channels <= 16 or sample_width not in (1, 2, 3, 4) or not 1 <= sample_rate <= 384_000:
        raise ValueError(f"unsupported WAV format: {sample_rate} Hz, {channels} channels, {sample_width} bytes/sample")
    block_align = channels * sample_width
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", HEADER_BYTES - 8 + data_bytes, b"WAVE", b"fmt ", 16,
                       WAVE_FORMAT_PCM, channels, sample_rate, sample_rate * block_align, block_align,
                       sample_width * 8, b"data", data_bytes)


class WavSinkSettings(FileSinkSettings):
    name: str = setting("{recording_id}.wav", description="File name template, relative to `dir`; fields: "
                        + ", ".join("`{%s}`" % f for f in naming.TEMPLATE_FIELDS) + " (`{format}` is `wav`).",
                        example="{date}/{recording_id}.wav")


class WavSink(FileStoreSink):
    """Store each call as a PCM WAV file (header valid whenever visible), with a JSON manifest."""

    type = "wav"
    Settings = WavSinkSettings

    async def begin(self, stream: Stream) -> "_WavWriter":
        directory = Path(self.settings.dir)
        fmt = _format(stream)
        await trio.to_thread.run_sync(lambda: directory.mkdir(parents=True, exist_ok=True))
        temp = temp_path_for(directory / naming.temp_stem(stream.id))
        f = open(temp, "xb", buffering=WRITE_BUFFER_BYTES)
        f.write(wav_header(0, *fmt))  # placeholder sizes; only ever seen under the temporary name
        return _WavWriter(self, stream, directory, self.compressor(), temp, f)

    async def resume(self, stream: Stream, checkpoint: dict[str, Any]) -> "_WavWriter":
        raise SinkError(f"call {stream.id}: the wav sink does not resume", reason="bad-checkpoint")


def _format(stream: Stream) -> tuple[int, int, int]:
    meta = stream.metadata
    rate, channels, width = meta.get("sample_rate", 8000), meta.get("channels", 1), meta.get("sample_width", 2)
    for name, value in (("sample_rate", rate), ("channels", channels), ("sample_width", width)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise SinkError(f"call {stream.id}: metadata {name}={value!r} is not an integer", reason="bad-format")
    try:
        wav_header(0, rate, channels, width)
    except ValueError as exc:
        raise SinkError(f"call {stream.id}: {exc}", reason="bad-format") from None
    return rate, channels, width


class _WavWriter(FileWriter):
    stored_format = "wav"

    async def write(self, chunk: Chunk) -> None:
        self.file.write(chunk.data)
        self.raw_bytes += len(chunk.data)
        if self.raw_bytes > MAX_DATA_BYTES:
            raise SinkError(f"call {self.stream.id}: {self.raw_bytes} bytes of samples exceed the RIFF limit "
                            f"({MAX_DATA_BYTES})", reason="too-large")

    async def checkpoint(self) -> None:
        return None

    def _prepare_sync(self) -> None:
        rate, channels, width = _format(self.stream)
        if self.raw_bytes % (channels * width):
            raise SinkError(f"call {self.stream.id}: {self.raw_bytes} bytes of samples is not a whole number of "
                            f"{channels * width}-byte sample frames", reason="partial-sample")
        header = wav_header(self.raw_bytes, rate, channels, width)
        f = self.file
        f.flush()
        f.seek(0)
        f.write(header)
        f.flush()
        os.fsync(f.fileno())
        f.close()
        digest = hashlib.sha256()
        with open(self.temp, "rb") as check:
            while block := check.read(1 << 20):
                digest.update(block)
        self.stored_hash = digest
        self.stored_bytes = HEADER_BYTES + self.raw_bytes
