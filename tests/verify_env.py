"""Helpers for the verification tests: pipelines with chosen verifiers and sinks, a
source that serves a corpus of files with chosen metadata, and the corrupt corpus.

The corpus is built here from the example recordings (a second description of the
defects, independent of the checker's code); each entry names the reason code it must
be rejected with.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mutagen
import trio
from audioformat_samples import EXAMPLES_BY_ID, riff_chunks

from voxpipe import hookimpl
from voxpipe.components import Source
from voxpipe.config import parse_config
from voxpipe.engine import Runner
from voxpipe.model import Chunk, StreamSpec
from voxpipe.plugins import get_registry
from voxpipe.settings import Settings, setting
from voxpipe_cxone.emulator.settings import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

#: 100003.mp3's layout: ID3v2 tag bytes, then 144-byte frames (see test_audioformat_corrupt).
MP3_ID3_END, MP3_FRAME = 245, 144


def hmac_hex(key: bytes, data: bytes) -> str:
    import hmac as _hmac

    return _hmac.new(key, data, hashlib.sha256).hexdigest()


def cxone_yaml(base: str, ids: list[str], out: Path, state: Path, *, verifiers: str, sink_extra: str = "",
               chunk: int = 65536, concurrency: int = 2, attempts: int = 8) -> str:
    """A cxone → verifiers → gzip pipeline against the emulator at ``base``."""
    return f"""
pipelines:
  archive:
    concurrency: {concurrency}
    state_dir: {state}
    source:
      type: cxone
      api_base: {base}
      token_url: {base}/oauth/token
      client_id: {DEMO_CLIENT_ID}
      client_secret: ${{CXONE_SECRET}}
      recordings: {json.dumps(ids)}
      chunk_size: {chunk}
      max_attempts: {attempts}
      retry_base_delay: 0.01
    verifiers:
{textwrap.indent(textwrap.dedent(verifiers).strip(), "      ")}
    sinks:
      - type: gzip
        dir: {out}
        level: 1
{textwrap.indent(textwrap.dedent(sink_extra).strip(), "        ")}
"""


def run_yaml(text: str, env: dict[str, str] | None = None, registry=None):
    environ = {**os.environ, "CXONE_SECRET": DEMO_CLIENT_SECRET, **(env or {})}
    cfg = parse_config(text, registry or get_registry(), environ=environ)
    return trio.run(Runner(cfg.pipeline(None)).run)


# ----------------------------------------------------------------------------- corpus source


class CorpusSettings(Settings):
    dir: Path = setting(description="Directory of <id>.bin files with <id>.meta.json metadata.")
    chunk: int = setting(16384, description="Bytes per chunk.", ge=1)


class CorpusSource(Source):
    """Test source: each <id>.bin of a directory, with the metadata of <id>.meta.json."""

    type = "corpus"
    Settings = CorpusSettings

    def __init__(self, settings, context):
        super().__init__(settings, context)
        self.delivered: dict[str, int] = {}

    async def discover(self):
        for path in sorted(Path(self.settings.dir).glob("*.bin")):
            yield StreamSpec(path.stem)

    async def read(self, stream):
        d = Path(self.settings.dir)
        stream.metadata.update(json.loads((d / f"{stream.id}.meta.json").read_text()))
        data = (d / f"{stream.id}.bin").read_bytes()
        step = self.settings.chunk
        for offset in range(0, len(data), step):
            self.delivered[stream.id] = offset + len(data[offset:offset + step])
            yield Chunk(offset, data[offset:offset + step])
            await trio.sleep(0)


class CorpusPlugin:
    @hookimpl
    def register_sources(self, register):
        register(CorpusSource)


@dataclass
class Case:
    id: str
    data: bytes
    metadata: dict[str, Any]
    reason: str | None  # None: must be accepted
    early: bool = False  # rejected by update() before the end (so before every byte was delivered)
    offset: int | None = None  # the byte the checker names, when fixed
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def example_duration(rid: str) -> float:
    return float(mutagen.File(EXAMPLES_BY_ID[rid].path).info.length)


def _meta(rid: str, *, size: bool = False, data: bytes | None = None, duration: bool = True) -> dict[str, Any]:
    ex = EXAMPLES_BY_ID[rid]
    m: dict[str, Any] = {"format": ex.declared}
    if duration:
        m["duration"] = example_duration(rid)
    if size:
        m["size"] = len(data if data is not None else ex.data)
    return m


def corrupt_corpus() -> list[Case]:
    """Every defect of the issue's corpus, each with the one reason it must produce."""
    cases: list[Case] = []
    # Intact examples: accepted, with format, duration and size all checked.
    for rid, ex in EXAMPLES_BY_ID.items():
        cases.append(Case(f"ok-{rid}", ex.data, _meta(rid, size=True), None))
    # Truncated at many points (size unknown to the platform; declared format and duration known).
    for rid, ex in EXAMPLES_BY_ID.items():
        n = len(ex.data)
        for cut in (2, 11, 30, 57, 300, n // 3, n // 2, n - 130, n - 1):
            if ex.container == "mp3" and cut >= MP3_ID3_END and (cut - MP3_ID3_END) % MP3_FRAME == 0:
                cut += 7  # between two frames a cut is structurally whole; keep it mid-frame
            cases.append(Case(f"cut-{rid}-{cut}", ex.data[:cut], _meta(rid), "truncated", offset=cut))
    # Header bytes flipped (XOR 0xFF), each where the header says something specific.
    flips = [("100001", 0, "unknown-container"), ("100002", 20, "wav-unsupported-codec"),
             ("100002", 24, "wav-bad-fmt"), ("100005", 8, "unsupported-container"),
             ("100003", 245, "mp3-bad-frame-header"), ("100003", 5, "mp3-bad-id3"),
             ("100004", 4, "ogg-bad-page"), ("100004", 12, "ogg-crc-mismatch"), ("100006", 30, "ogg-crc-mismatch")]
    for rid, at, reason in flips:
        bad = bytearray(EXAMPLES_BY_ID[rid].data)
        bad[at] ^= 0xFF
        cases.append(Case(f"flip-{rid}-{at}", bytes(bad), {"format": EXAMPLES_BY_ID[rid].declared}, reason,
                          early=True))
    # A WAV whose data length lies: longer than the RIFF holds (seen in the head), or shorter
    # than the audio that follows (seen where the declared data ends).
    for delta, early in ((+1000, True), (-1000, True)):  # -1000: raised mid-stream, where the data ends
        data = bytearray(EXAMPLES_BY_ID["100002"].data)
        _, at, size = [c for c in riff_chunks(bytes(data)) if c[0] == b"data"][0]
        data[at + 4:at + 8] = (size + delta).to_bytes(4, "little")
        cases.append(Case(f"wavlies-{'long' if delta > 0 else 'short'}", bytes(data), {"format": "wav"},
                          "wav-data-length-mismatch", early=early,
                          offset=(at + 4) if delta > 0 else at + 8 + size + delta))
    # An MP3 with garbage after its first frames.
    mp3 = EXAMPLES_BY_ID["100003"].data
    keep = MP3_ID3_END + 10 * MP3_FRAME
    garbage = random.Random(5).randbytes(len(mp3) - keep)
    cases.append(Case("mp3-garbage", mp3[:keep] + garbage, _meta("100003", size=True, data=mp3), "mp3-sync-lost",
                      early=True, offset=keep))
    # An Opus (Ogg) recording served as .mp3.
    opus = EXAMPLES_BY_ID["100004"].data
    cases.append(Case("opus-as-mp3", opus, {"format": "mp3", "size": len(opus)}, "format-mismatch", early=True))
    # Zero bytes.
    cases.append(Case("zero", b"", {"format": "wav", "size": 0}, "empty"))
    # Declared 2 GB, 1 KB of content: the WAV header's total contradicts it at once; an MP3's
    # frames cannot, so the byte count does at the end.
    two_gb = 2 * 1024 ** 3
    cases.append(Case("2gb-wav", EXAMPLES_BY_ID["100002"].data[:1024], {"format": "wav", "size": two_gb},
                      "size-mismatch", early=True))
    cases.append(Case("2gb-mp3", mp3[:1024], {"format": "mp3", "size": two_gb}, "size-mismatch"))
    # Duration in metadata that the bytes contradict.
    cases.append(Case("long-claim", EXAMPLES_BY_ID["100001"].data,
                      {"format": "wav_ulaw", "duration": example_duration("100001") + 30}, "duration-mismatch",
                      early=True))
    return cases


def write_corpus(directory: Path, cases: list[Case]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for case in cases:
        (directory / f"{case.id}.bin").write_bytes(case.data)
        (directory / f"{case.id}.meta.json").write_text(json.dumps(case.metadata))
