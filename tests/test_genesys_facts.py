"""Recording facts from Genesys analytics conversation details: parsed (pure), and carried
through a pipeline into names, manifests and results."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone

from voxpipe_genesys import api
from voxpipe_genesys.emulator import bodies
from voxpipe_genesys.emulator.catalogue import derived_id, load_catalogue

from genesys_helpers import emulator, make_recordings, pipeline_yaml, run_yaml


def test_conversation_facts_from_analytics_details():
    item = {
        "conversationId": "c-1", "conversationStart": "2026-11-03T10:15:00.250Z",
        "conversationEnd": "2026-11-03T10:20:00Z", "originatingDirection": "inbound",
        "participants": [
            {"participantId": "p-ivr", "purpose": "ivr", "sessions": [{"mediaType": "voice", "ani": "tel:+1999"}]},
            {"participantId": "p-cust", "purpose": "customer", "sessions": [
                {"mediaType": "voice", "ani": "tel:+15551230000", "dnis": "tel:+18005550100"}]},
            {"participantId": "p-acd", "purpose": "acd", "participantName": "Billing", "sessions": [
                {"mediaType": "voice", "segments": [{"queueId": "q-7"}]}]},
            {"participantId": "p-agent", "purpose": "agent", "userId": "u-9", "participantName": "Ada",
             "sessions": [{"mediaType": "voice"}]},
        ]}
    facts = api.conversation_facts(item)
    assert facts.conversation_id == "c-1" and facts.platform == "genesys" and facts.direction == "inbound"
    assert facts.started_at == datetime(2026, 11, 3, 10, 15, 0, 250000, tzinfo=timezone.utc)
    assert facts.duration == 299.75
    assert (facts.ani, facts.dnis) == ("+15551230000", "+18005550100")  # the customer's, not the IVR's
    assert (facts.queue, facts.agent_id, facts.agent_name) == ("Billing", "u-9", "Ada")
    assert facts.participants == ("p-ivr", "p-cust", "p-acd", "p-agent")
    # without an acd participant name, the queue id; odd shapes are left out, never an error
    del item["participants"][2]["participantName"]
    item["originatingDirection"] = "sideways"
    item["participants"].append({"purpose": "agent", "userId": 7, "sessions": "nope"})
    facts = api.conversation_facts(item)
    assert facts.queue == "q-7" and facts.direction is None and facts.agent_id == "u-9"
    assert api.conversation_facts({"conversationId": "c-2"}).to_json() == {"platform": "genesys",
                                                                          "conversation_id": "c-2"}
    # parsed with every analytics page
    [conv], _ = api.parse_conversation_page({"totalHits": 1, "conversations": [item]}, "page 1")
    assert conv.facts.agent_name == "Ada" and conv == api.Conversation("c-1", "2026-11-03T10:15:00.250Z")


def test_emulator_details_give_consistent_facts(tmp_path):
    make_recordings(tmp_path / "rec")
    cat = load_catalogue(tmp_path / "rec")
    conv = cat.conversations[3]
    facts = api.conversation_facts(bodies.conversation_details(conv))
    assert facts.conversation_id == conv.conversation_id and facts.started_at == conv.start
    assert facts.direction == conv.direction and facts.queue == conv.queue_name and facts.agent_id == conv.agent_id


def test_names_manifests_and_results_use_the_conversation_s_start_and_facts(tmp_path):
    originals = make_recordings(tmp_path / "rec")
    archive = tmp_path / "archive"
    cat = load_catalogue(tmp_path / "rec")
    by_key = {c.key: c for c in cat.conversations}
    explicit = by_key["call-d"].conversation_id  # named by id: facts come from the details lookup
    text = pipeline_yaml(url="URL", archive=archive, source=f"""
        interval: 2026-11-01T00:00:00Z/2026-11-02T00:00:00Z
        conversations: [{explicit}]
    """).replace("sinks: [{type: gzip, dir: " + str(archive) + "}]",
                 "sinks: [{type: gzip, dir: " + str(archive) + ", name: '{year}/{month}/{day}/{hour}/"
                 "{conversation_id}-{recording_id}.{format}'}]")
    with emulator(tmp_path / "rec") as (url, _):
        summary, _ = run_yaml(text.replace("URL", url))
    assert summary.ok, [(r.id, r.message) for r in summary.failed]
    assert len(summary.results) == 3  # call-a, call-b (the interval), call-d (explicit)
    for key, name in (("call-a", "call-a.wav"), ("call-b", "call-b.wav"), ("call-d", "call-d.wav")):
        conv = by_key[key]
        rid = derived_id("recording", name)
        where = archive / f"{conv.start:%Y/%m/%d/%H}" / f"{conv.conversation_id}-{rid}.wav.gz"
        assert gzip.decompress(where.read_bytes()) == originals[name], where
        manifest = json.loads(where.with_name(where.name + ".json").read_text())
        facts = manifest["facts"]
        assert facts["conversation_id"] == conv.conversation_id and facts["platform"] == "genesys"
        assert facts["started_at"].startswith(conv.start.strftime("%Y-%m-%dT%H:%M"))
        assert facts["direction"] == conv.direction and facts["queue"] == conv.queue_name
        assert facts["agent_id"] == conv.agent_id and facts["agent_name"] == conv.agent_name
        assert facts["ani"] and facts["dnis"] and len(facts["participants"]) == 3
        [result] = [r for r in summary.results if r.id == rid]
        assert result.facts["conversation_id"] == conv.conversation_id
