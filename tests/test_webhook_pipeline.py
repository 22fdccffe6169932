"""The webhook sink in real pipelines from YAML: events, signatures, restarts, the CLI, and kill -9."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from voxpipe.cli import cli
from voxpipe.config import parse_config
from voxpipe.engine import Runner
from voxpipe.errors import ConfigError
from voxpipe.serving import serve_in_thread
from voxpipe_webhook.outbox import Outbox
from voxpipe_webhook.schedule import State

from plugin_fixtures import COLLECTED, MemorySource, ThirdPartyPlugin, pattern
from webhook_receiver import Receiver, always, reserve_port, verified

S1 = "whsec_" + base64.b64encode(b"pipeline-secret-one-0123456789ab").decode()
S2 = "whsec_" + base64.b64encode(b"pipeline-secret-two-0123456789abcdef").decode()
TOKEN = "tok-9f8e7d6c5b4a"
ENV = {"S1": S1, "S2": S2, "TOKEN": TOKEN}
QUALITY = {"packets": 250, "bytes": 40000, "frames_dropped": 1, "frames_late": 2, "jitter_ms": 3.5, "bitrate": 64000}


class CallSource(MemorySource):
    """Memory source that reports call quality and audits its segments, as the voice source will."""

    type = "callmem"

    async def read(self, stream):
        stream.metadata["quality"] = dict(QUALITY)
        stream.metadata["_private_url"] = "https://bucket.example/x?X-Amz-Signature=abc"
        async for chunk in super().read(stream):
            stream.audit("segment", offset=chunk.offset, length=len(chunk.data))
            yield chunk


class CallPlugin(ThirdPartyPlugin):
    from voxpipe import hookimpl

    @hookimpl
    def register_sources(self, register):
        register(MemorySource)
        register(CallSource)


def pipeline_yaml(tmp_path: Path, url: str, *, source: str, drain: float = 10.0, extra: str = "") -> str:
    return textwrap.dedent(f"""
        pipelines:
          p:
            state_dir: {tmp_path}/state
            source: {source}
            verifiers: [{{type: sha256}}]
            sinks:
              - {{type: collect}}
              - type: webhook
                url: {url}/hooks/voxpipe
                secrets: ["${{S1}}", "${{S2}}"]
                retry_schedule: [0, 0.1]
                timeout: 5
                drain_timeout: {drain}
                headers: {{Authorization: "Bearer ${{TOKEN}}"}}
                {extra}
    """)


def run_pipeline(text: str, registry) -> object:
    config = parse_config(text, registry, filename="p.yaml", environ=ENV)
    return trio.run(Runner(config.pipeline(None)).run)


def test_pipeline_announces_every_outcome_signed_with_rotation(register_plugin, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    COLLECTED.clear()
    receiver = Receiver()
    with serve_in_thread(receiver) as url, register_plugin(CallPlugin(), name="calls") as registry:
        summary = run_pipeline(pipeline_yaml(tmp_path, url, source="{type: callmem, ids: [a, b, bad, again], "
                                             "size: 30000, chunk: 7000, fail: [bad], restart_once: [again]}"),
                               registry)
    got = receiver.snapshot()
    assert sorted(r.event()["recording_id"] for r in got) == ["a", "again", "b", "bad"]  # one per stream outcome
    assert verified(got, S1) == verified(got, S2)  # both rotation keys verify every delivery
    events = {e["recording_id"]: e for e in verified(got, S1)}
    a = events["a"]
    assert a == {
        "type": "stream.stored", "recording_id": "a", "source": "callmem", "pipeline": "p", "success": True,
        "total_bytes": 30000, "chunks_processed": 5, "latency_ms": a["latency_ms"], "attempts": 1,
        "timestamp": a["timestamp"], "sha256": hashlib.sha256(pattern("a", 30000)).hexdigest(),
        "location": "memory://a", "stored": [{"sink": "collect", "path": "memory://a"}],
        "reason": None, "message": None, "audit_entries": a["audit_entries"], "quality": QUALITY,
    }
    assert 0 < a["latency_ms"] < 30_000 and a["timestamp"].endswith("Z")
    assert [(e["event"], e["offset"]) for e in a["audit_entries"]] == [("segment", o) for o in range(0, 30000, 7000)]
    bad = events["bad"]
    assert (bad["type"], bad["success"], bad["reason"], bad["location"]) == ("stream.failed", False, "simulated", None)
    assert "byte 21000" in bad["message"] and bad["chunks_processed"] == 3 and bad["stored"] == [] and bad["quality"] == QUALITY
    assert events["again"]["attempts"] == 2 and events["again"]["success"]  # the restarted attempt was not announced
    by_id = {r.id: r for r in summary.results}
    for req in got:
        assert req.headers["authorization"] == f"Bearer {TOKEN}" and req.headers["x-stream-source"] == "callmem"
        assert len(req.headers["webhook-signature"].split(" ")) == 2
        rid = req.event()["recording_id"]
        if rid != "bad":  # the result records which event announced it
            assert {"sink": "webhook", "webhook_id": req.id} in by_id[rid].stored
    with Outbox(tmp_path / "state" / "outbox.sqlite3") as outbox:
        assert outbox.counts()["delivered"] == 4
        assert {e.id for e in outbox.events()} == {r.id for r in got}
    # nothing secret leaked: logs, outbox file, audit log, bodies
    secrets = [S1, S1[6:], S2[6:], TOKEN, "X-Amz-Signature"]
    blobs = [caplog.text, (tmp_path / "state" / "outbox.sqlite3").read_bytes().decode("latin-1"),
             (tmp_path / "state" / "audit.jsonl").read_text(), *(r.body.decode() for r in got)]
    for blob in blobs:
        for secret in secrets:
            assert secret not in blob
    assert "webhook-enqueued" in blobs[2] and '"state":"delivered"' in blobs[2]


def test_events_left_by_one_run_are_delivered_by_the_next(register_plugin, tmp_path):
    port = reserve_port()
    url = f"http://127.0.0.1:{port}"
    with register_plugin(CallPlugin(), name="calls") as registry:
        summary = run_pipeline(pipeline_yaml(tmp_path, url, drain=0.3,
                                             source="{type: memory, ids: [x, y], size: 1000, chunk: 500}"), registry)
        assert summary.ok
        with Outbox(tmp_path / "state" / "outbox.sqlite3") as outbox:
            left = outbox.events()
        assert [e.state for e in left] == [State.PENDING] * 2 and all(e.attempts >= 1 for e in left)
        receiver = Receiver()
        with serve_in_thread(receiver, port=port):
            run_pipeline(pipeline_yaml(tmp_path, url, drain=8, source="{type: memory, ids: []}"), registry)
    assert sorted(r.id for r in receiver.snapshot()) == sorted(e.id for e in left)
    assert sorted(e["recording_id"] for e in verified(receiver.snapshot(), S1)) == ["x", "y"]


def test_config_errors_are_clear_and_never_echo_secrets(register_plugin, tmp_path):
    weak = "whsec_" + base64.b64encode(b"short").decode()
    text = textwrap.dedent(f"""
        pipelines:
          p:
            source: {{type: memory, ids: [a]}}
            sinks:
              - type: webhook
                url: https://user:pw@example.com/hook
                secrets: ["{weak}", "not-a-whsec-value-XYZ"]
                headers: {{webhook-id: fixed}}
                retry_schedule: [0, 0]
    """)
    with register_plugin(CallPlugin(), name="calls") as registry:
        with pytest.raises(ConfigError) as info:
            parse_config(text, registry, filename="p.yaml", environ={})
    message = str(info.value)
    assert "p.yaml:7: pipelines.p.sinks[0].url: must not carry credentials" in message
    assert "p.yaml:8: pipelines.p.sinks[0].secrets: secrets[0]: webhook secret is 5 bytes" in message
    assert "p.yaml:9: pipelines.p.sinks[0].headers: header 'webhook-id' is set by the webhook sink" in message
    assert "p.yaml:10: pipelines.p.sinks[0].retry_schedule: the last delay" in message
    assert weak[6:] not in message and "not-a-whsec-value-XYZ" not in message and "pw@" not in message


def test_cli_lists_and_redelivers_with_the_same_id(register_plugin, tmp_path):
    receiver = Receiver(always(200))
    with serve_in_thread(receiver) as url, register_plugin(CallPlugin(), name="calls") as registry:
        text = pipeline_yaml(tmp_path, url, source="{type: memory, ids: [k1, k2], size: 1000, chunk: 1000}")
        run_pipeline(text, registry)
        config = tmp_path / "p.yaml"
        config.write_text(text)
        runner = CliRunner()
        listed = runner.invoke(cli, ["webhooks", str(tmp_path / "state"), "--json"])
        assert listed.exit_code == 0, listed.output
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        assert sorted(r["recording_id"] for r in rows) == ["k1", "k2"] and {r["state"] for r in rows} == {"delivered"}, rows
        assert rows[0]["endpoint"] == f"{url}/hooks/voxpipe" and rows[0]["attempts"] == 1
        table = runner.invoke(cli, ["webhooks", str(tmp_path / "state" / "outbox.sqlite3"), "--state", "failed"])
        assert table.exit_code == 0 and "0 pending, 2 delivered, 0 failed, 0 disabled" in table.output
        again = runner.invoke(cli, ["webhooks", str(tmp_path / "state"), "--redeliver", rows[0]["id"],
                                    "--config", str(config)], env=ENV)
        assert again.exit_code == 0, again.output
        assert f"{rows[0]['id']} {rows[0]['recording_id']}: delivered (HTTP 200)" in again.output
        missing = runner.invoke(cli, ["webhooks", str(tmp_path / "state"), "--redeliver", rows[0]["id"]])
        assert missing.exit_code == 2 and "needs --config" in missing.output
        unknown = runner.invoke(cli, ["webhooks", str(tmp_path / "state"), "--redeliver", "msg_nope",
                                      "--config", str(config)], env=ENV)
        assert unknown.exit_code == 2 and "no event 'msg_nope'" in unknown.output
    ids = [r.id for r in receiver.snapshot()]
    assert ids.count(rows[0]["id"]) == 2 and ids.count(rows[1]["id"]) == 1
    verified(receiver.snapshot(), S2)


RUN_SCRIPT = """
import sys, trio
sys.path.insert(0, {tests!r})
from plugin_fixtures import ThirdPartyPlugin
from voxpipe.plugins import get_plugin_manager, get_registry
from voxpipe.config import load_config
from voxpipe.engine import Runner
get_plugin_manager().register(ThirdPartyPlugin(), name="tp")
config = load_config({config!r}, get_registry())
trio.run(Runner(config.pipeline(None)).run)
"""

CLI_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from plugin_fixtures import ThirdPartyPlugin
from voxpipe.plugins import get_plugin_manager
get_plugin_manager().register(ThirdPartyPlugin(), name="tp")
from voxpipe.cli import cli
cli.main(args={args!r}, prog_name="voxpipe")
"""


def _outbox_rows(path: Path) -> list[tuple]:
    if not path.exists():
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute("SELECT id, recording_id, state, attempts FROM events").fetchall()
    except sqlite3.OperationalError:
        return []


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_sigkill_during_delivery_then_restart_delivers_every_event(tmp_path):
    port = reserve_port()
    ids = [f"r{i}" for i in range(6)]
    config = tmp_path / "p.yaml"
    config.write_text(textwrap.dedent(f"""
        pipelines:
          p:
            state_dir: {tmp_path}/state
            source: {{type: memory, ids: {ids}, size: 20000, chunk: 5000}}
            verifiers: [{{type: sha256}}]
            sinks:
              - {{type: file, dir: {tmp_path}/archive}}
              - type: webhook
                url: http://127.0.0.1:{port}/hook
                secrets: ["${{S1}}"]
                retry_schedule: [0, 0.3]
                timeout: 5
                drain_timeout: 10
    """))
    outbox_path = tmp_path / "state" / "outbox.sqlite3"
    env = {**os.environ, **ENV}
    tests = str(Path(__file__).parent)
    proc = subprocess.Popen([sys.executable, "-c", RUN_SCRIPT.format(tests=tests, config=str(config))], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # receiver down: every event is enqueued and attempted (connection refused), none delivered
        _wait(lambda: len(rows := _outbox_rows(outbox_path)) == 6 and all(r[3] >= 1 for r in rows), 20,
              "6 attempted events")
        receiver = Receiver(lambda n, r: (200, {}, 2.0))  # slow: the process is killed mid-delivery
        with serve_in_thread(receiver, port=port):
            _wait(lambda: len(receiver.snapshot()) >= 1, 10, "a delivery in flight")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            receiver.plan = always(200)
            in_flight = {r.id for r in receiver.snapshot()}
            before = _outbox_rows(outbox_path)
            assert len(before) == 6 and any(r[2] == "pending" for r in before)
            restart = subprocess.run(
                [sys.executable, "-c", CLI_SCRIPT.format(tests=tests, args=[
                    "webhooks", str(outbox_path), "--deliver-pending", "--config", str(config)])],
                env=env, capture_output=True, text=True, timeout=60)
            assert restart.returncode == 0, restart.stdout + restart.stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    after = _outbox_rows(outbox_path)
    assert sorted(r[1] for r in after) == ids and {r[2] for r in after} == {"delivered"}
    outbox_ids = {r[0]: r[1] for r in after}
    got = receiver.snapshot()
    events = verified(got, S1)  # every delivery, before and after the kill, carries a valid signature
    assert {r.id for r in got} == set(outbox_ids)  # exactly the expected set: nothing lost, nothing invented
    for req, event in zip(got, events):
        assert outbox_ids[req.id] == event["recording_id"]  # a repeat always comes under the same id
        stored = Path(event["location"])
        assert stored.exists() and event["success"] and event["total_bytes"] == 20000
        assert event["sha256"] == hashlib.sha256(pattern(event["recording_id"], 20000)).hexdigest()
    seen = [r.id for r in got]
    assert in_flight and all(seen.count(i) == 2 for i in in_flight)  # killed mid-delivery: sent again, same id


def test_410_then_redeliver_failed_reenables_the_endpoint(register_plugin, tmp_path):
    receiver = Receiver(always(410))
    with serve_in_thread(receiver) as url, register_plugin(CallPlugin(), name="calls") as registry:
        text = pipeline_yaml(tmp_path, url, source="{type: memory, ids: [g1, g2, g3], size: 1000, chunk: 1000}",
                             extra="max_in_flight: 1")
        run_pipeline(text, registry)
        outbox_path = tmp_path / "state" / "outbox.sqlite3"
        with Outbox(outbox_path) as outbox:
            assert outbox.counts()["disabled"] == 3 and len(outbox.disabled_endpoints()) == 1
        assert len(receiver.snapshot()) == 1  # the first 410 stopped all sending to the endpoint
        config = tmp_path / "p.yaml"
        config.write_text(text)
        listed = CliRunner().invoke(cli, ["webhooks", str(outbox_path)])
        assert "3 disabled" in listed.output and "disabled since" in listed.output and "HTTP 410" in listed.output
        by_config = CliRunner().invoke(cli, ["webhooks", "-c", str(config)], env=ENV)  # <state_dir>/outbox.sqlite3
        assert by_config.exit_code == 0 and "3 disabled" in by_config.output, by_config.output
        receiver.plan = always(200)
        result = CliRunner().invoke(cli, ["webhooks", str(outbox_path), "--redeliver-failed", "-c", str(config)],
                                    env=ENV)
        assert result.exit_code == 0, result.output
        assert "3 of 3 delivered" in result.output
        with Outbox(outbox_path) as outbox:
            assert outbox.counts()["delivered"] == 3 and outbox.disabled_endpoints() == {}
    first = receiver.snapshot()[0].id
    assert [r.id for r in receiver.snapshot()].count(first) == 2  # the 410'd event came again, same id
    assert sorted(e["recording_id"] for e in verified(receiver.snapshot()[1:], S1)) == ["g1", "g2", "g3"]


CRASH_AFTER_ENQUEUE = """
import os, sys, trio
sys.path.insert(0, {tests!r})
from plugin_fixtures import ThirdPartyPlugin
from voxpipe.plugins import get_plugin_manager, get_registry
from voxpipe.config import load_config
from voxpipe.engine import Runner
from voxpipe_webhook.sink import WebhookSink
get_plugin_manager().register(ThirdPartyPlugin(), name="tp")
original = WebhookSink.enqueue

async def enqueue_then_die(self, result, stream, chunks):
    event_id = await original(self, result, stream, chunks)
    os._exit(137)  # the event is in the outbox; the ledger never hears "stored"

WebhookSink.enqueue = enqueue_then_die
config = load_config({config!r}, get_registry())
trio.run(Runner(config.pipeline(None)).run)
"""


def test_a_crash_between_outbox_write_and_stored_announces_the_recording_once(register_plugin, tmp_path):
    """issue 15.5: the re-run re-announces under the id already used, so receivers see one event."""
    port = reserve_port()
    url = f"http://127.0.0.1:{port}"
    config = tmp_path / "p.yaml"
    config.write_text(textwrap.dedent(f"""
        pipelines:
          p:
            concurrency: 1
            state_dir: {tmp_path}/state
            source: {{type: memory, ids: [a, b], size: 20000, chunk: 5000}}
            verifiers: [{{type: sha256}}]
            sinks:
              - {{type: gzip, dir: {tmp_path}/archive}}
              - type: webhook
                url: {url}/hook
                secrets: ["${{S1}}"]
                retry_schedule: [0, 0.2]
                timeout: 5
                drain_timeout: 8
    """))
    tests = str(Path(__file__).parent)
    proc = subprocess.run([sys.executable, "-c", CRASH_AFTER_ENQUEUE.format(tests=tests, config=str(config))],
                          env={**os.environ, **ENV}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 137, proc.stderr
    outbox_path = tmp_path / "state" / "outbox.sqlite3"
    [first] = _outbox_rows(outbox_path)
    receiver = Receiver()
    with serve_in_thread(receiver, port=port), register_plugin(ThirdPartyPlugin(), name="tp2") as registry:
        summary = run_pipeline(config.read_text(), registry)
    assert summary.ok and not summary.skipped  # the crashed recording really ran again
    rows = _outbox_rows(outbox_path)
    assert sorted(r[1] for r in rows) == ["a", "b"]  # one event per recording, not two for the re-run one
    assert first[0] in {r[0] for r in rows}
    got = receiver.snapshot()
    by_recording: dict[str, set[str]] = {}
    for req, event in zip(got, verified(got, S1)):
        by_recording.setdefault(event["recording_id"], set()).add(req.id)
    assert set(by_recording) == {"a", "b"} and all(len(ids) == 1 for ids in by_recording.values())
    assert by_recording[first[1]] == {first[0]}  # delivered under the id the crashed run stored


def test_webhook_url_with_a_token_in_its_query_is_refused(register_plugin, tmp_path):
    with register_plugin(ThirdPartyPlugin(), name="tp3") as registry:
        with pytest.raises(ConfigError) as info:
            parse_config(pipeline_yaml(tmp_path, "https://hooks.example", source="{type: memory, ids: [a]}")
                         .replace("/hooks/voxpipe", "/hooks/voxpipe?access_token=abc123"), registry,
                         filename="p.yaml", environ=ENV)
    [problem] = info.value.problems
    assert "query parameter 'access_token' looks like a credential" in problem and "abc123" not in problem
    assert problem.startswith("p.yaml:")
