"""Property-based fuzzing of the parsers that read untrusted input (issue 15.7).

Each parser gets arbitrary and mutated input and must return a clean result or raise
its own typed error, within a time and memory bound: the pipeline-file loader
(ConfigError with ``file:line:`` problems), the Content-Range/Range parsers
(ContentRangeError, or a range inside the representation), the Twilio Media Streams
message parser (TwilioProtocolError) and the audio-format checker (AudioFormatError).
``benchmarks/fuzz_parsers.py`` runs the same targets under atheris for longer.
"""

from __future__ import annotations

import base64
import json
import re
import time
import tracemalloc
from contextlib import contextmanager

from audioformat_samples import EXAMPLE_LIST
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from voxpipe.audioformat import AudioFormatChecker, AudioFormatError
from voxpipe.config import ConfigFile, parse_config
from voxpipe.download.ranges import (ByteRange, ContentRangeError, Unsatisfiable, check_content_range,
                                     parse_content_range, parse_range, parse_unsatisfied_range, Segment)
from voxpipe.errors import ConfigError
from voxpipe.plugins import get_registry
from voxpipe_archive.conditional import evaluate
from voxpipe_voice.twilio import MAX_EVENT_BYTES, TwilioProtocolError, parse_event

FUZZ = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
#: Seconds one input may take: a hang detector, generous because tracemalloc slows Python
#: code several times and the machine is shared (the worst input, 2000 nested ``[``, takes
#: 0.5 s untraced: PyYAML's scanner looks ahead up to 1024 characters for a simple key).
TIME_BOUND = 10.0
#: Bytes of Python memory one input may allocate at its peak.
MEMORY_BOUND = 64 << 20


@contextmanager
def bounded(seconds: float = TIME_BOUND, peak: int = MEMORY_BOUND):
    tracemalloc.start()
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        _, high = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.2f} s"
    assert high < peak, f"peak {high} bytes"


# ---------------------------------------------------------------- YAML pipeline files

VALID = """\
pipelines:
  nightly:
    concurrency: 3
    source:
      type: cxone
      api_base: http://127.0.0.1:9
      token_url: http://127.0.0.1:9/oauth/token
      client_id: demo
      client_secret: ${SECRET:-x}
      recordings: ["1", "2"]
    verifiers: [{type: sha256}]
    sinks:
      - {type: gzip, dir: ./archive, level: 1}
"""
YAML_PIECES = ["&a ", "*a", "<<: *a", "!!int ", "!!float ", "!!binary ", "!x ", "!!python/name:os.system ", "[", "]",
               "{", "}", ": ", "- ", "? ", "\n", "\n  ", "\t", "#", "'", '"', "|", ">", "---\n", "...\n", "%YAML 1.1\n",
               "${A}", "$$", "\x00", "\x07", "\ufeff", "\u2028", "9" * 30, "1e999", ".inf", "~", "null", "0x1F", "1_0"]
_PROBLEM = re.compile(r"^[^\n]*:\d+: \S")


def check_config(text: str) -> None:
    with bounded():
        try:
            result = parse_config(text, get_registry(), filename="f.yaml", environ={"A": "1"})
        except ConfigError as exc:
            assert exc.problems and all(_PROBLEM.match(p) for p in exc.problems), exc.problems
        else:
            assert isinstance(result, ConfigFile) and result.pipelines


@FUZZ
@given(st.lists(st.sampled_from(YAML_PIECES) | st.characters(), max_size=120).map("".join))
@example("a: &a [*a, *a]\npipelines: *a\n")
@example("pipelines: " + "[" * 2000)
def test_yaml_loader_arbitrary_text(text):
    check_config(text)


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, len(VALID)), st.integers(0, 3), st.sampled_from(YAML_PIECES)),
                      min_size=1, max_size=8))
def test_yaml_loader_mutated_valid_file(edits):
    text = VALID
    for pos, length, piece in edits:
        pos %= len(text) + 1
        text = text[:pos] + piece + text[pos + length:]
    check_config(text)


# ---------------------------------------------------------------- Content-Range / Range

RANGE_PIECES = ["bytes", "bytes ", "bytes=", "BYTES", "*", "/", "-", ",", " ", "\t", "0", "1", "9" * 19, "9" * 25,
                "\u0663", "\u00b2", "\uff11", "\u2003", "\x00", "=", "items", "-0", "0-0"]
range_text = st.lists(st.sampled_from(RANGE_PIECES) | st.characters(), max_size=20).map("".join)


@FUZZ
@given(value=range_text, start=st.integers(0, 10**12), length=st.integers(1, 10**9),
       size=st.none() | st.integers(0, 10**12))
@example(value="bytes \u0661-\u0662/\u0663", start=1, length=2, size=3)  # Arabic-Indic digits are not DIGIT
@example(value="bytes\u20030-1/2", start=0, length=2, size=2)  # nor is an em space a space
def test_content_range_parsers(value, start, length, size):
    with bounded(peak=1 << 20):
        try:
            cr = parse_content_range(value)
        except ContentRangeError:
            pass
        else:
            assert 0 <= cr.start <= cr.end and (cr.complete_length is None or cr.end < cr.complete_length)
            # RFC 9110: ASCII digits and spaces only; anything accepted is its canonical form
            canon = f"bytes {cr.start}-{cr.end}/{'*' if cr.complete_length is None else cr.complete_length}"
            assert value.isascii() and " ".join(value.split()).lower() == canon.lower()
        n = parse_unsatisfied_range(value)
        assert n is None or (n >= 0 and value.isascii())
        try:
            check_content_range(value, Segment(start, start + length - 1), size)
        except ContentRangeError:
            pass


@FUZZ
@given(header=st.none() | range_text, size=st.integers(0, 10**13), if_range=st.none() | st.text(max_size=70),
       inm=st.none() | st.text(max_size=70))
def test_range_parser_and_conditional_decision(header, size, if_range, inm):
    with bounded(peak=1 << 20):
        decision = parse_range(header, size)
        if isinstance(decision, ByteRange):
            assert 0 <= decision.first <= decision.last < size
            assert decision.content_range(size).startswith("bytes ")
        elif isinstance(decision, Unsatisfiable):
            assert header is not None
        headers = {k: v for k, v in (("range", header), ("if-range", if_range), ("if-none-match", inm))
                   if v is not None}
        d = evaluate("GET", headers, etag='"' + "a" * 64 + '"', size=size)
        assert d.status in (200, 206, 304, 416)
        assert (d.range is not None) == (d.status == 206)


# ---------------------------------------------------------------- Twilio messages

def media_message(seq: int = 3) -> dict:
    return {"event": "media", "sequenceNumber": str(seq), "streamSid": "MZ1",
            "media": {"track": "inbound", "chunk": "2", "timestamp": "40",
                      "payload": base64.b64encode(bytes(160)).decode()}}


START = {"event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
         "start": {"callSid": "CA1", "accountSid": "AC1", "tracks": ["inbound"], "customParameters": {"a": "b"},
                   "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                        max_size=4), max_leaves=20)


def check_twilio(message) -> None:
    with bounded(peak=8 << 20):
        try:
            parse_event(message)
        except TwilioProtocolError:
            pass


@FUZZ
@given(st.binary(max_size=400) | st.text(max_size=400))
@example('{"event":"media","sequenceNumber":1e999}')  # an infinite number is not an integer
@example("[" * 30_000)  # nesting within MAX_EVENT_BYTES
@example(b'{"event":"start","sequenceNumber":"1","streamSid":"x","start":{"callSid":"\xff"}}')
@example('{"event":"media","sequenceNumber":"3","streamSid":"MZ1","media":{"track":"inbound","chunk":"2",'
         '"timestamp":"40","payload":"AAAA\u01be"}}')  # found by atheris: non-ASCII base64 raised ValueError
def test_twilio_parser_arbitrary_input(message):
    check_twilio(message)


@FUZZ
@given(base=st.sampled_from([media_message(), START, {"event": "stop", "sequenceNumber": "9", "streamSid": "MZ1"},
                             {"event": "mark", "sequenceNumber": "4", "streamSid": "MZ1", "mark": {"name": "m"}},
                             {"event": "dtmf", "sequenceNumber": "5", "streamSid": "MZ1", "dtmf": {"digit": "1"}}]),
       path=st.lists(st.text(max_size=12), min_size=1, max_size=3), value=json_values)
def test_twilio_parser_mutated_messages(base, path, value):
    doc = json.loads(json.dumps(base))
    node = doc
    for key in path[:-1]:  # walk into an existing object where the path names one, else replace here
        node = node[key] if isinstance(node.get(key), dict) else node
    node[path[-1] if path[-1] or not node else next(iter(node))] = value
    text = json.dumps(doc)
    if len(text) <= MAX_EVENT_BYTES:
        check_twilio(text)


# ---------------------------------------------------------------- audio-format checker

@FUZZ
@given(which=st.sampled_from([e.id for e in EXAMPLE_LIST]),
       edits=st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=8)), max_size=6),
       chunk=st.integers(1, 70_000), declared=st.sampled_from([None, "wav", "mp3", "opus", "ogg", "webm", "x"]))
def test_audio_format_checker_mutated_within_bounds(which, edits, chunk, declared):
    data = bytearray(next(e.data for e in EXAMPLE_LIST if e.id == which))
    for pos, blob in edits:
        pos %= len(data)
        data[pos:pos + len(blob)] = blob
    with bounded():
        checker = AudioFormatChecker(declared_format=declared)
        try:
            for offset in range(0, len(data), chunk):
                checker.feed(bytes(data[offset:offset + chunk]))
            info = checker.finish()
        except AudioFormatError as exc:
            assert exc.reason and exc.detail
        else:
            assert info.size == len(data)
