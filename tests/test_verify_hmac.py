"""The ``hmac-sha256`` verifier against the CXone emulator over loopback: whole-recording
and per-segment MACs, hex and base64, drops and ignored ranges, missing MACs, wrong keys,
and a tampered recording that fails HMAC and SHA-256 and is quarantined with the reason."""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import shutil
import textwrap
from pathlib import Path

import pytest
from verify_env import cxone_yaml, run_yaml

from cxone_env import emulator, recordings_dir
from voxpipe.audit import read_audit
from voxpipe.components import PipelineContext
from voxpipe.config import parse_config
from voxpipe.download.responses import ResponseLog
from voxpipe.errors import ConfigError, VerificationError
from voxpipe.ledger import Ledger
from voxpipe.model import Chunk, Stream, StreamSpec
from voxpipe.plugins import get_registry
from voxpipe_cxone.emulator.faults import FaultAction, FaultKind, RequestKind
from voxpipe_verify.hmac import HmacSettings, HmacVerifier

KEY = "s3cr3t-hmac-key"
BIG = "9000"  # a generated 20 s PCM WAV (320 KB): 5 segments of 64 KiB
CHUNK = 65536


def mac(data: bytes, encoding: str = "hex", *, key: str = KEY, prefix: bytes = b"") -> str:
    raw = hmac.new(key.encode(), prefix + data, hashlib.sha256).digest()
    return raw.hex() if encoding == "hex" else base64.b64encode(raw).decode()


def hmac_verifier(**settings) -> str:
    lines = ["- type: sha256", "- type: hmac-sha256", "  key: ${HMAC_KEY}"]
    lines += [f"  {k}: {v}" for k, v in settings.items()]
    return "\n".join(lines)


def run(base, ids, tmp_path, *, key=KEY, sink_extra="", chunk=CHUNK, **settings):
    out, state = tmp_path / "out", tmp_path / "state"
    text = cxone_yaml(base, ids, out, state, verifiers=hmac_verifier(**settings), sink_extra=sink_extra, chunk=chunk)
    return run_yaml(text, env={"HMAC_KEY": key}), out, state


@pytest.fixture(scope="module")
def _recordings(tmp_path_factory):
    return recordings_dir(tmp_path_factory.mktemp("recs"), big=1, seconds=20)


@pytest.fixture
def recs(tmp_path, _recordings):
    return Path(shutil.copytree(_recordings, tmp_path / "recordings"))


def ids(recs: Path) -> list[str]:
    return sorted(p.stem for p in recs.iterdir() if p.suffix != ".md")


def by_id(summary):
    return {r.id: r for r in summary.results}


def hmac_verdict(result):
    return next(v for v in result.verdicts if v.verifier == "hmac-sha256")


@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_whole_recording_mac_from_metadata(recs, tmp_path, encoding):
    with emulator(recs, hmac_key=KEY, hmac_encoding=encoding) as (emu, base):
        summary, out, _ = run(base, ids(recs), tmp_path, encoding=encoding)
    assert summary.ok, [r.message for r in summary.failed]
    for r in summary.results:
        data = next(recs.glob(f"{r.id}.*")).read_bytes()
        v = hmac_verdict(r)
        assert v.details == {"hmac-sha256": mac(data, encoding), "mode": "whole", "bytes": len(data), "verified": True}
        assert r.digests["hmac-sha256"] == mac(data, encoding)


@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_per_segment_macs(recs, tmp_path, encoding):
    size = (recs / f"{BIG}.wav").stat().st_size
    with emulator(recs, hmac_key=KEY, hmac_encoding=encoding) as (emu, base):
        summary, out, state = run(base, [BIG, "100003"], tmp_path, encoding=encoding, mode="segment")
    assert summary.ok, [r.message for r in summary.failed]
    v = hmac_verdict(by_id(summary)[BIG])
    assert v.details["segments"] == -(-size // CHUNK) and v.details["covered_bytes"] == size
    assert v.details["verified"] and "uncovered_verified_by" not in v.details


def test_per_segment_macs_with_drops_cover_the_declared_ranges(recs, tmp_path):
    """A response cut short and resumed: the first response's MAC is still checked over its
    whole Content-Range (its bytes arrive over two responses), the resumed one's over its own."""
    size = (recs / f"{BIG}.wav").stat().st_size
    with emulator(recs, hmac_key=KEY) as (emu, base):
        emu.faults.schedule(FaultAction(FaultKind.NONE), FaultAction(FaultKind.DROP, drop_after=1000),
                            FaultAction(FaultKind.NONE), FaultAction(FaultKind.DROP, drop_after=30000),
                            kinds=[RequestKind.DOWNLOAD])
        summary, _, _ = run(base, [BIG], tmp_path, mode="segment", field="no-such-field")
        drops = emu.stats.snapshot()["drops"]
    (r,) = summary.results
    assert drops == 2 and r.ok, r.message
    v = hmac_verdict(r)
    # 5 planned segments + 2 resumed partial responses, each verified; every byte covered.
    assert v.details["segments"] == -(-size // CHUNK) + 2 and v.details["covered_bytes"] == size


def test_range_ignored_mid_download_is_vouched_for_by_the_whole_mac_or_fails(recs, tmp_path):
    for field, ok in (("hmac", True), ("no-such-field", False)):
        with emulator(recs, hmac_key=KEY) as (emu, base):
            emu.faults.schedule(FaultAction(FaultKind.NONE), FaultAction(FaultKind.IGNORE_RANGE),
                                kinds=[RequestKind.DOWNLOAD])
            summary, _, _ = run(base, [BIG], tmp_path / field, mode="segment", field=field)
        (r,) = summary.results
        v = hmac_verdict(r)
        assert v.details["covered_bytes"] == CHUNK  # only the first 206 had a usable segment MAC
        if ok:
            assert r.ok and v.details["uncovered_verified_by"] == "metadata field 'hmac'"
        else:
            assert r.reason == "hmac-segment-uncovered" and f"bytes {CHUNK}-" in r.message


def test_whole_mac_from_a_response_header(recs, tmp_path):
    with emulator(recs, hmac_key=KEY, hmac_encoding="base64") as (emu, base):
        summary, _, _ = run(base, ["100001", BIG], tmp_path, encoding="base64", expected_from="header",
                            field="no-such-field")
    assert summary.ok, [r.message for r in summary.failed]


def test_missing_mac(recs, tmp_path):
    with emulator(recs) as (emu, base):  # not signing
        whole, _, _ = run(base, ["100001"], tmp_path / "a")
        segment, _, _ = run(base, [BIG], tmp_path / "b", mode="segment")
        optional, _, _ = run(base, ["100001", BIG], tmp_path / "c", mode="segment", required="false")
    (r,) = whole.results
    assert r.reason == "hmac-missing" and "metadata field 'hmac'" in r.message
    (r,) = segment.results
    assert r.reason == "hmac-segment-missing" and "X-Segment-HMAC" in r.message and "bytes 0-65535" in r.message
    assert r.bytes <= 4 * CHUNK  # rejected at the first response
    assert optional.ok and all(hmac_verdict(r).details["verified"] is False for r in optional.results)


def test_wrong_key_fails_every_mode(recs, tmp_path):
    with emulator(recs, hmac_key=KEY) as (emu, base):
        whole, _, _ = run(base, [BIG], tmp_path / "a", key="another-key")
        segment, _, _ = run(base, [BIG], tmp_path / "b", key="another-key", mode="segment")
    assert whole.results[0].reason == "hmac-mismatch"
    r = segment.results[0]
    assert r.reason == "hmac-segment-mismatch" and "bytes 0-65535" in r.message and r.bytes < 5 * CHUNK


def test_tampered_recording_fails_hmac_and_sha256_and_is_quarantined(recs, tmp_path):
    data = (recs / f"{BIG}.wav").read_bytes()
    tampered = bytearray(data)
    tampered[len(data) // 2] ^= 0x01
    with emulator(recs, hmac_key=KEY, tamper=(BIG,)) as (emu, base):
        summary, out, state = run(base, [BIG, "100001"], tmp_path, sink_extra="on_failure: quarantine")
    r = by_id(summary)[BIG]
    assert by_id(summary)["100001"].ok
    verdicts = {v.verifier: v for v in r.verdicts}
    assert verdicts["sha256"].reason == "sha256-mismatch" and verdicts["hmac-sha256"].reason == "hmac-mismatch"
    assert r.reason == "sha256-mismatch"  # the first verifier's; both verdicts are kept
    assert not (out / f"{BIG}.wav.gz").exists()
    (report_path,) = (out / ".quarantine").glob(f"{BIG}.*.wav.gz.json")
    report = json.loads(report_path.read_text())
    assert report["reason"] == "sha256-mismatch" and report["recording_id"] == BIG
    assert {v["verifier"]: v["reason"] for v in report["verdicts"]} == {"sha256": "sha256-mismatch",
                                                                       "hmac-sha256": "hmac-mismatch"}
    kept = out / ".quarantine" / report["file"]
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == report["stored_sha256"]
    with gzip.open(kept) as f:
        assert f.read() == bytes(tampered)  # exactly what was received, kept for inspection
    assert report["original_bytes"] == len(data) and report["compression"] == "gzip"
    # The ledger and the audit log hold both verdicts, and where the bytes went.
    ledger = Ledger(state / "ledger.sqlite3")
    try:
        row = ledger.get("cxone", BIG)
        assert row.state == "failed" and {v["reason"] for v in row.verdicts} == {"sha256-mismatch", "hmac-mismatch"}
    finally:
        ledger.close()
    audit = [e for e in read_audit(state / "audit.jsonl") if e.get("stream") == BIG]
    (line,) = [e for e in audit if e["event"] == "stream"]
    assert [v["reason"] for v in line["verdicts"]] == ["sha256-mismatch", "hmac-mismatch"]
    (q,) = [e for e in audit if e["event"] == "quarantine"]
    assert q["path"] == str(kept) and q["reason"] == "sha256-mismatch"
    assert KEY not in (state / "audit.jsonl").read_text() and KEY not in report_path.read_text()


def test_tampered_segment_aborts_the_download_at_that_segment(recs, tmp_path):
    size = (recs / f"{BIG}.wav").stat().st_size
    bad_segment = (size // 2) // CHUNK * CHUNK
    with emulator(recs, hmac_key=KEY, tamper=(BIG,)) as (emu, base):
        summary, out, _ = run(base, [BIG], tmp_path, mode="segment")
        served = emu.stats.bytes_served(BIG)
    (r,) = summary.results
    assert r.reason == "hmac-segment-mismatch"
    assert f"bytes {bad_segment}-{bad_segment + CHUNK - 1}" in r.message
    assert served < size and r.bytes < size
    assert {v.verifier: v.reason for v in r.verdicts} == {"sha256": "incomplete", "hmac-sha256": "hmac-segment-mismatch"}
    assert not list(out.rglob("*.gz"))  # deleted: on_failure defaults to delete


# ----------------------------------------------------------------------------- units


def _run(settings: HmacSettings, stream: Stream):
    return HmacVerifier(settings, PipelineContext("p", Path("."))).begin(stream)


def test_resumed_stream_bytes_before_the_first_response_need_the_whole_mac():
    """After a crash the engine replays checkpointed bytes to the verifier before any response:
    those bytes have no segment MAC, so the whole-recording MAC must vouch for them."""
    data = bytes(range(256)) * 40
    for whole, ok in ((mac(data), True), (None, False)):
        stream = Stream(StreamSpec("r1", {} if whole is None else {"hmac": whole}), source="s", pipeline="p",
                        audit=None)
        run = _run(HmacSettings(key=KEY, mode="segment"), stream)
        log = ResponseLog.of(stream)
        run.update(Chunk(0, data[:4000]))  # replayed from the checkpoint
        log.record(4000, len(data) - 4000, 206, {"X-Segment-HMAC": mac(data[4000:], prefix=(4000).to_bytes(8, "big"))})
        run.update(Chunk(4000, data[4000:]))
        verdict = run.finish()
        assert verdict.details["covered_bytes"] == len(data) - 4000
        assert verdict.ok is ok, verdict
        if not ok:
            assert verdict.reason == "hmac-segment-uncovered" and "bytes 0-3999" in verdict.message


def test_malformed_and_inconsistent_macs():
    stream = Stream(StreamSpec("r2", {"hmac": "zz"}), source="s", pipeline="p", audit=None)
    run = _run(HmacSettings(key=KEY), stream)
    run.update(Chunk(0, b"abc"))
    assert run.finish().reason == "hmac-malformed"
    stream = Stream(StreamSpec("r3"), source="s", pipeline="p", audit=None)
    run = _run(HmacSettings(key=KEY, expected_from="header"), stream)
    log = ResponseLog.of(stream)
    log.record(0, 2, 206, {"x-recording-hmac": mac(b"ab")})
    run.update(Chunk(0, b"ab"))
    log.record(2, 2, 206, {"x-recording-hmac": mac(b"other")})
    with pytest.raises(VerificationError) as e:
        run.update(Chunk(2, b"cd"))
    assert e.value.reason == "hmac-inconsistent"


def test_key_settings_are_validated_and_never_shown():
    text = textwrap.dedent("""
        pipelines:
          p:
            source: {type: cxone, api_base: "http://127.0.0.1:1", token_url: "http://127.0.0.1:1/t",
                     client_id: c, client_secret: s, recordings: ["1"]}
            verifiers: [{type: hmac-sha256, key: "${K}", key_encoding: hex}]
            sinks: [{type: file, dir: /tmp/x}]
    """)
    with pytest.raises(ConfigError) as e:
        parse_config(text, get_registry(), environ={"K": "not-hex-secret-value"})
    assert "not valid hex" in str(e.value) and "not-hex-secret-value" not in str(e.value)
    settings = HmacSettings(key="abcd" * 8, key_encoding="hex")
    assert "abcd" not in repr(settings) and "abcd" not in str(settings)


def test_range_ignored_on_the_first_request_is_one_whole_body_segment(recs, tmp_path):
    size = (recs / f"{BIG}.wav").stat().st_size
    with emulator(recs, hmac_key=KEY) as (emu, base):
        emu.faults.schedule(FaultAction(FaultKind.IGNORE_RANGE), kinds=[RequestKind.DOWNLOAD])
        summary, _, _ = run(base, [BIG], tmp_path, mode="segment", field="no-such-field")
    (r,) = summary.results
    assert r.ok, r.message
    assert hmac_verdict(r).details["segments"] == 1 and hmac_verdict(r).details["covered_bytes"] == size


def test_segment_mode_with_a_source_that_reports_no_responses_fails_clearly():
    stream = Stream(StreamSpec("r4"), source="s", pipeline="p", audit=None)
    run = _run(HmacSettings(key=KEY, mode="segment"), stream)
    run.update(Chunk(0, b"audio"))
    verdict = run.finish()
    assert verdict.reason == "hmac-segment-uncovered" and "bytes 0-4" in verdict.message
    assert "reported no HTTP responses" in verdict.message
