"""The engine, driven from YAML with components registered as a third-party plugin."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import trio

from voxpipe.audit import read_audit
from voxpipe.config import parse_config
from voxpipe.engine import Runner

from plugin_fixtures import COLLECTED, ThirdPartyPlugin, pattern


def run(text: str, register_plugin, observer=None):
    with register_plugin(ThirdPartyPlugin(), name="thirdparty") as registry:
        config = parse_config(textwrap.dedent(text), registry, filename="t.yaml", environ=os.environ)
        runner = Runner(config.pipeline(None), observer=observer)
        return trio.run(runner.run), runner


def test_third_party_components_from_yaml(register_plugin, tmp_path):
    COLLECTED.clear()
    summary, runner = run(f"""
        pipelines:
          p:
            concurrency: 2
            state_dir: {tmp_path}/state
            source: {{type: memory, ids: [a, b, c], size: 50000, chunk: 7000}}
            transforms: [{{type: xor, key: 90}}]
            verifiers: [{{type: sha256}}]
            sinks: [{{type: collect}}]
    """, register_plugin)
    assert summary.ok and len(summary.results) == 3
    for rid in "abc":
        original = pattern(rid, 50000)
        assert COLLECTED[rid]["state"] == "committed"
        assert COLLECTED[rid]["data"] == bytes(b ^ 90 for b in original)  # sinks see transformed bytes
        result = COLLECTED[rid]["result"]
        assert result.digests["sha256"] == hashlib.sha256(original).hexdigest()  # verifiers see bytes as received
        assert result.bytes == 50000
    assert {r.stored[0]["path"] for r in summary.results} == {"memory://a", "memory://b", "memory://c"}
    audit = read_audit(tmp_path / "state" / "audit.jsonl")
    assert [e["event"] for e in audit][0] == "run-start" and audit[-1]["event"] == "run-end"
    assert sorted(e["stream"] for e in audit if e["event"] == "stream") == ["a", "b", "c"]


def test_failing_stream_does_not_stop_others_and_verifier_failure_aborts_sinks(register_plugin, tmp_path):
    COLLECTED.clear()
    summary, _ = run(f"""
        pipelines:
          p:
            state_dir: {tmp_path}
            source: {{type: memory, ids: [good, broken, rejected, early], size: 40000, chunk: 4000, fail: [broken]}}
            verifiers: [{{type: sha256}}, {{type: reject, ids: [rejected]}}]
            sinks: [{{type: collect}}]
    """, register_plugin)
    by_id = {r.id: r for r in summary.results}
    assert by_id["good"].ok and COLLECTED["good"]["state"] == "committed"
    assert not by_id["broken"].ok and by_id["broken"].reason == "simulated"
    assert "byte 20000" in by_id["broken"].message
    assert COLLECTED["broken"]["state"] == "aborted"
    assert by_id["rejected"].reason == "rejected" and COLLECTED["rejected"]["state"] == "aborted"
    assert not summary.ok and len(summary.failed) == 2


def test_early_verifier_rejection_stops_the_download(register_plugin, tmp_path):
    COLLECTED.clear()
    summary, runner = run(f"""
        pipelines:
          p:
            state_dir: {tmp_path}
            source: {{type: memory, ids: [x], size: 1000000, chunk: 1000}}
            verifiers: [{{type: reject, ids: [x], early: true}}]
            sinks: [{{type: collect}}]
    """, register_plugin)
    [result] = summary.results
    assert result.reason == "rejected-early" and COLLECTED["x"]["state"] == "aborted"
    assert runner.source.produced["x"] < 100_000  # stopped long before the end


def test_sha256_mismatch_fails_the_stream(register_plugin, tmp_path):
    from plugin_fixtures import MemorySource

    original = MemorySource.read

    async def tampered(self, stream):
        async for chunk in original(self, stream):
            if chunk.offset == 0:
                chunk = type(chunk)(0, b"\x00" + chunk.data[1:])
            yield chunk

    MemorySource.read = tampered
    try:
        summary, _ = run(f"""
            pipelines:
              p:
                state_dir: {tmp_path}
                source: {{type: memory, ids: [t], size: 5000, chunk: 1000}}
                verifiers: [{{type: sha256}}]
                sinks: [{{type: collect}}]
        """, register_plugin)
    finally:
        MemorySource.read = original
    [r] = summary.results
    assert r.reason == "sha256-mismatch" and "recording t" in r.message


def test_slow_sink_bounds_how_far_the_source_runs_ahead(register_plugin, tmp_path, monkeypatch):
    """Backpressure: with a slow sink, the source is never more than a few chunks ahead."""
    import plugin_fixtures

    COLLECTED.clear()
    writers = []
    original_begin = plugin_fixtures.CollectSink.begin

    async def begin(self, stream):
        writer = await original_begin(self, stream)
        writers.append(writer)
        return writer

    monkeypatch.setattr(plugin_fixtures.CollectSink, "begin", begin)
    lags = []  # bytes the source has produced minus bytes the sink has written, sampled

    async def main():
        with register_plugin(ThirdPartyPlugin(), name="thirdparty") as registry:
            cfg = parse_config(textwrap.dedent(f"""
                pipelines:
                  p:
                    state_dir: {tmp_path}
                    source: {{type: memory, ids: [slow], size: 100000, chunk: 1000}}
                    sinks: [{{type: collect, delay: 0.003}}]
            """), registry)
            runner = Runner(cfg.pipeline(None))
            async with trio.open_nursery() as n:
                n.start_soon(runner.run)
                for _ in range(60):
                    await trio.sleep(0.005)
                    if writers and "slow" in runner.source.produced:
                        lags.append(runner.source.produced["slow"] - len(writers[0].data))

    trio.run(main)
    assert lags and max(lags) <= 1000 * (4 + 3)  # channel capacity + chunks in hand, never the whole recording


def test_retryable_failure_restarts_the_stream_from_zero(register_plugin, tmp_path):
    COLLECTED.clear()
    summary, _ = run(f"""
        pipelines:
          p:
            state_dir: {tmp_path}
            source: {{type: memory, ids: [r], size: 30000, chunk: 3000, restart_once: [r]}}
            verifiers: [{{type: sha256}}]
            sinks: [{{type: collect}}]
    """, register_plugin)
    [r] = summary.results
    assert r.ok and r.attempts == 2
    assert COLLECTED["r"]["data"] == pattern("r", 30000)


def test_gzip_and_file_sinks_store_atomically_with_manifests(register_plugin, tmp_path):
    summary, _ = run(f"""
        pipelines:
          p:
            source: {{type: memory, ids: ["rec-1", "rec-2"], size: 300000, chunk: 65536}}
            verifiers: [{{type: sha256}}]
            sinks:
              - {{type: gzip, dir: {tmp_path}/gz, level: 1}}
              - {{type: file, dir: {tmp_path}/raw, name: "{{year}}/{{recording_id}}.{{format}}"}}
    """, register_plugin)
    assert summary.ok
    year = time.strftime("%Y", time.gmtime())
    for rid in ("rec-1", "rec-2"):
        original = pattern(rid, 300000)
        gz = tmp_path / "gz" / f"{rid}.bin.gz"
        assert gzip.decompress(gz.read_bytes()) == original
        raw = tmp_path / "raw" / year / f"{rid}.bin"
        assert raw.read_bytes() == original
        manifest = json.loads((tmp_path / "gz" / f"{rid}.bin.gz.json").read_text())
        assert manifest["original_sha256"] == hashlib.sha256(original).hexdigest()
        assert manifest["stored_sha256"] == hashlib.sha256(gz.read_bytes()).hexdigest()
        assert manifest["original_size"] == 300000 and manifest["recording_id"] == rid
    # state defaults beside the first sink's archive
    assert (tmp_path / "gz" / ".voxpipe" / "p" / "audit.jsonl").exists()
    assert not [p for p in tmp_path.rglob("*.part")]
    # a re-run stores identical content again without error (idempotent)
    summary, _ = run(f"""
        pipelines:
          p:
            source: {{type: memory, ids: ["rec-1"], size: 300000, chunk: 65536}}
            sinks: [{{type: gzip, dir: {tmp_path}/gz, level: 1}}]
    """, register_plugin)
    assert summary.ok


def test_unsafe_recording_id_never_escapes_the_archive(register_plugin, tmp_path):
    summary, _ = run(f"""
        pipelines:
          p:
            source: {{type: memory, ids: ["../evil", "/etc/passwd", "ok"], size: 100, chunk: 100}}
            sinks: [{{type: file, dir: {tmp_path}/a}}]
    """, register_plugin)
    by_id = {r.id: r for r in summary.results}
    assert by_id["ok"].ok
    assert by_id["../evil"].reason == "unsafe-name" and by_id["/etc/passwd"].reason == "unsafe-name"
    assert sorted(p.name for p in (tmp_path / "a").iterdir() if p.is_file()) == ["ok.bin", "ok.bin.json"]
    assert not (tmp_path / "evil.bin").exists()


SIGNAL_SCRIPT = """
import sys, textwrap, trio
sys.path.insert(0, {tests!r})
from plugin_fixtures import ThirdPartyPlugin
from voxpipe.plugins import get_plugin_manager, get_registry
from voxpipe.config import parse_config
from voxpipe.cli import run_with_signals
from voxpipe.engine import Runner, RunObserver
get_plugin_manager().register(ThirdPartyPlugin(), name="tp")
cfg = parse_config(textwrap.dedent('''
    pipelines:
      p:
        concurrency: 3
        shutdown_grace: {grace}
        source: {{type: memory, ids: [a, b, c, d, e, f], size: 2000000, chunk: 10000, delay: 0.01}}
        sinks: [{{type: gzip, dir: {out!r}}}]
'''), get_registry())
class Started(RunObserver):
    def stream_bytes(self, stream, n):
        print("BYTES", flush=True) if n and not getattr(self, "said", False) else None
        self.said = True
summary = trio.run(run_with_signals, Runner(cfg.pipeline(None), observer=Started()))
print("RESULTS", sorted((r.id, r.status, r.reason) for r in summary.results), flush=True)
sys.exit(0 if summary.ok else 1)
"""


@pytest.mark.parametrize("grace", [0.2])
def test_sigint_mid_download_leaves_no_partial_file(tmp_path, grace):
    out = tmp_path / "archive"
    script = SIGNAL_SCRIPT.format(tests=str(Path(__file__).parent), out=str(out), grace=grace)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "BYTES"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 1, stderr
    assert "RESULTS" in stdout and "interrupted" in stdout
    files = [p for p in out.rglob("*") if p.is_file() and ".voxpipe" not in p.parts]
    assert not [p for p in files if p.name.endswith(".part")], files
    assert not [p for p in files if p.suffix == ".gz"], files  # nothing finished: nothing under a final name
    assert "'e'" not in stdout and "'f'" not in stdout  # streams not yet started were never started


def test_a_failed_announcement_is_made_by_the_next_run(register_plugin, tmp_path):
    """Stored but not yet announced is not "stored" in the ledger: the next run announces it."""
    from voxpipe import hookimpl
    from voxpipe.components import Sink, SinkWriter
    from voxpipe.errors import SinkError

    announced: list[str] = []
    failures = {"left": 1}

    class Announce(Sink):
        """Test announcing sink: the first commit fails (as a crash before the enqueue would)."""

        type = "announce-once"
        announces = True

        async def begin(self, stream):
            class Writer(SinkWriter):
                async def write(self, chunk):
                    pass

                async def commit(self, result):
                    if failures["left"]:
                        failures["left"] -= 1
                        raise SinkError(f"recording {stream.id}: receiver unavailable", reason="announce-failed")
                    announced.append(stream.id)

                async def abort(self, result):
                    pass

            return Writer()

    class Plugin:
        @hookimpl
        def register_sinks(self, register):
            register(Announce)

    text = f"""
        pipelines:
          p:
            source: {{type: memory, ids: [a], size: 1000, chunk: 100}}
            sinks: [{{type: file, dir: {tmp_path}/out}}, {{type: announce-once}}]
    """
    with register_plugin(Plugin(), name="announce"):
        first, _ = run(text, register_plugin)
        second, _ = run(text, register_plugin)
        third, _ = run(text, register_plugin)
    assert first.results[0].reason == "announce-failed" and (tmp_path / "out" / "a.bin").exists()
    assert second.results[0].ok and not second.results[0].skipped and announced == ["a"]
    assert third.results[0].skipped and announced == ["a"]


def test_a_restarted_attempt_is_not_quarantined(register_plugin, tmp_path):
    summary, _ = run(f"""
        pipelines:
          p:
            source: {{type: memory, ids: [r], size: 30000, chunk: 3000, restart_once: [r]}}
            verifiers: [{{type: sha256}}]
            sinks: [{{type: file, dir: {tmp_path}/out, on_failure: quarantine}}]
    """, register_plugin)
    [r] = summary.results
    assert r.ok and r.attempts == 2
    assert (tmp_path / "out" / "r.bin").read_bytes() == pattern("r", 30000)
    quarantine = tmp_path / "out" / ".quarantine"
    assert not quarantine.exists() or not list(quarantine.iterdir())


@pytest.mark.parametrize("transform", [False, True])
def test_one_hop_consumer_feeds_verifiers_and_storing_sinks(register_plugin, tmp_path, transform):
    """Verifiers and the file/gzip sinks share one consumer (one worker-thread hop per chunk):
    verifiers see the bytes as received, sinks the transformed ones; with no transform the file
    sink's stored digest is the verifier's (hash once), and it matches the file."""
    transforms = "transforms: [{type: xor, key: 90}]" if transform else ""
    summary, _ = run(f"""
        pipelines:
          p:
            state_dir: {tmp_path}/state
            checkpoint_bytes: 65536
            source: {{type: memory, ids: [a, b], size: 300000, chunk: 70000}}
            {transforms}
            verifiers: [{{type: sha256}}]
            sinks:
              - {{type: file, dir: {tmp_path}/f}}
              - {{type: gzip, dir: {tmp_path}/g}}
    """, register_plugin)
    assert summary.ok and len(summary.results) == 2
    for rid in "ab":
        original = pattern(rid, 300000)
        stored = bytes(b ^ 90 for b in original) if transform else original
        plain = (tmp_path / "f" / f"{rid}.bin").read_bytes()
        assert plain == stored
        assert gzip.decompress((tmp_path / "g" / f"{rid}.bin.gz").read_bytes()) == stored
        for path in (tmp_path / "f" / f"{rid}.bin", tmp_path / "g" / f"{rid}.bin.gz"):
            manifest = json.loads(Path(f"{path}.json").read_text())
            assert manifest["original_sha256"] == hashlib.sha256(original).hexdigest()
            assert manifest["stored_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
