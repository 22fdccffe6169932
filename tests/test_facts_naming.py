"""Recording facts, the phone-number policy, name templates from facts, manifests carrying them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from voxpipe import naming
from voxpipe.errors import SinkError
from voxpipe.facts import PhoneNumberPolicy, RecordingFacts
from voxpipe.manifest import build_manifest, parse_manifest, recording_time
from voxpipe.model import Stream, StreamResult, StreamSpec

START = datetime(2026, 3, 4, 22, 15, 7, tzinfo=timezone.utc)
RECEIVED = datetime(2026, 3, 6, 1, 2, 3, tzinfo=timezone.utc).timestamp()


def test_times_are_normalised_to_utc_and_naive_taken_as_utc():
    f = RecordingFacts(started_at="2026-03-04T23:15:07+01:00", ended_at="2026-03-04T22:20:07")
    assert f.started_at == START
    assert f.ended_at == START + timedelta(minutes=5)
    assert f.duration == 300.0
    assert f.to_json()["started_at"] == "2026-03-04T22:15:07Z"


def test_direction_spellings_and_unknown_fields():
    assert RecordingFacts(direction="INBOUND").direction == "inbound"
    assert RecordingFacts(direction="sideways").direction is None
    with pytest.raises(ValidationError):
        RecordingFacts(contactid="1")  # a typo is an error, not silently dropped


def test_merge_keeps_known_and_takes_new():
    a = RecordingFacts(contact_id="42", skill="Sales")
    b = a.merged({"started_at": START, "skill": None, "agent_id": "7"})
    assert (b.contact_id, b.skill, b.agent_id, b.started_at) == ("42", "Sales", "7", START)
    assert b.acd_call_id == "42"
    assert b.platform_ids() == ("42",)


def test_from_json_is_lenient_with_newer_or_broken_manifests():
    f = RecordingFacts.from_json({"contact_id": "1", "started_at": "not a time", "future_field": 3})
    assert f.contact_id == "1" and f.started_at is None
    assert RecordingFacts.from_json("garbage") == RecordingFacts()


def test_phone_policy_hash_is_keyed_stable_and_drop_removes():
    facts = RecordingFacts(ani="+1 (555) 010-0199", dnis="18005550100")
    hashed = PhoneNumberPolicy("hash", "k1").apply(facts)
    assert hashed.ani.startswith("hmac-sha256:") and "555" not in hashed.ani
    assert hashed.ani == PhoneNumberPolicy("hash", "k1").apply(RecordingFacts(ani="+15550100199")).ani
    assert hashed.ani != PhoneNumberPolicy("hash", "k2").apply(facts).ani
    assert PhoneNumberPolicy("hash", "k1").apply(hashed) == hashed  # not hashed twice
    dropped = PhoneNumberPolicy("drop").apply(facts)
    assert dropped.ani is None and dropped.dnis is None
    assert PhoneNumberPolicy("keep").apply(facts) == facts
    with pytest.raises(ValueError, match="phone_number_key"):
        PhoneNumberPolicy("hash")
    assert "k1" not in repr(PhoneNumberPolicy("hash", "k1"))


def test_stream_applies_policy_to_discovery_and_later_facts():
    spec = StreamSpec("r1", {}, RecordingFacts(ani="5550100"))
    stream = Stream(spec, source="cxone", pipeline="p", audit=None, phone_policy=PhoneNumberPolicy("drop"))
    assert stream.facts.ani is None
    stream.update_facts({"dnis": "5550199", "contact_id": "c9"})
    assert stream.facts.dnis is None and stream.facts.contact_id == "c9"


def _expand(template, facts=None, metadata=None):
    return naming.expand(template, directory=Path("/a"), recording_id="r1", metadata=metadata or {"format": "wav"},
                         source="cxone", pipeline="p", started_at=RECEIVED, facts=facts)


def test_dates_in_names_come_from_the_call_not_the_download():
    facts = RecordingFacts(started_at=START, contact_id="5001", skill="Sales / US")
    path = _expand("{year}/{month}/{day}/{hour}/{contact_id}-{skill}.{format}", facts)
    assert path == Path("/a/2026/03/04/22/5001-Sales_US.wav")
    assert _expand("{received_date}/{recording_date}", facts) == Path("/a/2026-03-06/2026-03-04")
    # no facts: a metadata date, then the receive time
    assert _expand("{date}", metadata={"format": "wav", "date": "2025-12-31T23:59:00Z"}) == Path("/a/2025-12-31")
    assert _expand("{date}") == Path("/a/2026-03-06")


def test_missing_and_unsafe_facts_fail_the_recording():
    with pytest.raises(SinkError) as info:
        _expand("{conversation_id}.wav", RecordingFacts(contact_id="1"))
    assert info.value.reason == "missing-name-field" and "{conversation_id}" in str(info.value)
    with pytest.raises(SinkError) as info:
        _expand("{contact_id}.wav", RecordingFacts(contact_id="../../etc"))
    assert info.value.reason == "unsafe-name"
    with pytest.raises(ValueError, match="unknown field"):
        naming.check_template("{nope}")


def test_manifest_carries_facts_and_the_recording_date(tmp_path):
    facts = RecordingFacts(started_at=START, contact_id="5001", segment_id="s-1", ani="hmac-sha256:ab")
    stream = Stream(StreamSpec("r1", {"format": "wav"}, facts), source="cxone", pipeline="p", audit=None)
    stream.started_at = RECEIVED
    result = StreamResult(id="r1", source="cxone", pipeline="p", ok=True, bytes=10, digests={"sha256": "0" * 64})
    doc = build_manifest(stream=stream, result=result, stored_name="r1.wav", stored_size=10,
                         stored_sha256="1" * 64, compression=None, fmt="wav")
    assert doc["recording_date"] == "2026-03-04T22:15:07Z" and doc["recording_date_origin"] == "facts"
    assert doc["received_at"] == "2026-03-06T01:02:03Z"
    assert doc["facts"]["contact_id"] == "5001"
    manifest = parse_manifest(tmp_path / "r1.wav.json", json.dumps(doc).encode())
    assert manifest.facts.segment_id == "s-1"
    assert manifest.interaction_ids[:2] == ("5001", "s-1")
    assert recording_time(manifest) == (START, "recording_date")


def test_facts_travel_through_a_shared_queue_with_the_phone_policy_applied():
    from voxpipe.engine import QUEUED_FACTS_KEY, _claimed_spec, _queue_metadata
    from voxpipe.ledger.interface import Claim, Lease, RecordingState

    spec = StreamSpec("r1", {"format": "wav"}, RecordingFacts(started_at=START, contact_id="c1", ani="5550100"))
    queued = _queue_metadata(spec, PhoneNumberPolicy("drop"))
    assert queued[QUEUED_FACTS_KEY] == {"started_at": "2026-03-04T22:15:07Z", "contact_id": "c1"}
    json.dumps(queued)  # what the shared ledger stores is JSON
    row = RecordingState(source="cxone", id="r1", state="queued", reason=None, message=None, attempts=0, size=None,
                         etag=None, resume_offset=0, checkpoint=None, sha256=None, stored=None, verdicts=None,
                         updated_at=0.0)
    claim = Claim(lease=Lease("cxone", "r1", "w1", 1, 0.0), metadata=json.loads(json.dumps(queued)), state=row)
    back = _claimed_spec(claim)
    assert back.metadata == {"format": "wav"}
    assert back.facts == RecordingFacts(started_at=START, contact_id="c1")
