"""``voxpipe ledger`` on both backends: a wrong secret locks recordings out
(max_attempts_total), ``reset`` frees them, ``status``/``list``/``forget`` with --json."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from cxone_env import emulator, make_wav, run_pipeline
from voxpipe.cli import cli
from voxpipe_cxone.emulator.settings import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

PIPELINE = """
pipelines:
  night:
    state_dir: {state}
    {ledger}
    max_attempts_total: 1
    source:
      type: cxone
      api_base: {base}
      token_url: {base}/oauth/token
      client_id: {client_id}
      client_secret: ${{CXONE_SECRET}}
      recordings: {ids}
      retry_base_delay: 0.01
      max_attempts: 1
    sinks:
      - type: file
        dir: {out}
"""


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_line(request):
    return "" if request.param == "sqlite" else f"ledger: {request.getfixturevalue('pg_url')}"


def ledger_cmd(config, *args):
    result = CliRunner().invoke(cli, ["ledger", *args[:1], str(config), *args[1:]],
                                                catch_exceptions=False)
    return result


def test_reset_frees_recordings_locked_out_by_failures(tmp_path, ledger_line, monkeypatch):
    recs = tmp_path / "recs"
    recs.mkdir()
    ids = ["4001", "4002", "4003"]
    for i, rid in enumerate(ids):
        make_wav(recs / f"{rid}.wav", 0.5, seed=i)
    config = tmp_path / "p.yaml"
    with emulator(recs) as (_, base):
        text = PIPELINE.format(state=tmp_path / "state", ledger=ledger_line, base=base, client_id=DEMO_CLIENT_ID,
                               ids=ids, out=tmp_path / "out")
        config.write_text(text)
        monkeypatch.setenv("CXONE_SECRET", "wrong-secret")
        first = run_pipeline(text.replace("${CXONE_SECRET}", "wrong-secret"))
        assert not first.ok and len(first.failed) == 3
        second = run_pipeline(text.replace("${CXONE_SECRET}", "wrong-secret"))
        assert [r.reason for r in second.failed] == ["attempts-exhausted"] * 3  # locked out for good

        status = ledger_cmd(config, "status", "--json")
        assert status.exit_code == 0, status.stderr
        data = json.loads(status.stdout)
        assert data["states"]["failed"] == 3 and data["total"] == 3 and "wrong-secret" not in status.stdout
        listed = json.loads(ledger_cmd(config, "list", "--state", "failed", "--json").stdout)
        assert [r["id"] for r in listed] == ids and all(r["attempts"] == 1 and r["reason"] for r in listed)
        table = ledger_cmd(config, "list", "--state", "failed").stdout
        assert f"cxone/4001  failed  attempts=1 {listed[0]['reason']}" in table

        one = ledger_cmd(config, "reset", "--id", "4001", "--json")
        assert json.loads(one.stdout)["reset"] == 1
        rest = ledger_cmd(config, "reset")
        assert "reset 2 failed recording(s)" in rest.stdout

        monkeypatch.setenv("CXONE_SECRET", DEMO_CLIENT_SECRET)
        third = run_pipeline(text.replace("${CXONE_SECRET}", DEMO_CLIENT_SECRET))
        assert third.ok and sorted(r.id for r in third.results if not r.skipped) == ids
        assert (tmp_path / "out" / "4002.wav").read_bytes() == (recs / "4002.wav").read_bytes()
        assert json.loads(ledger_cmd(config, "status", "--json").stdout)["states"]["stored"] == 3

        gone = ledger_cmd(config, "forget", "4003", "--json")
        assert gone.exit_code == 0 and json.loads(gone.stdout) == {"forgotten": True, "source": "cxone", "id": "4003"}
        again = ledger_cmd(config, "forget", "4003")
        assert again.exit_code == 1 and "cxone/4003: not in the ledger" in again.stderr
        fourth = run_pipeline(text.replace("${CXONE_SECRET}", DEMO_CLIENT_SECRET))
        assert [r.id for r in fourth.results if not r.skipped] == ["4003"]  # fetched again


def test_unusable_ledger_exits_2_without_the_password(tmp_path, monkeypatch):
    config = tmp_path / "p.yaml"
    config.write_text(PIPELINE.format(state=tmp_path / "state", ledger="ledger: ${LEDGER_URL}",
                                      base="http://127.0.0.1:9", client_id="c", ids=["1"], out=tmp_path / "out"))
    monkeypatch.setenv("CXONE_SECRET", "x")
    monkeypatch.setenv("LEDGER_URL", "postgresql://vox:Hunter2-pw@127.0.0.1:1/ledger")
    result = ledger_cmd(config, "status")
    assert result.exit_code == 2
    assert "vox:***@127.0.0.1:1/ledger" in result.stderr and "Hunter2" not in result.stderr + result.stdout


def test_run_with_an_unreachable_ledger_fails_cleanly_without_the_password(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "p.yaml"
    config.write_text(PIPELINE.format(state=tmp_path / "state", ledger="ledger: ${LEDGER_URL}",
                                      base="http://127.0.0.1:9", client_id="c", ids=["1"], out=tmp_path / "out"))
    env = {**os.environ, "CXONE_SECRET": "x", "LEDGER_URL": "postgresql://vox:Hunter2-pw@127.0.0.1:1/ledger"}
    proc = subprocess.run([sys.executable, "-m", "voxpipe", "run", "--no-progress", str(config)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "error: postgresql://vox:***@127.0.0.1:1/ledger: cannot connect" in proc.stderr
    assert "Hunter2" not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr


def test_a_recording_another_worker_holds_is_skipped_by_a_live_source(tmp_path, pg_url):
    """CXone stream mode keeps its own streams even with a shared ledger (not shareable):
    each worker acquires what it discovered, and one held elsewhere is skipped."""
    from voxpipe.ledger import open_ledger

    recs = tmp_path / "recs"
    recs.mkdir()
    for i, rid in enumerate(["5001", "5002"]):
        make_wav(recs / f"{rid}.wav", 1.0, seed=i)
    with emulator(recs) as (_, base):
        text = PIPELINE.format(state=tmp_path / "state", ledger=f"ledger: {pg_url}", base=base,
                               client_id=DEMO_CLIENT_ID, ids=["5001", "5002"], out=tmp_path / "out")
        text = text.replace("      max_attempts: 1\n", "      max_attempts: 1\n      mode: stream\n")
        other = open_ledger(pg_url, state_dir=tmp_path, pipeline="night", identity=f"cxone {base} client={DEMO_CLIENT_ID}")
        try:
            run = other.start_run("night", worker="elsewhere:1:abc", lease_seconds=600)
            other.acquire("cxone", "5001", run=run, lease_seconds=600)
            summary = run_pipeline(text.replace("${CXONE_SECRET}", DEMO_CLIENT_SECRET))
        finally:
            other.close()
    results = {r.id: r for r in summary.results}
    assert results["5001"].skipped and results["5001"].reason == "leased-elsewhere"
    assert results["5002"].ok and not results["5002"].skipped
    assert summary.ok
