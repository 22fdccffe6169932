"""Prometheus metrics of real pipeline runs against the CXone emulator, scraped over loopback."""

from __future__ import annotations

import os
import socket
import textwrap

import httpx
import pytest
import trio
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from cxone_env import emulator, ids_of, pipeline_yaml, recordings_dir
from voxpipe.cli import cli, run_with_signals
from voxpipe.config import parse_config
from voxpipe.engine import Runner
from voxpipe.metrics import MAX_REASON_LABELS, MetricsError, RunMetrics, run_serving_metrics, serve_metrics
from voxpipe.model import Stream, StreamResult, StreamSpec
from voxpipe.plugins import get_registry
from voxpipe_cxone.emulator.faults import FaultAction, FaultKind, RequestKind
from voxpipe_cxone.emulator.settings import DEMO_CLIENT_SECRET

CHUNK = 65536


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(scraped, name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


def pipeline(text: str):
    cfg = parse_config(textwrap.dedent(text), get_registry(), environ={**os.environ, "CXONE_SECRET": DEMO_CLIENT_SECRET})
    return cfg.pipeline(None)


async def scrape(url: str) -> dict:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


def segments(size: int) -> int:
    return -(-size // CHUNK)


def test_counters_match_the_run_exactly(tmp_path):
    """Bytes = sum of recording sizes; 429s, drops and retries = those injected; statuses per stream."""
    recs = recordings_dir(tmp_path)
    ids = ids_of(recs) + ["no-such-recording"]
    sizes = {p.stem: p.stat().st_size for p in recs.iterdir() if p.suffix != ".md"}
    out, state = tmp_path / "out", tmp_path / "state"
    with emulator(recs, tamper=("100003",)) as (emu, base):
        # Three 429s and one connection dropped after 1000 body bytes, on download requests.
        emu.faults.schedule(FaultAction(FaultKind.RATE_LIMIT, retry_after=0.01),
                            FaultAction(FaultKind.RATE_LIMIT, retry_after=0.01),
                            FaultAction(FaultKind.DROP, drop_after=1000),
                            FaultAction(FaultKind.RATE_LIMIT, retry_after=0.01),
                            kinds=[RequestKind.DOWNLOAD])
        config = pipeline(pipeline_yaml(base, ids, out, state, concurrency=2, chunk=CHUNK))
        metrics = RunMetrics()

        async def main():
            async with trio.open_nursery() as nursery:
                url = await nursery.start(serve_metrics, metrics)
                assert url.startswith("http://127.0.0.1:")
                summary = await Runner(config, observer=metrics).run()
                scraped = await scrape(url)
                nursery.cancel_scope.cancel()
            return summary, scraped

        summary, scraped = trio.run(main)
        served = emu.stats.snapshot()
    by_id = {r.id: r for r in summary.results}
    assert by_id["100003"].reason == "sha256-mismatch"
    assert by_id["no-such-recording"].reason == "http-404"
    assert served["rate_limited"] == 3 and served["drops"] == 1

    assert value(scraped, "voxpipe_bytes_received_total", pipeline="archive", source="cxone") == sum(sizes.values())
    assert value(scraped, "voxpipe_streams_total", pipeline="archive", source="cxone", status="ok") == len(sizes) - 1
    assert value(scraped, "voxpipe_streams_total", pipeline="archive", source="cxone", status="failed") == 2
    assert value(scraped, "voxpipe_streams_total", pipeline="archive", source="cxone", status="skipped") == 0
    assert value(scraped, "voxpipe_stream_failures_total", reason="sha256-mismatch") == 1
    assert value(scraped, "voxpipe_stream_failures_total", reason="http-404") == 1
    assert value(scraped, "voxpipe_http_rate_limited_total") == 3
    assert value(scraped, "voxpipe_http_requests_total", status="429") == 3
    # Every segment once, plus the dropped response (a 206 cut short) that was resumed.
    expected_206 = sum(segments(s) for s in sizes.values()) + 1
    assert value(scraped, "voxpipe_http_requests_total", status="206") == expected_206
    assert value(scraped, "voxpipe_http_retries_total") == 4
    requests = expected_206 + 3
    assert value(scraped, "voxpipe_http_request_seconds_count") == requests
    assert value(scraped, "voxpipe_http_request_seconds_bucket", le="+Inf") == requests
    assert value(scraped, "voxpipe_http_request_seconds_sum") > 0
    assert value(scraped, "voxpipe_streams_in_flight") == 0

    # A re-run skips what is stored and retries the failures.
    metrics2 = RunMetrics()
    with emulator(recs) as (emu, base):
        summary2 = trio.run(Runner(pipeline(pipeline_yaml(base, ids, out, state, chunk=CHUNK)),
                                   observer=metrics2).run)
    again = samples(_exposition(metrics2))
    assert {r.id: r.status for r in summary2.results}["100003"] == "ok"
    assert value(again, "voxpipe_streams_total", pipeline="archive", source="cxone", status="skipped") == len(sizes) - 1
    assert value(again, "voxpipe_bytes_received_total", pipeline="archive", source="cxone") == sizes["100003"]


def _exposition(metrics: RunMetrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


def test_metrics_are_live_during_the_run(tmp_path):
    """While a stream waits out a 429, a scrape shows it in flight and the 429 counted."""
    recs = recordings_dir(tmp_path)
    out, state = tmp_path / "out", tmp_path / "state"
    port = _free_port()
    with emulator(recs) as (emu, base):
        emu.faults.schedule(FaultAction(FaultKind.RATE_LIMIT, retry_after=1.0), kinds=[RequestKind.DOWNLOAD])
        config = pipeline(pipeline_yaml(base, ["100002"], out, state, concurrency=1, chunk=CHUNK))
        metrics = RunMetrics()
        seen = {}

        async def run_and_watch(runner):
            async with trio.open_nursery() as nursery:
                async def watch():
                    with trio.fail_after(10):
                        while True:
                            try:
                                scraped = await scrape(f"http://127.0.0.1:{port}")
                            except httpx.TransportError:
                                scraped = {}
                            if value(scraped, "voxpipe_http_rate_limited_total") == 1:
                                seen.update(scraped)
                                return
                            await trio.sleep(0.02)

                nursery.start_soon(watch)
                return await run_with_signals(runner)

        summary = trio.run(run_serving_metrics, run_and_watch, Runner(config, observer=metrics), metrics,
                           "127.0.0.1", port)
    assert summary.ok
    assert value(seen, "voxpipe_streams_in_flight") == 1
    assert value(seen, "voxpipe_streams_total", pipeline="archive", source="cxone", status="ok") == 0
    # The server stopped with the run.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_cli_metrics_textfile_and_bad_port(tmp_path, monkeypatch):
    recs = recordings_dir(tmp_path)
    out, state = tmp_path / "out", tmp_path / "state"
    monkeypatch.setenv("CXONE_SECRET", DEMO_CLIENT_SECRET)
    prom = tmp_path / "voxpipe.prom"
    with emulator(recs) as (emu, base):
        yaml_file = tmp_path / "p.yaml"
        yaml_file.write_text(textwrap.dedent(pipeline_yaml(base, ["100001", "100005"], out, state, chunk=CHUNK)))
        result = CliRunner().invoke(cli, ["run", str(yaml_file), "--no-progress", "--metrics-port", "0",
                                          "--metrics-textfile", str(prom)])
        assert result.exit_code == 0, result.output
        written = samples(prom.read_text())
        size = sum((recs / f"{i}.wav").stat().st_size for i in ("100001", "100005"))
        assert value(written, "voxpipe_bytes_received_total", pipeline="archive", source="cxone") == size
        assert value(written, "voxpipe_streams_total", pipeline="archive", source="cxone", status="ok") == 2

        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            taken = busy.getsockname()[1]
            result = CliRunner().invoke(cli, ["run", str(yaml_file), "--no-progress", "--metrics-port", str(taken)])
    assert result.exit_code == 2
    assert f"cannot serve metrics on 127.0.0.1:{taken}" in result.output


def test_retries_count_requests_after_an_incomplete_one():
    """Synthetic segment events: what counts as a retry, and the bounded reason labels."""
    m = RunMetrics()
    stream = Stream(StreamSpec("r1"), source="src", pipeline="p", audit=None)
    m.stream_started(stream)
    events = [
        {"offset": 0, "length": 100, "status": 206, "received_to": 100, "ms": 5},   # complete
        {"offset": 100, "length": 100, "status": 0, "received_to": 100, "ms": 5},   # transport error
        {"offset": 100, "length": 100, "status": 206, "received_to": 150, "ms": 5},  # retry, cut short
        {"offset": 150, "length": 50, "status": 503, "received_to": 150, "ms": 5},  # retry, 5xx
        {"offset": 150, "length": 50, "status": 206, "received_to": 200, "ms": 5},  # retry, complete
        {"offset": 200, "length": 100, "status": 200, "received_to": 300, "ms": 5},  # ignored range: whole body
    ]
    for e in events:
        m.stream_event(stream, "segment", e)
    m.stream_event(stream, "token-refresh", {"expires_in": 60})
    scraped = samples(_exposition(m))
    assert value(scraped, "voxpipe_http_retries_total") == 3
    assert value(scraped, "voxpipe_http_requests_total", status="error") == 1
    assert value(scraped, "voxpipe_http_requests_total", status="206") == 3
    assert value(scraped, "voxpipe_http_requests_total", status="503") == 1
    assert value(scraped, "voxpipe_streams_in_flight") == 1
    for i in range(MAX_REASON_LABELS + 5):
        m.stream_finished(StreamResult(id=f"x{i}", source="src", pipeline="p", reason=f"reason-{i}"))
    m.stream_finished(StreamResult(id="y", source="src", pipeline="p", reason="Not A Code: /etc/passwd"))
    scraped = samples(_exposition(m))
    reasons = {dict(k[1])["reason"] for k in scraped if k[0] == "voxpipe_stream_failures_total"}
    assert len(reasons) == MAX_REASON_LABELS + 1 and "other" in reasons
    assert value(scraped, "voxpipe_stream_failures_total", reason="other") == 6


def test_unbindable_address_is_a_clear_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        async def run(runner):  # never reached
            raise AssertionError("the run must not start")

        with pytest.raises(MetricsError, match=f"127.0.0.1:{port}"):
            trio.run(run_serving_metrics, run, None, RunMetrics(), "127.0.0.1", port)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
