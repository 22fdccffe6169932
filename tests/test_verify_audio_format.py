"""The ``audio-format`` verifier: every intact example accepted, every corrupt file of the
corpus rejected with its specific reason (early when the head shows it), through real
pipelines; arbitrary bytes only ever give a verdict or a VerificationError."""

from __future__ import annotations

import gzip
import json
import random
import shutil
import textwrap
import wave
from pathlib import Path

import pytest
from audioformat_samples import EXAMPLE_LIST, EXAMPLES_BY_ID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from verify_env import CorpusPlugin, corrupt_corpus, cxone_yaml, run_yaml, write_corpus

from cxone_env import emulator
from voxpipe.audioformat import REASONS
from voxpipe.components import PipelineContext
from voxpipe.errors import VerificationError
from voxpipe.ledger import Ledger
from voxpipe.model import Chunk, Stream, StreamSpec, Verdict
from voxpipe_verify.audio_format import AudioFormatSettings, AudioFormatVerifier

CHUNK = 16384


def test_corpus_through_a_pipeline_each_rejected_with_its_reason_and_quarantined(tmp_path, register_plugin):
    cases = corrupt_corpus()
    corpus, out, state = tmp_path / "corpus", tmp_path / "out", tmp_path / "state"
    write_corpus(corpus, cases)
    text = textwrap.dedent(f"""
        pipelines:
          corpus:
            concurrency: 4
            state_dir: {state}
            source: {{type: corpus, dir: {corpus}, chunk: {CHUNK}}}
            verifiers: [{{type: sha256}}, {{type: audio-format}}]
            sinks: [{{type: gzip, dir: {out}, level: 1, on_failure: quarantine}}]
    """)
    with register_plugin(CorpusPlugin(), name="corpus") as registry:
        summary = run_yaml(text, registry=registry)
    by_id = {r.id: r for r in summary.results}
    assert len(by_id) == len(cases)
    quarantine = out / ".quarantine"
    reports = {json.loads(p.read_text())["recording_id"]: p for p in quarantine.glob("*.json")}
    for case in cases:
        result = by_id[case.id]
        verdicts = {v.verifier: v for v in result.verdicts}
        if case.reason is None:
            assert result.ok, (case.id, result.message)
            ex = EXAMPLES_BY_ID[case.id.removeprefix("ok-")]
            details = verdicts["audio-format"].details
            assert (details["container"], details["codec"], details["sample_rate"], details["channels"]) == \
                (ex.container, ex.codec, ex.sample_rate, ex.channels)
            assert details["size"] == len(ex.data)
            assert details["duration"] == pytest.approx(case.metadata["duration"], abs=0.1)
            with gzip.open(out / f"{case.id}.{ex.declared}.gz") as f:
                assert f.read() == case.data
            continue
        assert not result.ok and result.reason == case.reason, (case.id, result.reason, result.message)
        assert case.reason in REASONS
        assert f"recording {case.id}" in result.message
        if case.offset is not None:
            assert f"byte {case.offset}" in result.message, (case.id, result.message)
        # Every verifier's verdict is recorded, the format check's with its reason.
        assert verdicts["audio-format"].reason == case.reason and not verdicts["audio-format"].ok
        assert set(verdicts) == {"sha256", "audio-format"}
        if case.early:
            assert verdicts["sha256"].reason == "incomplete"
            stop = (case.offset or 0) + 6 * CHUNK  # the download stopped soon after the defect
            if len(case.data) > stop:
                assert result.bytes <= stop, (case.id, result.bytes)
        else:
            assert verdicts["sha256"].ok  # judged at the end: every verifier gave its own verdict
        # Quarantined: the bytes received, as stored (a valid gzip), and the reason.
        report = json.loads(reports[case.id].read_text())
        assert report["reason"] == case.reason and report["message"] == result.message
        assert {v["verifier"]: v["reason"] for v in report["verdicts"]}["audio-format"] == case.reason
        kept = quarantine / report["file"]
        assert kept.name.endswith(".gz")
        with gzip.open(kept) as f:
            received = f.read()
        # What the sink had written when the stream failed: an early rejection races the sink.
        assert received == case.data[:len(received)] and len(received) == report["original_bytes"] <= result.bytes
        if not case.early:
            assert len(received) == result.bytes == len(case.data)
    # Nothing failed reached the archive; no temporary file is left.
    archived = sorted(p.name for p in out.glob("*.gz"))
    assert archived == sorted(f"{c.id}.{EXAMPLES_BY_ID[c.id[3:]].declared}.gz" for c in cases if c.reason is None)
    assert not list(out.glob(".*.part"))
    # The ledger holds every verdict; the compliance report counts format errors.
    ledger = Ledger(state / "ledger.sqlite3")
    try:
        row = ledger.get("corpus", "mp3-garbage")
        assert row.state == "failed" and row.reason == "mp3-sync-lost"
        assert {v["verifier"]: v["reason"] for v in row.verdicts} == {"sha256": "incomplete",
                                                                      "audio-format": "mp3-sync-lost"}
    finally:
        ledger.close()
    totals = json.loads(summary.report_paths[0].read_text())["totals"]
    failed = sum(1 for c in cases if c.reason)
    assert totals == {"processed": len(cases), "stored": len(cases) - failed, "skipped": 0, "failed": failed,
                      "checksum_errors": 0, "format_errors": failed, "hmac_failures": 0, "other_failures": 0,
                      "deferred": 0}


def test_every_example_accepted_from_the_emulator(tmp_path):
    recs = tmp_path / "recs"
    recs.mkdir()
    for ex in EXAMPLE_LIST:
        shutil.copy(ex.path, recs / ex.path.name)
    out, state = tmp_path / "out", tmp_path / "state"
    with emulator(recs) as (emu, base):
        summary = run_yaml(cxone_yaml(base, [e.id for e in EXAMPLE_LIST], out, state, chunk=65536,
                                      verifiers="- type: audio-format"))
    assert summary.ok, [r.message for r in summary.failed]
    for r in summary.results:
        ex = EXAMPLES_BY_ID[r.id]
        (verdict,) = r.verdicts
        assert verdict.ok and verdict.details["container"] == ex.container and verdict.details["codec"] == ex.codec
        assert verdict.details["bits_per_sample"] == ex.bits_per_sample


def test_wrong_format_aborts_the_download_at_the_head(tmp_path):
    """An 8 MB WAV served as .mp3: rejected from its first bytes, so almost nothing is fetched."""
    recs = tmp_path / "recs"
    recs.mkdir()
    with wave.open(str(recs / "300001.mp3"), "wb") as w:  # 8 MB of 16-bit PCM at 8 kHz
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(random.Random(1).randbytes(8_000_000))
    size = (recs / "300001.mp3").stat().st_size
    out, state = tmp_path / "out", tmp_path / "state"
    with emulator(recs) as (emu, base):
        summary = run_yaml(cxone_yaml(base, ["300001"], out, state, chunk=256 * 1024,
                                      verifiers="- type: sha256\n- type: audio-format"))
        served = emu.stats.bytes_served("300001")
    (result,) = summary.results
    assert result.reason == "format-mismatch" and "mp3" in result.message and "WAV" in result.message
    assert size > 8_000_000 and served <= 4 * 256 * 1024, served  # far below the size
    assert not list(out.rglob("*.gz"))


def test_allowed_formats_refuses_other_declared_formats():
    v = AudioFormatVerifier(AudioFormatSettings(allowed_formats=["wav_ulaw"]), PipelineContext("p", Path(".")))
    run = v.begin(Stream(StreamSpec("7", {"format": "mp3"}), source="t", pipeline="p", audit=None))
    with pytest.raises(VerificationError) as e:
        run.update(Chunk(0, EXAMPLES_BY_ID["100003"].data[:100]))
    assert e.value.reason == "format-not-allowed" and "'mp3'" in str(e.value)


_VERIFIER = AudioFormatVerifier(AudioFormatSettings(), PipelineContext("p", Path(".")))
_SEEDS = [e.data[:600] for e in EXAMPLE_LIST]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.one_of(st.binary(max_size=3000),
                   st.tuples(st.sampled_from(_SEEDS), st.binary(max_size=400), st.integers(0, 599))
                   .map(lambda t: t[0][:t[2]] + t[1] + t[0][t[2]:])),
    fmt=st.sampled_from([None, "wav", "mp3", "opus", "ogg", "webm", "wav_ulaw", "nonsense", ""]),
    size=st.one_of(st.none(), st.integers(-5, 5000), st.just(True), st.text(max_size=3)),
    duration=st.one_of(st.none(), st.floats(allow_nan=True), st.text(max_size=3)),
    cut=st.integers(1, 700),
)
def test_arbitrary_bytes_give_a_verdict_or_a_verification_error(data, fmt, size, duration, cut):
    stream = Stream(StreamSpec("h", {"format": fmt, "size": size, "duration": duration}), source="t", pipeline="p",
                    audit=None)
    run = _VERIFIER.begin(stream)
    try:
        for offset in range(0, len(data), cut):
            run.update(Chunk(offset, data[offset:offset + cut]))
        verdict = run.finish()
    except VerificationError as exc:
        assert exc.reason in REASONS and str(exc).startswith("recording h: ")
        return
    assert isinstance(verdict, Verdict)
    assert verdict.ok or verdict.reason in REASONS
