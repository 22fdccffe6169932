"""Recording fileStates: transient ones waited for, then deferred to the next run without
an attempt counted; the others failed with reasons of their own."""

from __future__ import annotations

import gzip
import json

import pytest

from voxpipe.audit import read_audit
from voxpipe.ledger import Ledger
from voxpipe_genesys import filestates
from voxpipe_genesys.emulator.catalogue import derived_id

from genesys_helpers import ALL, emulator, make_recordings, pipeline_yaml, run_yaml


def rid(name: str) -> str:
    return derived_id("recording", name)


def cid(name: str) -> str:
    return derived_id("conversation", name.split("__")[0].removesuffix(".wav"))


@pytest.mark.parametrize("state, action, reason", [
    ("AVAILABLE", "download", None), ("RESTORED", "download", None), (None, "download", None),
    ("available", "download", None), ("UPLOADING", "wait", None), ("RESTORING", "wait", None),
    ("ARCHIVED", "fail", "archived"), ("DELETED", "fail", "deleted"), ("ERROR", "fail", "recording-error"),
    ("SOMETHING_NEW", "fail", "not-available"),
])
def test_classify_every_file_state(state, action, reason):
    verdict = filestates.classify(state)
    assert (verdict.action, verdict.reason) == (action, reason)


def test_next_check_is_bounded_by_the_wait_limit():
    assert filestates.next_check(100.0, 101.0, 2.0, 10.0) == 103.0
    assert filestates.next_check(100.0, 109.0, 2.0, 10.0) is None
    assert filestates.next_check(100.0, 100.0, 0.5, 0.0) is None  # transient_wait 0: defer at once


def test_deferred_store_round_trip_expiry_and_bad_file(tmp_path):
    path = tmp_path / "d.json"
    store = filestates.DeferredStore.load(path)
    store.defer("r1", "c1", "UPLOADING", now=1000.0)
    store.defer("r2", "c2", "RESTORING", now=1001.0)
    store.save()
    again = filestates.DeferredStore.load(path)
    assert again.conversation_ids() == ["c1", "c2"]
    assert again.defer("r1", "c1", "UPLOADING", now=5000.0) == filestates.Deferred("r1", "c1", "UPLOADING", 1000.0, 2)
    again.resolve("r2")
    assert [e.recording_id for e in again.expire(now=1000.0 + filestates.MAX_DEFERRED_AGE + 1)] == ["r1"]
    again.save()
    assert not path.exists()  # empty: no file
    path.write_text('{"recordings": {"r": {"conversationId": "c"}}}')
    with pytest.raises(ValueError, match=r"d\.json: not a deferred-recordings file \(KeyError"):
        filestates.DeferredStore.load(path)


def test_transient_recordings_are_waited_for_and_other_states_fail_with_their_reason(tmp_path):
    originals = make_recordings(tmp_path / "rec")
    archive = tmp_path / "archive"
    with emulator(tmp_path / "rec", uploading=frozenset({"call-a.wav"}), restoring=frozenset({"call-c.wav"}),
                  transient_polls=3, archived=frozenset({"call-d.wav"}), deleted=frozenset({"call-e__agent.wav"}),
                  errored=frozenset({"call-e__customer.wav"})) as (url, app):
        summary, _ = run_yaml(pipeline_yaml(url, archive, source=f"""
            interval: {ALL}
            transient_wait: 30
        """))
    by_id = {r.id: r for r in summary.results}
    assert len(by_id) == 6
    for name in ("call-a.wav", "call-c.wav", "call-b.wav"):  # UPLOADING → AVAILABLE, RESTORING → RESTORED
        assert by_id[rid(name)].ok, by_id[rid(name)].message
        [path] = list(archive.glob(f"{rid(name)}.*.gz"))
        assert gzip.decompress(path.read_bytes()) == originals[name]
    assert by_id[rid("call-c.wav")].metadata["fileState"] == "RESTORED"
    reasons = {name: (by_id[rid(name)].reason, by_id[rid(name)].message)
               for name in ("call-d.wav", "call-e__agent.wav", "call-e__customer.wav")}
    assert reasons["call-d.wav"][0] == "archived" and "restore it" in reasons["call-d.wav"][1]
    assert reasons["call-e__agent.wav"][0] == "deleted" and "fileState DELETED" in reasons["call-e__agent.wav"][1]
    assert reasons["call-e__customer.wav"][0] == "recording-error"
    audit = read_audit(archive / ".state" / "audit.jsonl")
    waiting = {e["recording"]: e["file_state"] for e in audit if e["event"] == "recording-waiting"}
    assert waiting == {rid("call-a.wav"): "UPLOADING", rid("call-c.wav"): "RESTORING"}
    assert not [e for e in audit if e["event"] == "recording-deferred"]
    assert not (archive / ".state" / "genesys-deferred.json").exists()
    assert app.stats.requests["recordingmetadata"] >= 5 + 2 * 3  # two conversations re-read until ready


def test_still_uploading_is_left_for_the_next_run_without_an_attempt(tmp_path):
    originals = make_recordings(tmp_path / "rec")
    archive = tmp_path / "archive"
    state = archive / ".state"
    with emulator(tmp_path / "rec", uploading=frozenset({"call-a.wav"}), transient_polls=1000) as (url, _):
        summary, _ = run_yaml(pipeline_yaml(url, archive, source=f"""
            interval: {ALL}
            transient_wait: 0.3
        """))
    assert summary.ok and len(summary.results) == 5  # the other five archived; call-a is not a failure
    assert rid("call-a.wav") not in {r.id for r in summary.results}
    ledger = Ledger(state / "ledger.sqlite3")
    try:
        assert ledger.get("genesys", rid("call-a.wav")) is None  # no attempt counted
    finally:
        ledger.close()
    doc = json.loads((state / "genesys-deferred.json").read_text())
    assert doc["recordings"][rid("call-a.wav")]["conversationId"] == cid("call-a.wav")
    assert doc["recordings"][rid("call-a.wav")]["fileState"] == "UPLOADING"
    [deferred] = [e for e in read_audit(state / "audit.jsonl") if e["event"] == "recording-deferred"]
    assert deferred["recording"] == rid("call-a.wav") and deferred["runs"] == 1

    # the next night's run covers another interval: the deferred recording is looked up anyway,
    # and now that it is uploaded it is archived, at its first attempt
    with emulator(tmp_path / "rec") as (url, _):
        summary, _ = run_yaml(pipeline_yaml(url, archive, source="""
            interval: 2026-12-01T00:00:00Z/2026-12-02T00:00:00Z
        """))
    assert summary.ok and [r.id for r in summary.results] == [rid("call-a.wav")]
    [result] = summary.results
    assert result.attempts == 1
    [path] = list(archive.glob(f"{rid('call-a.wav')}.*.gz"))
    assert gzip.decompress(path.read_bytes()) == originals["call-a.wav"]
    assert not (state / "genesys-deferred.json").exists()
