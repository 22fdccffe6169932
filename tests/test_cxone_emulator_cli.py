"""``voxpipe emulate cxone`` command: start-up banner, serving, shutdown, option errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from cxone_emulator_support import write_wav
from voxpipe_cxone.emulator.cli import cxone

LAUNCH = "from voxpipe_cxone.emulator.cli import cxone; cxone()"
STARTUP_DEADLINE = 20.0


@pytest.fixture
def recdir(tmp_path: Path) -> Path:
    d = tmp_path / "recs"
    d.mkdir()
    write_wav(d / "c1.wav", 1, seed=4)
    return d


def test_cli_serves_until_sigterm_without_printing_secrets(recdir):
    env = {**os.environ, "VOXPIPE_CXONE_CLIENT_SECRET": "env-supplied-secret"}
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "--recordings", str(recdir), "--port", "0", "--seed", "9", "--tamper", "c1", "--hmac-key", "cli-hmac-key"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        banner = []
        deadline = time.monotonic() + STARTUP_DEADLINE
        base_url = None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            banner.append(line)
            if "base URL:" in line:
                base_url = line.split("base URL:")[1].strip()
            if "Ctrl-C" in line:
                break
        assert base_url is not None, "".join(banner)
        text = "".join(banner)
        assert "demo-client" in text and "fault seed: 9" in text and f"{base_url}/oauth/token" in text
        assert "(as configured, not shown)" in text and "demo-access-secret" in text
        with httpx.Client(base_url=base_url) as client:
            token = client.post(
                "/oauth/token", data={"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "env-supplied-secret"}
            ).json()["access_token"]
            served = client.get("/api/v2/recording/download/c1", headers={"Authorization": f"Bearer {token}"})
            original = (recdir / "c1.wav").read_bytes()
            assert sum(a != b for a, b in zip(served.content, original)) == 1  # --tamper applied
            assert "x-segment-hmac" in served.headers  # --hmac-key applied
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0
        output = text + rest
        assert "stopping (SIGTERM)" in output
        for secret in ("env-supplied-secret", "cli-hmac-key", token):
            assert secret not in output
        assert '"GET /api/v2/recording/download/c1" 200' in output  # access log is on at info level
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tamper", "nope"], "'nope'"),
        (["--storage-state", "c1=lost"], "'lost'"),
        (["--storage-state", "c1"], "ID=STATE"),
        (["--drop", "1.5"], "probability"),
        (["--rate-limit", "lots"], "N/WINDOW"),
        (["--host", "0.0.0.0"], "loopback"),
    ],
)
def test_cli_option_errors_name_the_problem(recdir, args, message):
    result = CliRunner().invoke(cxone, ["--recordings", str(recdir), *args])
    assert result.exit_code == 2
    assert message in result.output


def test_cli_refuses_an_empty_directory(tmp_path):
    result = CliRunner().invoke(cxone, ["--recordings", str(tmp_path)])
    assert result.exit_code == 2 and "no audio files" in result.output
