"""Longer fuzzing of the parsers that read untrusted input (not a test; issue 15.7).

Targets (``--target``): ``yaml`` (pipeline files through :func:`voxpipe.config.parse_config`),
``ranges`` (Content-Range and Range parsers, and the archive's conditional decision),
``twilio`` (Twilio Media Streams messages), ``audio`` (the streaming audio-format
checker). Each input must give a clean result or the parser's own typed error; anything
else (another exception, a hang caught by ``-timeout``) is a finding.

With atheris (``pip install atheris``; optional, not a voxpipe dependency) the run is
coverage-guided and takes atheris/libFuzzer options after ``--``::

    python benchmarks/fuzz_parsers.py --target yaml -- -max_total_time=600 -timeout=10

Without atheris it falls back to random mutation of the seed inputs for ``--seconds``
(default 60) and prints how many inputs ran and how many typed errors they gave. The
property tests in ``tests/test_fuzz_properties.py`` run the same targets briefly in
every test run.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "recordings"

YAML_SEED = b"""\
pipelines:
  nightly:
    concurrency: 3
    source: {type: cxone, api_base: "http://127.0.0.1:9", token_url: "http://127.0.0.1:9/t", client_id: d,
             client_secret: "${S:-x}", recordings: ["1", "2"]}
    verifiers: [{type: sha256}]
    sinks:
      - &s {type: gzip, dir: ./archive, level: 1}
      - *s
"""


def yaml_target() -> tuple[Callable[[bytes], None], list[bytes]]:
    from voxpipe.config import parse_config
    from voxpipe.errors import ConfigError
    from voxpipe.plugins import get_registry
    from voxpipe.yamlsafe import YamlProblem, decode

    registry = get_registry()

    def run(data: bytes) -> None:
        try:
            text = decode(data)
        except YamlProblem:
            return
        try:
            parse_config(text, registry, filename="fuzz.yaml", environ={})
        except ConfigError as exc:
            assert all(":" in p for p in exc.problems)

    return run, [YAML_SEED, b"a: &a [*a]\n", b"pipelines: [" * 50]


def ranges_target() -> tuple[Callable[[bytes], None], list[bytes]]:
    from voxpipe.download.ranges import (ContentRangeError, Segment, check_content_range, parse_content_range,
                                         parse_range, parse_unsatisfied_range)
    from voxpipe_archive.conditional import evaluate

    def run(data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        size = int.from_bytes(data[:5].ljust(5, b"\0"), "big")
        for call in (lambda: parse_content_range(text), lambda: check_content_range(text, Segment(0, 99), size)):
            try:
                call()
            except ContentRangeError:
                pass
        parse_unsatisfied_range(text)
        parse_range(text, size)
        evaluate("GET", {"range": text, "if-range": text[:70], "if-none-match": text[-70:]}, etag='"x"', size=size)

    return run, [b"bytes 0-99/1000", b"bytes=0-99", b"bytes=-5", b"bytes */1000", b"bytes=5-,7-9"]


def twilio_target() -> tuple[Callable[[bytes], None], list[bytes]]:
    from voxpipe_voice.twilio import TwilioProtocolError, parse_event

    media = {"event": "media", "sequenceNumber": "3", "streamSid": "MZ1",
             "media": {"track": "inbound", "chunk": "2", "timestamp": "40",
                       "payload": base64.b64encode(bytes(160)).decode()}}
    start = {"event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
             "start": {"callSid": "CA1", "accountSid": "AC1", "tracks": ["inbound"],
                       "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}

    def run(data: bytes) -> None:
        try:
            parse_event(data)
        except TwilioProtocolError:
            pass

    return run, [json.dumps(media).encode(), json.dumps(start).encode(),
                 b'{"event":"stop","sequenceNumber":"9","streamSid":"MZ1"}']


def audio_target() -> tuple[Callable[[bytes], None], list[bytes]]:
    from voxpipe.audioformat import AudioFormatChecker, AudioFormatError

    def run(data: bytes) -> None:
        checker = AudioFormatChecker()
        try:
            for offset in range(0, len(data), 4096):
                checker.feed(data[offset:offset + 4096])
            checker.finish()
        except AudioFormatError:
            pass

    seeds = [p.read_bytes()[:200_000] for p in sorted(EXAMPLES.glob("*")) if p.is_file() and p.suffix != ".json"]
    return run, seeds or [b"RIFF\0\0\0\0WAVE"]


TARGETS = {"yaml": yaml_target, "ranges": ranges_target, "twilio": twilio_target, "audio": audio_target}


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(4)
        pos = rng.randint(0, len(buf))
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == 2:
            del buf[pos:pos + rng.randint(1, 16)]
        elif buf:  # duplicate a slice: repeats structure (nesting, aliases, frames)
            a = rng.randrange(len(buf))
            buf[pos:pos] = buf[a:a + rng.randint(1, 64)] * rng.randint(1, 20)
    return bytes(buf)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=sorted(TARGETS), default="yaml")
    ap.add_argument("--seconds", type=float, default=60.0, help="fallback mode only: how long to run")
    ap.add_argument("--seed", type=int, default=0, help="fallback mode only: random seed")
    args, rest = ap.parse_known_args()
    try:
        import atheris
    except ImportError:
        atheris = None
    if atheris is not None:
        # coverage feedback from voxpipe's own modules only (instrumenting every loaded module,
        # trio and numpy included, takes minutes)
        with atheris.instrument_imports(include=["voxpipe", "voxpipe_archive", "voxpipe_voice", "yaml"]):
            run, seeds = TARGETS[args.target]()
    else:
        run, seeds = TARGETS[args.target]()
    if atheris is not None:
        corpus = Path(f".fuzz-corpus-{args.target}")
        corpus.mkdir(exist_ok=True)
        for i, seed in enumerate(seeds):
            (corpus / f"seed-{i}").write_bytes(seed)
        atheris.Setup([sys.argv[0], *[a for a in rest if a != "--"], str(corpus)], run)
        atheris.Fuzz()
        return 0
    print("atheris is not installed (pip install atheris); random mutation for "
          f"{args.seconds:.0f} s instead", file=sys.stderr)
    rng = random.Random(args.seed)
    deadline, count, slowest = time.monotonic() + args.seconds, 0, 0.0
    while time.monotonic() < deadline:
        data = mutate(rng.choice(seeds), rng)
        started = time.perf_counter()
        try:
            run(data)
        except Exception:
            print(f"FINDING after {count} inputs: {data[:200]!r}", file=sys.stderr)
            raise
        slowest = max(slowest, time.perf_counter() - started)
        count += 1
    print(f"{args.target}: {count} inputs in {args.seconds:.0f} s, no finding; slowest input {slowest * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
