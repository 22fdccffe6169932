"""`voxpipe check` reports missing input files; `check --connect` checks for real, touching nothing."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import textwrap

import trio
import pytest
from click.testing import CliRunner

from cxone_env import emulator, ids_of, pipeline_yaml, recordings_dir
from voxpipe.cli import cli
from voxpipe_cxone.emulator.settings import DEMO_CLIENT_SECRET


def check(*args, secret=DEMO_CLIENT_SECRET):
    return subprocess.run([sys.executable, "-m", "voxpipe", "check", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "CXONE_SECRET": secret})


def test_plain_check_reports_a_missing_recordings_file(tmp_path):
    config = tmp_path / "p.yaml"
    config.write_text(pipeline_yaml("http://127.0.0.1:9", ["1"], tmp_path / "out", tmp_path / "state")
                      .replace("recordings: ['1']", f"recordings_file: {tmp_path / 'ids.txt'}"))
    result = check(config)
    assert result.returncode == 2
    assert f"{config}:" in result.stderr
    assert f"pipelines.archive.source.recordings_file: {tmp_path / 'ids.txt'} does not exist" in result.stderr
    (tmp_path / "ids.txt").write_text("100001\n")
    assert check(config).returncode == 0


def test_connect_checks_pass_against_a_working_setup_and_download_nothing(tmp_path):
    recs = recordings_dir(tmp_path)
    out = tmp_path / "archive" / "new"
    with emulator(recs) as (emu, base):
        config = tmp_path / "p.yaml"
        config.write_text(pipeline_yaml(base, ids_of(recs), out, tmp_path / "state"))
        result = check("--connect", config)
        assert result.returncode == 0, result.stdout + result.stderr
        assert emu.stats.bytes_served() == 0
    lines = result.stdout.splitlines()
    assert "ok   archive: source cxone: token: credentials accepted, bearer token obtained" in lines
    assert "ok   archive: source cxone: discovery: lists streams (first: 100001)" in lines
    assert f"ok   archive: sink gzip: destination: {out} (to be created in {tmp_path.resolve()}): writable" in lines
    assert not (tmp_path / "archive").exists() and not (tmp_path / "state").exists()  # nothing created
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".voxpipe-probe")]


def test_connect_catches_a_wrong_secret_and_an_unwritable_destination(tmp_path):
    recs = recordings_dir(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with emulator(recs) as (emu, base):
        config = tmp_path / "p.yaml"
        config.write_text(pipeline_yaml(base, ids_of(recs), blocker / "archive", tmp_path / "state"))
        result = check("--connect", config, secret="wrong-secret")
        assert emu.stats.bytes_served() == 0
    assert result.returncode == 1
    out = result.stdout
    assert "FAIL archive: source cxone: token: " in out and "token request failed" in out
    assert "discovery" not in out  # not attempted without a token
    assert f"FAIL archive: sink gzip: destination: {blocker / 'archive'}: {blocker} is not a directory" in out
    assert "wrong-secret" not in out + result.stderr
    assert "2 checks failed" in result.stderr


def test_connect_checks_a_webhook_endpoint_without_sending_anything(tmp_path):
    async def main():
        accepted, received = [], []

        async def handler(stream):
            accepted.append(True)
            received.append(await stream.receive_some(100))  # b"" once the checker hangs up
            await stream.aclose()

        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            port = listener.socket.getsockname()[1]
            text = textwrap.dedent(f"""
                pipelines:
                  p:
                    source: {{type: cxone, api_base: "http://127.0.0.1:9", token_url: "http://127.0.0.1:9/t",
                              client_id: a, client_secret: b, recordings: ["1"], max_attempts: 1}}
                    sinks:
                      - {{type: webhook, url: "http://127.0.0.1:{port}/hook?tenant=abc",
                          secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}}
                      - {{type: webhook, url: "http://127.0.0.1:1/closed",
                          secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}}
                """)
            config = tmp_path / "p.yaml"
            config.write_text(text)
            result = await trio.to_thread.run_sync(lambda: CliRunner().invoke(cli, ["check", "--connect", str(config)]))
            with trio.move_on_after(5):
                while not received:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
        return result, accepted, received

    result, accepted, received = trio.run(main)
    assert result.exit_code == 1, result.output
    assert "ok   p: sink webhook: endpoint: http://127.0.0.1:" in result.output
    assert "accepts connections" in result.output and "tenant=abc" not in result.output  # queries are not echoed
    assert "FAIL p: sink webhook: endpoint: http://127.0.0.1:1/closed: resolves to 127.0.0.1; connection refused" \
        in result.output
    assert accepted == [True] and received == [b""]  # connected, sent nothing


def test_connect_and_dry_run_against_the_genesys_emulator(tmp_path):
    from genesys_helpers import emulator as genesys_emulator, make_recordings, pipeline_yaml as genesys_yaml

    make_recordings(tmp_path / "recs")
    with genesys_emulator(tmp_path / "recs") as (url, app):
        config = tmp_path / "g.yaml"
        config.write_text(genesys_yaml(url, tmp_path / "archive", source="interval: 2026-11-01T00:00:00Z/2026-11-30T00:00:00Z"))
        good = check("--connect", config)
        config.write_text(config.read_text().replace("emulator-secret", "wrong-secret"))
        bad = check("--connect", config)
        config.write_text(config.read_text().replace("wrong-secret", "emulator-secret"))
        dry = subprocess.run([sys.executable, "-m", "voxpipe", "run", "--dry-run", str(config)], capture_output=True,
                             text=True, timeout=120)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "ok   g: source genesys: token: credentials accepted" in good.stdout
    assert "ok   g: source genesys: discovery: lists streams (first: " in good.stdout
    assert bad.returncode == 1 and "FAIL g: source genesys: token: " in bad.stdout and "401" in bad.stdout
    assert "wrong-secret" not in bad.stdout + bad.stderr
    lines = dry.stdout.splitlines()
    assert dry.returncode == 0 and len(lines) == 6 and all(len(line) <= 80 for line in lines)
    assert all(re.search(r" 2026-11-\d\dT\d\d:\d\d:\d\dZ  fetch$", line) for line in lines), lines
    assert not (tmp_path / "archive").exists()
