"""``voxpipe emulate voice`` as a command: a pipeline in client mode records what it serves."""

from __future__ import annotations

import re
import subprocess
import sys

import trio

from voice_support import RECORDINGS, pipeline_yaml, processed, read_wav, runner_for
from voxpipe_voice.schedule import load_wav


def test_emulator_command_serves_calls(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "voxpipe", "emulate", "voice", "--mode", "server", "--port", "0",
                             "--speed", "0", "--file", str(RECORDINGS / "100005.wav")],
                            stderr=subprocess.PIPE, text=True)
    try:
        banner = proc.stderr.readline()
        match = re.search(r"on (ws://127\.0\.0\.1:\d+)/calls/<id>; files: 100005 \(9\.6 s\)", banner)
        assert match, banner
        source = "\n".join(["mode: client", "urls:", f"  - {match.group(1)}/calls/100005"])
        summary = trio.run(runner_for(pipeline_yaml(source, tmp_path / "out")).run)
        assert summary.ok, [r.message for r in summary.failed]
        pcm, _ = read_wav(tmp_path / "out" / "100005.wav")
        assert pcm == processed(load_wav(RECORDINGS / "100005.wav").pcm)
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) in (0, -15)


def test_emulator_command_rejects_bad_options():
    out = subprocess.run([sys.executable, "-m", "voxpipe", "emulate", "voice", "--min-bytes", "10", "--max-bytes", "5"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--min-bytes 10 exceeds --max-bytes 5" in out.stderr
