"""``compress: auto``: already-compressed codecs stored (still plain gzip), PCM/G.711 WAV deflated;
hash once: a file stored as received records the verifier's digest without a second pass."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import struct
from pathlib import Path

import pytest
import trio

from voxpipe import compression
from voxpipe.compressibility import decide
from voxpipe.compression import GzipCompressor
from voxpipe.components import PipelineContext
from voxpipe.model import Chunk, Stream, StreamResult, StreamSpec
from voxpipe_files.sinks import FileSink, FileSinkSettings, GzipSink, GzipSinkSettings

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "recordings"


def wav_head(tag: int, *, extensible_subformat: int | None = None) -> bytes:
    """The first bytes of a WAV file whose ``fmt `` chunk has format tag ``tag``."""
    if extensible_subformat is None:
        fmt = struct.pack("<HHIIHH", tag, 1, 8000, 8000, 1, 8)
    else:
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 8000, 16000, 2, 16, 22, 16, 4) + \
            struct.pack("<H", extensible_subformat) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    return b"RIFF" + struct.pack("<I", 1000) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data"


@pytest.mark.parametrize("name,deflate", [("100001.wav", True), ("100002.wav", True), ("100005.wav", True),
                                          ("100003.mp3", False), ("100004.opus", False), ("100006.ogg", False)])
def test_example_recordings(name, deflate):
    head = (EXAMPLES / name).read_bytes()[:64]
    decision = decide(head, name.rsplit(".", 1)[1])
    assert decision.deflate is deflate, decision
    assert decision.note.startswith("deflated" if deflate else "stored")


@pytest.mark.parametrize("head,declared,deflate,words", [
    (wav_head(1), "wav", True, "0x0001"),                       # PCM
    (wav_head(7), "wav", True, "0x0007"),                       # G.711 μ-law
    (wav_head(6), None, True, "0x0006"),                        # G.711 A-law
    (wav_head(0x55), "wav", False, "0x0055"),                   # MP3 inside WAV
    (wav_head(0x31), "wav", False, "0x0031"),                   # GSM 6.10
    (wav_head(0, extensible_subformat=1), "wav", True, "0x0001"),
    (wav_head(0, extensible_subformat=0x55), "wav", False, "0x0055"),
    (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00", None, False, "mp4/m4a"),
    (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01", "webm", False, "webm"),
    (b"\xff\xf1\x50\x80\x02\x1f\xfc", None, False, "adts"),     # AAC in ADTS
    (b"ID3\x04\x00\x00\x00\x00\x00\x00", "wav", False, "mp3"),  # the bytes win over the declared format
    (b"\x00" * 40, "mp3", False, "declared format mp3"),        # unrecognised bytes: the declared format decides
    (b"\x00" * 40, "OPUS", False, "declared format opus"),
    (b"\x00" * 40, "wav", True, "declared format wav"),
    (b"\x00" * 40, None, True, "not recognised"),
    (b"", None, True, "not recognised"),
    (b"RIFF", None, True, "not recognised"),                    # too short to be sure: deflate (never loses bytes)
])
def test_decide(head, declared, deflate, words):
    decision = decide(head, declared)
    assert decision.deflate is deflate and words in decision.note, decision


def test_stored_mode_is_plain_gzip_of_stored_blocks():
    mp3 = (EXAMPLES / "100003.mp3").read_bytes()
    z = GzipCompressor(1, "zlib", "auto")
    z.choose(mp3[:z.sniff_bytes], "mp3")
    blob = z.compress(mp3[:10_000]) + z.end_member() + z.compress(mp3[10_000:]) + z.flush()
    assert z.description == "gzip:stored" and z.note.startswith("stored: mp3")
    assert gzip.decompress(blob) == mp3
    # stored deflate blocks: the size is the input plus headers (two members of 18 bytes,
    # 5 bytes per block of at most 64 KiB)
    assert len(mp3) < len(blob) < len(mp3) + 2 * 18 + 5 * (len(mp3) // 65535 + 3) + 10
    assert z.state() == {"deflate": False, "note": z.note}


def sink_run(sink, stream: Stream, data: bytes, result: StreamResult, piece: int = 30_000) -> dict:
    async def main():
        w = await sink.begin(stream)
        for i in range(0, len(data), piece):
            await w.write(Chunk(i, data[i:i + piece]))
        await w.prepare()
        return await w.commit(result)
    return trio.run(main)


def result_for(rid: str, data: bytes, *, digest: str | None = None) -> StreamResult:
    return StreamResult(id=rid, source="test", pipeline="p", ok=True, bytes=len(data),
                        digests={"sha256": digest or hashlib.sha256(data).hexdigest()})


@pytest.mark.parametrize("name,expect", [("100003.mp3", "gzip:stored"), ("100004.opus", "gzip:stored"),
                                         ("100001.wav", "gzip:isal:1")])
def test_gzip_sink_default_auto(tmp_path, name, expect):
    data = (EXAMPLES / name).read_bytes()
    rid, fmt = name.split(".")
    sink = GzipSink(GzipSinkSettings(dir=tmp_path), PipelineContext(pipeline="p", state_dir=tmp_path))
    assert sink.settings.level == 1 and sink.settings.compress == "auto"
    stored = sink_run(sink, Stream(StreamSpec(rid, {"format": fmt}), source="test", pipeline="p", audit=None),
                      data, result_for(rid, data))
    blob = Path(stored["path"]).read_bytes()
    assert gzip.decompress(blob) == data
    manifest = json.loads(Path(stored["manifest"]).read_text())
    assert manifest["compression"] == expect
    assert manifest["compression_note"].startswith("stored" if expect == "gzip:stored" else "deflated")
    assert manifest["stored_sha256"] == hashlib.sha256(blob).hexdigest() == stored["sha256"]
    if expect == "gzip:stored":
        assert len(blob) > len(data)
    else:
        assert len(blob) < 0.8 * len(data)


def test_resume_keeps_the_decision(tmp_path):
    """A stream that began stored continues stored after a resume, whatever the next bytes look like."""
    mp3 = (EXAMPLES / "100003.mp3").read_bytes()
    sink = GzipSink(GzipSinkSettings(dir=tmp_path, engine="zlib"), PipelineContext(pipeline="p", state_dir=tmp_path))

    def stream():
        return Stream(StreamSpec("r", {"format": "mp3"}), source="test", pipeline="p", audit=None)

    async def main():
        w = await sink.begin(stream())
        await w.write(Chunk(0, mp3[:8000]))
        entry = await w.checkpoint()
        await w.suspend(StreamResult(id="r", source="test", pipeline="p", reason="interrupted"))
        assert entry["compressor"]["deflate"] is False
        w2 = await sink.resume(stream(), entry)
        await w2.write(Chunk(8000, mp3[8000:]))
        await w2.prepare()
        return await w2.commit(result_for("r", mp3))

    stored = trio.run(main)
    assert gzip.decompress(Path(stored["path"]).read_bytes()) == mp3
    assert json.loads(Path(stored["manifest"]).read_text())["compression"] == "gzip:stored"


def test_file_sink_reuses_the_verified_digest(tmp_path, monkeypatch):
    """Stored as received and vouched for by the engine: no hashing in the writer; the verifier's digest
    is recorded. Not vouched for: the writer hashes in the same pass as it writes."""
    data = (EXAMPLES / "100002.wav").read_bytes()
    sink = FileSink(FileSinkSettings(dir=tmp_path), PipelineContext(pipeline="p", state_dir=tmp_path))
    shared = Stream(StreamSpec("s", {"format": "wav"}), source="test", pipeline="p", audit=None)
    shared.shared_sha256 = True

    async def begin(stream):
        return await sink.begin(stream)

    writer = trio.run(begin, shared)
    assert writer.stored_hash is None
    trio.run(writer.abort, StreamResult(id="s", source="test", pipeline="p", reason="test"))
    # The digest handed over is what the manifest records: proof it was not recomputed
    # (a real verifier's digest equals the file's; a made-up one shows which was used).
    vouched = "ab" * 32
    stored = sink_run(sink, shared, data, result_for("s", data, digest=vouched))
    assert stored["sha256"] == vouched
    # A byte count that does not match what was written: the writer does not trust the
    # digest and hashes the stored file instead.
    other = Stream(StreamSpec("t", {"format": "wav"}), source="test", pipeline="p", audit=None)
    other.shared_sha256 = True
    short = result_for("t", data, digest=vouched)
    short.bytes -= 1
    stored = sink_run(sink, other, data, short)
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()
    # Not vouched for: hashed while written.
    plain = Stream(StreamSpec("u", {"format": "wav"}), source="test", pipeline="p", audit=None)
    stored = sink_run(sink, plain, data, result_for("u", data, digest=vouched))
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "u.wav").read_bytes() == data


def test_gzip_sink_never_shares_the_received_digest(tmp_path):
    data = (EXAMPLES / "100001.wav").read_bytes()
    sink = GzipSink(GzipSinkSettings(dir=tmp_path), PipelineContext(pipeline="p", state_dir=tmp_path))
    stream = Stream(StreamSpec("g", {"format": "wav"}), source="test", pipeline="p", audit=None)
    stream.shared_sha256 = True
    stored = sink_run(sink, stream, data, result_for("g", data))
    assert stored["sha256"] == hashlib.sha256(Path(stored["path"]).read_bytes()).hexdigest()


def test_missing_isal_warns_once(monkeypatch, caplog):
    monkeypatch.setattr(compression, "isal_zlib_module", lambda: None)
    monkeypatch.setattr(compression, "_warned_no_isal", False)
    with caplog.at_level(logging.WARNING, logger="voxpipe.compression"):
        assert GzipSinkSettings(dir="x").compressor_engine() == "zlib"
        assert GzipSinkSettings(dir="y").compressor_engine() == "zlib"
    lines = [r.getMessage() for r in caplog.records if r.name == "voxpipe.compression"]
    assert len(lines) == 1 and "python-isal" in lines[0] and "\n" not in lines[0]
