"""The command line: exit codes, messages, and the demo."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from voxpipe.cli import cli

from cxone_env import emulator, pipeline_yaml, recordings_dir

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def invoke(*args, env=None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_check_reports_every_problem_with_file_and_line(tmp_path):
    bad = tmp_path / "pipeline.yaml"
    bad.write_text((EXAMPLES / "cxone-archive.yaml").read_text()
                   .replace("chunk_size: 65536", "chunk_sise: 65536")
                   .replace("- type: sha256", "- type: sha265"))
    result = invoke("check", str(bad), env={"CXONE_API_BASE": "http://127.0.0.1:1", "CXONE_TOKEN_URL": "http://x",
                                            "CXONE_CLIENT_ID": "a"})
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert f"{bad}:22: pipelines.cxone-archive.source.chunk_sise: unknown setting (did you mean 'chunk_size'?)" in lines
    assert any(line.startswith(f"{bad}:25: pipelines.cxone-archive.verifiers[0].type: unknown verifier type 'sha265'")
               for line in lines)
    assert f"{bad}:20: pipelines.cxone-archive.source.client_secret: environment variable CXONE_CLIENT_SECRET is not set" \
        in lines


def test_check_accepts_the_examples():
    env = {"CXONE_API_BASE": "http://127.0.0.1:1", "CXONE_TOKEN_URL": "http://127.0.0.1:1/oauth/token",
           "CXONE_CLIENT_ID": "a", "CXONE_CLIENT_SECRET": "b"}
    result = invoke("check", str(EXAMPLES / "cxone-archive.yaml"), env=env)
    assert result.exit_code == 0, result.output
    assert "pipeline 'cxone-archive' is valid" in result.output


def test_plugins_lists_first_party_components():
    result = invoke("plugins", "--json")
    data = json.loads(result.output)
    types = {(c["kind"], c["type"]) for c in data["components"]}
    assert {("source", "cxone"), ("verifier", "sha256"), ("sink", "gzip"), ("sink", "file")} <= types
    assert data["load_errors"] == []


def test_run_exit_codes_and_json_results(tmp_path):
    recs = recordings_dir(tmp_path)
    with emulator(recs, tamper=("100002",)) as (emu, base):
        config = tmp_path / "p.yaml"
        config.write_text(pipeline_yaml(base, ["100001"], tmp_path / "out", tmp_path / "state"))
        env = {"CXONE_SECRET": "demo-secret"}
        ok = subprocess.run([sys.executable, "-m", "voxpipe", "run", "--json", str(config)], capture_output=True,
                            text=True, env={**__import__("os").environ, **env})
        assert ok.returncode == 0, ok.stderr
        [line] = ok.stdout.strip().splitlines()
        result = json.loads(line)
        assert result["id"] == "100001" and result["status"] == "ok"
        assert result["digests"]["sha256"] == hashlib.sha256((recs / "100001.wav").read_bytes()).hexdigest()
        config.write_text(pipeline_yaml(base, ["100002"], tmp_path / "out", tmp_path / "state"))
        bad = subprocess.run([sys.executable, "-m", "voxpipe", "run", "--no-progress", str(config)],
                             capture_output=True, text=True, env={**__import__("os").environ, **env})
        assert bad.returncode == 1
        assert "failed 100002" in bad.stderr and "sha256" in bad.stderr
        assert "demo-secret" not in bad.stderr + bad.stdout


def test_run_bad_config_exits_2(tmp_path):
    config = tmp_path / "p.yaml"
    config.write_text("pipelines: {}\n")
    result = invoke("run", str(config))
    assert result.exit_code == 2 and "p.yaml:1: pipelines" in result.output


def test_demo_archives_every_example_byte_identically(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples are package data: any directory will do
    out = tmp_path / "demo"
    result = invoke("demo", "--out", str(out), env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "every recording archived byte-identically" in result.output
    table = [line for line in result.output.splitlines() if line.lstrip().startswith(("recording", "1000"))]
    assert len(table) == 7 and all(len(line) <= 80 for line in table), table  # the demo's table fits 80 columns
    for src in (EXAMPLES / "recordings").iterdir():
        if src.suffix == ".md":
            continue
        stored = out / "archive" / f"{src.name}.gz"
        assert hashlib.sha256(gzip.decompress(stored.read_bytes())).digest() == hashlib.sha256(src.read_bytes()).digest()


def test_refused_credentials_end_the_run_with_a_clear_error(tmp_path):
    recs = recordings_dir(tmp_path)
    with emulator(recs) as (emu, base):
        config = tmp_path / "p.yaml"
        config.write_text(pipeline_yaml(base, ["100001"], tmp_path / "out", tmp_path / "state"))
        import os

        run = subprocess.run([sys.executable, "-m", "voxpipe", "run", "--no-progress", str(config)],
                             capture_output=True, text=True, env={**os.environ, "CXONE_SECRET": "wrong-secret"})
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert "failed 100001" in run.stderr and "token request failed" in run.stderr
    assert "wrong-secret" not in run.stderr


def test_unreadable_recordings_file_is_a_discovery_error(tmp_path):
    recs = recordings_dir(tmp_path)
    with emulator(recs) as (emu, base):
        text = pipeline_yaml(base, ["100001"], tmp_path / "out", tmp_path / "state")
        text = text.replace("recordings: ['100001']", f"recordings_file: {tmp_path / 'ids.txt'}")
        (tmp_path / "ids.txt").write_text("100001\nnot an id\n")
        config = tmp_path / "p.yaml"
        config.write_text(text)
        import os

        run = subprocess.run([sys.executable, "-m", "voxpipe", "run", "--no-progress", str(config)],
                             capture_output=True, text=True, env={**os.environ, "CXONE_SECRET": "demo-secret"})
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert f"error: cxone discovery failed: {tmp_path / 'ids.txt'}:2: not a recording id" in run.stderr
