"""Regenerates examples/media/100007.m4a: the speech of examples/recordings/100002.wav as
AAC-LC in an MP4/M4A (ISO BMFF) file, as CXone's Media Playback often serves voice.

Needs PyAV (``pip install av``, whose wheel carries FFmpeg's libraries; used only to
make this file, not by voxpipe): ``python examples/make_m4a.py``. The container is
written with ``movflags=+faststart`` absent, so ``mdat`` comes before ``moov``, the layout
of a recording written while the call went on; AAC-LC mono at 8000 Hz, 24 kbit/s.
"""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import av
import numpy as np

here = Path(__file__).resolve().parent
source = here / "recordings" / "100002.wav"
target = here / "media" / "100007.m4a"

with wave.open(str(source), "rb") as w:
    assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000), "expected 8 kHz mono PCM16"
    pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")

target.parent.mkdir(parents=True, exist_ok=True)
tmp = target.with_suffix(".tmp.m4a")
with av.open(str(tmp), "w", format="ipod", options={"fflags": "+bitexact"},
             container_options={"fflags": "+bitexact"}) as out:
    stream = out.add_stream("aac", rate=8000, layout="mono")
    stream.bit_rate = 24_000
    frame_size = 1024
    for start in range(0, len(pcm), frame_size):
        chunk = pcm[start:start + frame_size]
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 8000
        frame.pts = start
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)
tmp.replace(target)
print(f"wrote {target} ({target.stat().st_size} bytes) with PyAV {av.__version__}", file=sys.stderr)
