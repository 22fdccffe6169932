"""The webhook outbox in a shared PostgreSQL ledger: a worker that died with an event
enqueued (or in flight) has it delivered by another worker, under its webhook-id; the
SQLite outbox's semantics hold (claims skip each other, 410 disables the endpoint)."""

from __future__ import annotations

import base64
import functools
import time

import trio

from voxpipe.ledger import open_ledger
from voxpipe.serving import serve_asgi
from voxpipe_webhook.delivery import DeliveryLoop, Endpoint
from voxpipe_webhook.pg_outbox import PgOutbox
from voxpipe_webhook.schedule import Decision, Outcome, Schedule, State
from voxpipe_webhook.signing import parse_secret

from webhook_receiver import Receiver, reserve_port, verified

SECRET = "whsec_" + base64.b64encode(b"pg-outbox-test-secret-0123456789").decode()
FAST = Schedule(delays=(0, 0.1), horizon=30, jitter=0.2)


def ledger_for(pg_url, tmp_path, identity="cxone client=a"):
    return open_ledger(pg_url, state_dir=tmp_path, pipeline="night", identity=identity)


def test_a_dead_workers_events_are_delivered_by_another(pg_url, tmp_path):
    port = reserve_port()
    url = f"http://127.0.0.1:{port}/hook"
    dead_ledger, live_ledger = ledger_for(pg_url, tmp_path), ledger_for(pg_url, tmp_path)
    dead, live = PgOutbox(dead_ledger), PgOutbox(live_ledger)
    try:
        events = [dead.enqueue(endpoint=url, body=f'{{"recording_id":"{r}"}}'.encode(), source="cxone",
                               pipeline="night", recording_id=r) for r in ("a", "b", "c")]
        in_flight = dead.claim(url, lease=0.5)  # the dead worker was delivering them when it died
        assert [e.id for e in in_flight] == [e.id for e in events]
        assert live.claim(url) == []  # leased: no second claim
        receiver = Receiver()

        async def main():
            async with trio.open_nursery() as nursery:
                await nursery.start(functools.partial(serve_asgi, receiver, port=port))
                loop = DeliveryLoop(live, Endpoint(url, (parse_secret(SECRET),), {}, 2.0), FAST)
                await nursery.start(loop.run)
                with trio.fail_after(15):
                    while not all(live.get(e.id).state is State.DELIVERED for e in events):
                        await trio.sleep(0.05)
                nursery.cancel_scope.cancel()

        started = time.time()
        trio.run(main)
        got = receiver.snapshot()
        assert sorted(r.id for r in got) == sorted(e.id for e in events)  # once each, under its own id
        assert min(r.at for r in got) >= started + 0.3  # not before the dead worker's claim ran out
        assert sorted(b["recording_id"] for b in verified(got, SECRET)) == ["a", "b", "c"]
        assert live.counts()["delivered"] == 3 and dead.counts()["delivered"] == 3  # one shared outbox
        other = PgOutbox(ledger_for(pg_url, tmp_path, identity="cxone client=b"))
        assert other.counts()["delivered"] == 0  # scoped per pipeline and source identity
    finally:
        dead_ledger.close()
        live_ledger.close()


def test_outbox_semantics_match_the_sqlite_outbox(pg_url, tmp_path):
    ledger = ledger_for(pg_url, tmp_path)
    try:
        box = PgOutbox(ledger)
        url = "http://127.0.0.1:9/hook"
        a = box.enqueue(endpoint=url, body=b"{}", source="s", pipeline="night", recording_id="1", now=100.0)
        b = box.enqueue(endpoint=url, body=b"{}", source="s", pipeline="night", recording_id="2", now=101.0,
                        first_attempt_at=500.0)
        assert a.state is State.PENDING and a.body == b"{}" and a.next_attempt_at == 100.0
        assert [e.id for e in box.claim(url, now=200.0, lease=10)] == [a.id]  # b is not due yet
        assert box.get(a.id).next_attempt_at == 210.0 and box.next_due(url) == 210.0
        box.release([a.id], now=201.0)
        assert box.get(a.id).next_attempt_at == 201.0
        box.record(a.id, Decision(State.DISABLED, Outcome.GONE), status=410, error=None, now=202.0)
        assert box.get(b.id).state is State.DISABLED and url in box.disabled_endpoints()
        c = box.enqueue(endpoint=url, body=b"{}", source="s", pipeline="night", recording_id="3")
        assert c.state is State.DISABLED and c.last_error == "endpoint disabled (HTTP 410)"
        reopened = box.reopen(states=[State.DISABLED], now=300.0)
        assert {e.id for e in reopened} == {a.id, b.id, c.id} and box.disabled_endpoints() == {}
        box.record(a.id, Decision(State.DELIVERED, Outcome.DELIVERED), status=200, error=None, now=301.0)
        assert box.prune(older_than=10, now=400.0) == 1 and box.get(a.id) is None
        assert box.counts() == {"pending": 2, "delivered": 0, "failed": 0, "disabled": 0}
    finally:
        ledger.close()


def test_the_same_event_id_is_stored_once_on_postgresql_too(pg_url, tmp_path):
    """issue 15.5: a re-announced fact (same derived id) keeps the stored event, from any worker."""
    first, second = ledger_for(pg_url, tmp_path, "cxone client=dup"), ledger_for(pg_url, tmp_path, "cxone client=dup")
    a, b = PgOutbox(first), PgOutbox(second)
    try:
        made = a.enqueue(endpoint="http://127.0.0.1:9/h", body=b'{"n":1}', source="cxone", pipeline="night",
                         recording_id="r1", event_id="msg_" + "d" * 32)
        again = b.enqueue(endpoint="http://127.0.0.1:9/h", body=b'{"n":2}', source="cxone", pipeline="night",
                          recording_id="r1", event_id="msg_" + "d" * 32)
        assert not made.duplicate and again.duplicate
        assert again.id == made.id and again.body == b'{"n":1}'  # the first body stands
        assert [e.id for e in a.events()].count(made.id) == 1
    finally:
        a.close(), b.close(), first.close(), second.close()


def test_webhooks_cli_lists_and_redelivers_from_the_pipelines_postgresql_outbox(register_plugin, pg_url, tmp_path):
    """``voxpipe webhooks --config p.yaml`` (no outbox file) finds the outbox as the running
    sink does: in the ledger's database when ``ledger:`` is a PostgreSQL URL."""
    import json
    import textwrap

    from click.testing import CliRunner

    from voxpipe.cli import cli
    from voxpipe.config import parse_config
    from voxpipe.engine import Runner
    from voxpipe.serving import serve_in_thread

    from plugin_fixtures import ThirdPartyPlugin
    from webhook_receiver import always

    env = {"S1": SECRET}
    receiver = Receiver(always(410))
    config = tmp_path / "p.yaml"
    with serve_in_thread(receiver) as url, register_plugin(ThirdPartyPlugin(), name="tp") as registry:
        config.write_text(textwrap.dedent(f"""
            pipelines:
              p:
                state_dir: {tmp_path}/state
                ledger: "{pg_url}"
                source: {{type: memory, ids: [g1, g2, g3], size: 1000, chunk: 1000}}
                sinks:
                  - {{type: collect}}
                  - type: webhook
                    url: {url}/hook
                    secrets: ["${{S1}}"]
                    retry_schedule: [0, 0.1]
                    max_in_flight: 1
                    drain_timeout: 10
        """))
        trio.run(Runner(parse_config(config.read_text(), registry, filename=str(config),
                                     environ=env).pipeline(None)).run)
        assert not (tmp_path / "state" / "outbox.sqlite3").exists()  # the events went to PostgreSQL
        runner = CliRunner()
        listed = runner.invoke(cli, ["webhooks", "-c", str(config), "--json"], env=env)
        assert listed.exit_code == 0, listed.output
        rows = [json.loads(line) for line in listed.output.splitlines()]
        assert sorted(r["recording_id"] for r in rows) == ["g1", "g2", "g3"]
        assert {r["state"] for r in rows} == {"disabled"} and {r["pipeline"] for r in rows} == {"p"}
        table = runner.invoke(cli, ["webhooks", "-c", str(config)], env=env)
        assert "3 disabled" in table.output and "disabled since" in table.output and "HTTP 410" in table.output

        receiver.plan = always(200)
        again = runner.invoke(cli, ["webhooks", "-c", str(config), "--redeliver-failed"], env=env)
        assert again.exit_code == 0, again.output
        assert "3 of 3 delivered" in again.output
        delivered = runner.invoke(cli, ["webhooks", "-c", str(config), "--json", "--state", "delivered"], env=env)
        assert sorted(json.loads(line)["id"] for line in delivered.output.splitlines()) == sorted(r["id"] for r in rows)
    first = receiver.snapshot()[0].id
    assert [r.id for r in receiver.snapshot()].count(first) == 2  # the 410'd event came again, same webhook-id
    assert sorted(b["recording_id"] for b in verified(receiver.snapshot()[1:], SECRET)) == ["g1", "g2", "g3"]


def test_webhooks_cli_without_an_outbox_or_webhook_sink_is_a_usage_error(register_plugin, tmp_path):
    from click.testing import CliRunner

    from voxpipe.cli import cli

    from plugin_fixtures import ThirdPartyPlugin

    config = tmp_path / "p.yaml"
    config.write_text(f"pipelines:\n  p:\n    state_dir: {tmp_path}/state\n"
                      "    source: {type: memory, ids: [a]}\n    sinks: [{type: collect}]\n")
    with register_plugin(ThirdPartyPlugin(), name="tp"):
        runner = CliRunner()
        assert runner.invoke(cli, ["webhooks"]).exit_code == 2
        result = runner.invoke(cli, ["webhooks", "-c", str(config)])
    assert result.exit_code == 2 and "has no webhook sink" in result.output
