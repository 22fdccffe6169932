"""The wav sink: a valid header whenever the file is under its final name, atomic commit."""

from __future__ import annotations

import hashlib
import json
import wave

import mutagen.wave
import pytest
import trio

from voxpipe.components import PipelineContext
from voxpipe.errors import SinkError
from voxpipe.model import Chunk, Stream, StreamResult, StreamSpec
from voxpipe_voice.wav import HEADER_BYTES, WavSink, wav_header


def _sink(tmp_path, **settings):
    return WavSink(WavSink.Settings(dir=tmp_path, **settings), PipelineContext("p", state_dir=tmp_path))


def _stream(call_id="call-7", **metadata):
    return Stream(StreamSpec(call_id, {"format": "pcm16", "sample_rate": 8000, "channels": 1, "sample_width": 2,
                                       **metadata}), source="websocket-voice", pipeline="p", audit=None)


def test_header_matches_the_stdlib(tmp_path):
    path = tmp_path / "ref.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(bytes(640))
    assert path.read_bytes()[:HEADER_BYTES] == wav_header(640, 16000)
    with pytest.raises(ValueError, match="do not fit a RIFF file"):
        wav_header(2**32, 8000)


def test_wav_sink_writes_readable_files_atomically(tmp_path):
    sink = _sink(tmp_path)
    stream = _stream(sample_rate=16000)
    pcm = bytes(range(256)) * 25  # 6400 bytes = 200 ms at 16 kHz

    async def main():
        writer = await sink.begin(stream)
        for i in range(0, len(pcm), 333):
            await writer.write(Chunk(i, pcm[i:i + 333]))
        assert list(tmp_path.glob("*.wav")) == []  # nothing under a final name yet
        temps = [p for p in tmp_path.iterdir() if p.name.startswith(".")]
        assert len(temps) == 1
        await writer.prepare()
        assert list(tmp_path.glob("*.wav")) == []
        result = StreamResult(id=stream.id, source=stream.source, pipeline="p", ok=True, bytes=len(pcm),
                              metadata={"quality": {"packets": 3}})
        return await writer.commit(result)

    stored = trio.run(main)
    final = tmp_path / "call-7.wav"
    assert stored["path"] == str(final)
    with wave.open(str(final)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        assert w.readframes(w.getnframes()) == pcm
    info = mutagen.wave.WAVE(str(final)).info
    assert info.sample_rate == 16000 and abs(info.length - 0.2) < 1e-9
    manifest = json.loads((tmp_path / "call-7.wav.json").read_text())
    assert manifest["format"] == "wav" and manifest["stored_size"] == HEADER_BYTES + len(pcm)
    assert manifest["metadata"]["quality"] == {"packets": 3}
    assert manifest["stored_sha256"] == hashlib.sha256(final.read_bytes()).hexdigest() == stored["sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["call-7.wav", "call-7.wav.json"]


def test_abort_leaves_nothing(tmp_path):
    sink = _sink(tmp_path)

    async def main():
        writer = await sink.begin(_stream())
        await writer.write(Chunk(0, bytes(320)))
        await writer.abort(StreamResult(id="call-7", source="s", pipeline="p"))
        await writer.abort(StreamResult(id="call-7", source="s", pipeline="p"))  # idempotent

    trio.run(main)
    assert list(tmp_path.iterdir()) == []


def test_partial_sample_fails_prepare(tmp_path):
    sink = _sink(tmp_path)

    async def main():
        writer = await sink.begin(_stream())
        await writer.write(Chunk(0, bytes(3)))
        with pytest.raises(SinkError, match="call call-7: 3 bytes of samples is not a whole number"):
            await writer.prepare()

    trio.run(main)


def test_name_template_and_bad_metadata(tmp_path):
    sink = _sink(tmp_path, name="{source}/{recording_id}.{format}")

    async def main():
        writer = await sink.begin(_stream())
        await writer.write(Chunk(0, bytes(320)))
        await writer.prepare()
        return await writer.commit(StreamResult(id="call-7", source="websocket-voice", pipeline="p", ok=True))

    assert trio.run(main)["path"] == str(tmp_path / "websocket-voice" / "call-7.wav")
    with pytest.raises(SinkError, match="metadata sample_rate='8k' is not an integer"):
        trio.run(sink.begin, _stream(sample_rate="8k"))


def test_stereo_wav_has_two_channels_and_refuses_a_partial_sample_frame(tmp_path):
    sink = _sink(tmp_path)
    left, right = bytes([1, 0]) * 160, bytes([2, 0]) * 160
    from voxpipe import dsp
    stereo = dsp.interleave(left, right)

    async def main():
        writer = await sink.begin(_stream("st-1", channels=2))
        await writer.write(Chunk(0, stereo))
        await writer.prepare()
        await writer.commit(StreamResult(id="st-1", source="s", pipeline="p", ok=True, bytes=len(stereo)))
        writer = await sink.begin(_stream("st-2", channels=2))
        await writer.write(Chunk(0, stereo + b"\x00\x00"))  # half a sample frame at the end
        with pytest.raises(SinkError, match="not a whole number of 4-byte sample frames"):
            await writer.prepare()

    trio.run(main)
    with wave.open(str(tmp_path / "st-1.wav")) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (2, 2, 8000, 160)
        assert w.readframes(160) == stereo
    assert mutagen.wave.WAVE(str(tmp_path / "st-1.wav")).info.channels == 2
