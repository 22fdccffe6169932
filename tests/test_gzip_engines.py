"""The gzip sink's compressors (zlib, igzip through python-isal) write plain gzip, also across checkpoints."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import random
import shutil
import subprocess
import textwrap

import pytest
import trio

from voxpipe.components import PipelineContext
from voxpipe.config import parse_config
from voxpipe.errors import ConfigError
from voxpipe.model import Chunk, Stream, StreamResult, StreamSpec
from voxpipe.plugins import get_registry
from voxpipe import compression as sinks
from voxpipe.compression import ISAL_LEVELS, GzipCompressor as _Gzip
from voxpipe_files.sinks import FileSink, FileSinkSettings, GzipSink, GzipSinkSettings

HAVE_ISAL = sinks.isal_zlib_module() is not None
ENGINES = ["zlib", pytest.param("isal", marks=pytest.mark.skipif(not HAVE_ISAL, reason="python-isal not installed"))]
needs_isal = pytest.mark.skipif(not HAVE_ISAL, reason="python-isal not installed")


@functools.lru_cache(maxsize=None)
def audio_like(n: int, seed: int = 0) -> bytes:
    """Bytes that compress like 8 kHz PCM16 speech (neither zeros nor white noise)."""
    rng = random.Random(seed)
    out = bytearray()
    value = 0
    while len(out) < n:
        value = int(value * 0.9 + rng.gauss(0, 900))
        out += max(-32768, min(32767, value)).to_bytes(2, "little", signed=True)
    return bytes(out[:n])


def gunzip_cli(data: bytes) -> bytes:
    if shutil.which("gzip") is None:
        pytest.skip("gzip is not on PATH")
    return subprocess.run(["gzip", "-d", "-c"], input=data, capture_output=True, check=True).stdout


def compress(gz: _Gzip, data: bytes, *, member_every: int | None, piece: int = 40_000) -> tuple[bytes, list[int]]:
    """Compress ``data`` in pieces, ending a member every ``member_every`` bytes; returns (file, member ends)."""
    out = io.BytesIO()
    ends = []
    for i in range(0, len(data), piece):
        out.write(gz.compress(data[i:i + piece]))
        if member_every and (i + piece) % member_every == 0:
            out.write(gz.end_member())
            ends.append(out.tell())
    out.write(gz.flush())
    return out.getvalue(), ends


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("level", [1, 3, 6, 9])
def test_output_is_plain_gzip_single_and_multi_member(engine, level):
    data = audio_like(300_000)
    for member_every in (None, 80_000):
        blob, ends = compress(_Gzip(level, engine), data, member_every=member_every)
        assert blob[:3] == b"\x1f\x8b\x08"
        assert gzip.decompress(blob) == data  # Python's gzip reads every member
        assert gunzip_cli(blob) == data       # and so does gzip(1)
        if member_every:
            assert len(ends) == 4  # at 80k, 160k, 240k and after the last piece (320k > 300k)
            # Each checkpoint boundary is the end of a complete gzip stream.
            assert gzip.decompress(blob[:ends[0]]) == data[:80_000]
            assert b"".join(_Gzip(level, "zlib").replay(io.BytesIO(blob), ends[1])) == data[:160_000]


@pytest.mark.parametrize("engine", ENGINES)
def test_description_records_engine_and_actual_level(engine):
    for level in range(1, 10):
        expected = ISAL_LEVELS[level] if engine == "isal" else level
        assert _Gzip(level, engine).description == f"gzip:{engine}:{expected}"
    assert [ISAL_LEVELS[level] for level in range(1, 10)] == [1, 2, 2, 3, 3, 3, 3, 3, 3]


@needs_isal
def test_isal_compresses_like_zlib():
    """igzip at its mapped level stays within a few per cent of zlib's size on audio-like bytes."""
    data = audio_like(300_000)
    for level in (1, 6):
        z = len(compress(_Gzip(level, "zlib"), data, member_every=None)[0])
        i = len(compress(_Gzip(level, "isal"), data, member_every=None)[0])
        assert i < z * 1.08, (level, i, z)


def test_engine_setting_auto_and_missing_isal(monkeypatch):
    auto = GzipSinkSettings(dir="x")
    assert auto.engine == "auto"
    assert auto.compressor_engine() == ("isal" if HAVE_ISAL else "zlib")
    assert GzipSinkSettings(dir="x", engine="zlib").compressor_engine() == "zlib"
    monkeypatch.setattr(sinks, "isal_zlib_module", lambda: None)
    assert GzipSinkSettings(dir="x").compressor_engine() == "zlib"
    text = textwrap.dedent("""
        pipelines:
          p:
            source: {type: cxone, api_base: "http://127.0.0.1:1", token_url: "http://127.0.0.1:1/t",
                     client_id: c, client_secret: s, recordings: ["1"]}
            sinks:
              - type: gzip
                dir: out
                engine: isal
        """)
    with pytest.raises(ConfigError) as info:
        parse_config(text, get_registry())
    problem = "\n".join(info.value.problems)
    assert "<string>:7: pipelines.p.sinks[0]: engine: isal needs python-isal" in problem
    with pytest.raises(ValueError, match="python-isal"):
        _Gzip(6, "isal")


def _stream(rid: str) -> Stream:
    return Stream(StreamSpec(rid, {"format": "wav"}), source="test", pipeline="p", audit=None)


def _result(rid: str, data: bytes) -> StreamResult:
    return StreamResult(id=rid, source="test", pipeline="p", ok=True, bytes=len(data),
                        digests={"sha256": hashlib.sha256(data).hexdigest()})


@pytest.mark.parametrize("first,second", [("zlib", "zlib"), pytest.param("zlib", "isal", marks=needs_isal),
                                          pytest.param("isal", "zlib", marks=needs_isal),
                                          pytest.param("isal", "isal", marks=needs_isal)])
def test_sink_checkpoint_resume_across_engines(tmp_path, first, second):
    """Write, checkpoint, 'crash', resume with a (possibly different) engine: one plain gzip file."""
    data = audio_like(600_000)
    half = 320_000

    def sink(engine: str) -> GzipSink:
        return GzipSink(GzipSinkSettings(dir=tmp_path / "out", level=6, engine=engine),
                        PipelineContext(pipeline="p", state_dir=tmp_path))

    async def main():
        s1 = sink(first)
        w1 = await s1.begin(_stream("r1"))
        for i in range(0, half, 50_000):
            await w1.write(Chunk(i, data[i:min(half, i + 50_000)]))
        entry = await w1.checkpoint()
        assert entry["raw_offset"] == half
        await w1.write(Chunk(half, data[half:half + 10_000]))  # after the checkpoint: lost in the crash
        await w1.suspend(StreamResult(id="r1", source="memory", pipeline="p", reason="interrupted"))

        s2 = sink(second)
        assert b"".join(s2.replay(entry)) == data[:half]
        w2 = await s2.resume(_stream("r1"), entry)
        for i in range(half, len(data), 70_000):
            await w2.write(Chunk(i, data[i:i + 70_000]))
        await w2.prepare()
        return await w2.commit(_result("r1", data))

    stored = trio.run(main)
    path = tmp_path / "out" / "r1.wav.gz"
    assert stored["path"] == str(path)
    blob = path.read_bytes()
    assert gzip.decompress(blob) == data and gunzip_cli(blob) == data
    manifest = json.loads((tmp_path / "out" / "r1.wav.gz.json").read_text())
    assert manifest["compression"] == f"gzip:{second}:{ISAL_LEVELS[6] if second == 'isal' else 6}"
    assert manifest["stored_sha256"] == hashlib.sha256(blob).hexdigest() == stored["sha256"]
    assert manifest["original_sha256"] == hashlib.sha256(data).hexdigest()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_file_sink_manifest_has_no_compression(tmp_path):
    data = audio_like(10_000)
    sink = FileSink(FileSinkSettings(dir=tmp_path), PipelineContext(pipeline="p", state_dir=tmp_path))

    async def main():
        w = await sink.begin(_stream("plain"))
        await w.write(Chunk(0, data))
        await w.prepare()
        await w.commit(_result("plain", data))

    trio.run(main)
    assert (tmp_path / "plain.wav").read_bytes() == data
    assert json.loads((tmp_path / "plain.wav.json").read_text())["compression"] is None


def test_no_empty_member_after_a_checkpoint_at_the_very_end():
    import gzip as gzip_module

    from voxpipe.compression import GzipCompressor as _Gzip

    z = _Gzip(6)
    out = z.compress(b"x" * 1000) + z.end_member() + z.flush()
    assert gzip_module.decompress(out) == b"x" * 1000
    z2 = _Gzip(6)
    one_member = z2.compress(b"x" * 1000) + z2.flush()
    assert len(out) == len(one_member)  # no trailing 20-byte empty member
    empty = _Gzip(6)
    assert gzip_module.decompress(empty.flush()) == b""  # an empty stream is still valid gzip
