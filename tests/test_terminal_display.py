"""The run display on a real pseudo-terminal of 80x24, and its bookkeeping."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time

import pytest
import trio
from rich.console import Console

from cxone_env import emulator, make_wav, pipeline_yaml, recordings_dir
from voxpipe.config import parse_config
from voxpipe.engine import Runner, RunSummary
from voxpipe.model import Stream, StreamResult, StreamSpec
from voxpipe.plugins import get_registry
from voxpipe.progress import LiveProgress, LogProgress, shorten_middle, summary_lines
from voxpipe_cxone.emulator.settings import DEMO_CLIENT_SECRET

COLUMNS, LINES = 80, 24
#: Seconds the whole pseudo-terminal run may take.
RUN_TIMEOUT = 120
_CSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][0-9A-B]")


class PtyRun:
    """``voxpipe ARGS`` on a pseudo-terminal of COLUMNS x LINES; output collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str], cwd=None):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
        env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
        env["TERM"] = "xterm-256color"
        self.proc = subprocess.Popen([sys.executable, "-m", "voxpipe", *args], stdin=slave, stdout=slave,
                                     stderr=slave, env=env, close_fds=True, start_new_session=True, cwd=cwd)
        os.close(slave)
        self.master = master
        self.output = b""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the child side closed
                return
            if not data:
                return
            self.output += data

    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def wait_for(self, pattern: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, _CSI.sub("", self.text())):
                return True
            if self.proc.poll() is not None:
                return bool(re.search(pattern, _CSI.sub("", self.text())))
            time.sleep(0.05)
        return False

    def finish(self) -> int:
        code = self.proc.wait(timeout=RUN_TIMEOUT)
        self.reader.join(timeout=10)
        os.close(self.master)
        return code


def screen_lines(raw: str) -> list[str]:
    """Every line as drawn: escape sequences removed, split at CR and LF."""
    return [line for line in re.split(r"\r\n|\r|\n", _CSI.sub("", raw))]


LONG = "20261130" + "0" * 18  # a 26-digit id prefix: wider than the id column


def test_a_run_on_an_80x24_terminal_fits_shows_totals_and_ends_with_a_summary(tmp_path):
    recs = recordings_dir(tmp_path)
    for f in list(recs.iterdir()):
        f.unlink()
    ids = [f"{LONG}{i:04d}" for i in range(20)]
    for i, rid in enumerate(ids):
        make_wav(recs / f"{rid}.wav", 30.0, seed=i)
    out, state = "out", "state"  # relative to the run's directory: summary lines fit too
    with emulator(recs, rate_limit="30/1") as (_, base):  # 80 requests at ~30/s: the run lasts seconds
        config = tmp_path / "p.yaml"
        config.write_text(pipeline_yaml(base, ids, out, state, concurrency=16, chunk=65536))
        env = {**os.environ, "CXONE_SECRET": DEMO_CLIENT_SECRET}
        run = PtyRun(["run", "p.yaml"], env, cwd=tmp_path)
        assert run.wait_for(r"of 20 recordings", 60), run.text()
        code = run.finish()
    raw = run.text()
    lines = screen_lines(raw)
    assert code == 0, raw
    too_wide = [line for line in lines if len(line) > COLUMNS]
    assert not too_wide, too_wide
    assert any(re.search(r"\d+ of 20 recordings", line) for line in lines)
    assert any(re.search(r"\+\d+ more", line) for line in lines), "16 streams in flight need a '+N more' row"
    assert any("…" in line and line.strip().startswith(LONG[:8]) for line in lines), "long ids shortened"
    assert any("ETA" in line for line in lines)
    summary = "\n".join(lines[-8:])
    assert "archive: 20 recordings: 20 ok, 0 failed, 0 skipped" in summary
    assert "  archive: out\n" in summary and "  report:  state/reports/run-1.json" in summary
    assert "Traceback" not in raw


def test_sigint_message_shows_and_each_interrupted_stream_is_printed_once(tmp_path):
    recs = recordings_dir(tmp_path)
    for f in list(recs.iterdir()):
        f.unlink()
    ids = [str(9000 + i) for i in range(6)]
    for i, rid in enumerate(ids):
        make_wav(recs / f"{rid}.wav", 120.0, seed=i)  # 1.9 MB each
    out, state = "out", "state"
    with emulator(recs, rate_limit="20/1") as (_, base):  # 180 requests at ~20/s: the run takes seconds
        text = pipeline_yaml(base, ids, out, state, concurrency=3, chunk=65536)
        text = text.replace("    state_dir:", "    shutdown_grace: 0\n    state_dir:")
        config = tmp_path / "p.yaml"
        config.write_text(text)
        run = PtyRun(["run", "p.yaml"], {**os.environ, "CXONE_SECRET": DEMO_CLIENT_SECRET}, cwd=tmp_path)
        assert run.wait_for(r"of 6\+? recordings", 60), run.text()
        time.sleep(0.5)
        run.proc.send_signal(signal.SIGINT)
        code = run.finish()
    lines = screen_lines(run.text())
    assert code == 1, run.text()
    assert any("SIGINT: finishing streams in flight" in line for line in lines), run.text()
    interrupted = [line.split()[1].rstrip(":") for line in lines if line.startswith("interrupted ")]
    assert interrupted and len(interrupted) == len(set(interrupted)), lines
    assert not [line for line in lines if len(line) > COLUMNS]
    assert any("interrupted" in line and "recordings:" in line for line in lines)


def test_a_resumed_streams_bar_starts_at_its_resume_offset():
    live = LiveProgress(Console(file=io.StringIO(), width=COLUMNS, height=LINES, force_terminal=True))
    stream = Stream(StreamSpec("100001", {"size": 1000}), source="cxone", pipeline="p", audit=None)
    live.stream_started(stream)
    stream.resume_offset = 600  # known once the sinks resumed, before the first bytes
    live.stream_bytes(stream, 100)
    row = live.rows[("cxone", "100001")]
    assert row.done == 700 and row.size == 1000
    text = live._row_text(row, COLUMNS, time.monotonic()).plain
    assert "700 B/1.0 kB" in text and len(text) <= COLUMNS
    bar = text.split()[1]
    assert bar.count("━") == int(len(bar) * 0.7)


def test_rows_are_bounded_by_the_terminal_height_and_restarts_keep_one_row():
    live = LiveProgress(Console(file=io.StringIO(), width=COLUMNS, height=10, force_terminal=True))
    live.pipeline = "p"
    for i in range(15):
        live.stream_started(Stream(StreamSpec(f"id{i}"), source="cxone", pipeline="p", audit=None))
    live.stream_started(Stream(StreamSpec("id0"), source="cxone", pipeline="p", audit=None, attempt=2))
    assert len(live.rows) == 15
    rendered = [t.plain for t in live._render().renderables]
    assert len(rendered) == 1 + (10 - 4)  # totals + rows that fit, the last being "+N more"
    assert rendered[-1].strip() == f"+{15 - (10 - 4 - 1)} more"


def test_already_stored_recordings_are_logged_as_skipped(caplog):
    caplog.set_level("INFO", logger="voxpipe.run")
    display = LogProgress()
    display.stream_finished(StreamResult(id="100001", source="cxone", pipeline="p", ok=True, skipped=True,
                                         reason="already-stored"))
    display.stream_finished(StreamResult(id="100002", source="cxone", pipeline="p", ok=True, bytes=5))
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["skipped 100001: already stored by an earlier run", "ok 100002: 5 bytes in 0.00 s"]
    assert (display.done, display.skipped) == (1, 1)


def test_totals_count_a_rerun_as_skipped_with_an_eta_only_once_discovery_ends(tmp_path):
    recs = recordings_dir(tmp_path)
    ids = sorted(p.stem for p in recs.iterdir())
    out, state = tmp_path / "out", tmp_path / "state"
    env = {**os.environ, "CXONE_SECRET": DEMO_CLIENT_SECRET}
    with emulator(recs, tamper=("100004",)) as (_, base):
        text = pipeline_yaml(base, ids, out, state, concurrency=2)
        for expect in ((5, 0, 1), (0, 5, 1)):
            display = LogProgress()
            summary = trio.run(Runner(parse_config(text, get_registry(), environ=env).pipeline(None),
                                      observer=display).run)
            assert (display.done, display.skipped, display.failed) == expect
            assert display.discovered == 6 and display.discovery_done
    assert display.totals_text().startswith("6 of 6 recordings · 0 ok · 5 skipped · 1 failed")
    lines = summary_lines(summary)
    assert lines[0] == "archive: 6 recordings: 0 ok, 1 failed, 5 skipped"
    assert f"  archive: {out}" in lines


def test_shorten_middle():
    assert shorten_middle("short", 10) == "short"
    assert shorten_middle("abcdefghijklmnop", 9) == "abcd…mnop"
    assert len(shorten_middle("x" * 50, 20)) == 20


def test_summary_of_an_interrupted_run_says_how_to_finish():
    summary = RunSummary(pipeline="p", started_at=0, finished_at=2, interrupted=True,
                         results=[StreamResult(id="1", source="s", pipeline="p", reason="interrupted", bytes=10)])
    lines = summary_lines(summary)
    assert lines[0] == "p: 1 recordings: 0 ok, 0 failed, 0 skipped, 1 interrupted"
    assert "stopped early" in lines[1] and "run it again to finish" in lines[-1]


def test_eta_by_bytes_when_every_size_is_known_else_by_recordings(monkeypatch):
    from voxpipe import progress

    clock = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    tally = progress.RunTally()
    for i in range(4):
        tally.stream_discovered(StreamSpec(str(i), {"size": 1000}))
    assert tally.eta() is None  # discovery still running: no total yet
    tally.discovery_finished(4)
    stream = Stream(StreamSpec("0", {"size": 1000}), source="s", pipeline="p", audit=None)
    for _ in range(10):  # 100 bytes per second
        clock[0] += 1.0
        tally.stream_bytes(stream, 100)
    tally.stream_finished(StreamResult(id="0", source="s", pipeline="p", ok=True, bytes=1000))
    assert tally.eta() == pytest.approx(3000 / 100)  # 3 recordings of 1000 bytes left at 100 B/s
    assert "1 of 4 recordings" in tally.totals_text() and "ETA 0:30" in tally.totals_text()

    unsized = progress.RunTally()
    unsized.started = clock[0]
    for i in range(5):
        unsized.stream_discovered(StreamSpec(str(i)))
    unsized.discovery_finished(5)
    clock[0] += 20.0
    unsized.stream_finished(StreamResult(id="0", source="s", pipeline="p", ok=True, bytes=10))
    unsized.stream_finished(StreamResult(id="1", source="s", pipeline="p", ok=True, bytes=10))
    assert unsized.eta() == pytest.approx(20.0 / 2 * 3)  # 10 s per recording so far, 3 to go


def test_verify_on_an_80x24_terminal_shows_progress_problems_and_a_summary(tmp_path):
    from cxone_env import ids_of, run_pipeline

    recs = recordings_dir(tmp_path)
    with emulator(recs) as (_, base):
        assert run_pipeline(pipeline_yaml(base, ids_of(recs), tmp_path / "a", tmp_path / "state")).ok
    (tmp_path / "a" / "100001.wav.gz").unlink()
    run = PtyRun(["verify", "a"], dict(os.environ), cwd=tmp_path)
    code = run.finish()
    lines = screen_lines(run.text())
    assert code == 1
    assert not [line for line in lines if len(line) > COLUMNS]  # progress, problem and summary lines
    assert any(line.startswith("missing 100001.wav.gz (recording 100001)") for line in lines)
    assert any(line.startswith("  0 orphan files, 0 unreadable manifests;") for line in lines)
    assert any(line.startswith("a: 6 stored files checked: 5 ok, 1 missing, 0 corrupt") for line in lines)
