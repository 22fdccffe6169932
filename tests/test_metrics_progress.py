"""The live progress display's bookkeeping: rows per recording, totals, re-runs."""

from __future__ import annotations

import io
import os
import textwrap

import trio
from rich.console import Console

from cxone_env import emulator, ids_of, pipeline_yaml, recordings_dir
from voxpipe.config import parse_config
from voxpipe.engine import Runner
from voxpipe.model import Stream, StreamResult, StreamSpec
from voxpipe.plugins import get_registry
from voxpipe.progress import MAX_STREAM_ROWS, LiveProgress
from voxpipe_cxone.emulator.settings import DEMO_CLIENT_SECRET


def display() -> tuple[LiveProgress, io.StringIO]:
    out = io.StringIO()
    return LiveProgress(Console(file=out, width=120, force_terminal=True)), out


def test_rows_follow_recordings_and_totals_count_outcomes(tmp_path):
    recs = recordings_dir(tmp_path)
    ids = ids_of(recs)
    out, state = tmp_path / "out", tmp_path / "state"
    env = {**os.environ, "CXONE_SECRET": DEMO_CLIENT_SECRET}
    with emulator(recs, tamper=("100004",)) as (emu, base):
        text = textwrap.dedent(pipeline_yaml(base, ids, out, state, concurrency=2))
        first, printed = display()
        trio.run(Runner(parse_config(text, get_registry(), environ=env).pipeline(None), observer=first).run)
        assert (first.done, first.skipped, first.failed) == (len(ids) - 1, 0, 1)
        assert first.tasks == {}  # every row removed when its stream ended
        assert first.bytes == sum(p.stat().st_size for p in recs.iterdir() if p.suffix != ".md")
        assert "failed" in printed.getvalue() and "100004" in printed.getvalue()

        again, _ = display()
        trio.run(Runner(parse_config(text, get_registry(), environ=env).pipeline(None), observer=again).run)
    assert (again.done, again.skipped, again.failed) == (0, len(ids) - 1, 1)
    assert again._totals() == f"archive: 0 ok, {len(ids) - 1} already stored, [red]1 failed[/red]"


def test_a_restarted_stream_keeps_one_row_and_rows_are_bounded():
    live, _ = display()
    live.progress.start()
    try:
        s1 = Stream(StreamSpec("a"), source="cxone", pipeline="p", audit=None, attempt=1)
        live.stream_started(s1)
        live.stream_bytes(s1, 100)
        s2 = Stream(StreamSpec("a"), source="cxone", pipeline="p", audit=None, attempt=2)
        live.stream_started(s2)
        assert len(live.tasks) == 1
        task = live.progress.tasks[0]
        assert task.completed == 0 and "attempt 2" in task.description
        for i in range(MAX_STREAM_ROWS + 3):
            live.stream_started(Stream(StreamSpec(f"b{i}"), source="cxone", pipeline="p", audit=None))
        assert len(live.tasks) == MAX_STREAM_ROWS
        live.stream_finished(StreamResult(id="a", source="cxone", pipeline="p", ok=True))
        assert len(live.tasks) == MAX_STREAM_ROWS - 1 and ("cxone", "a") not in live.tasks
        live.stream_started(Stream(StreamSpec("c"), source="cxone", pipeline="p", audit=None))
        assert ("cxone", "c") in live.tasks  # a freed row goes to the next stream
    finally:
        live.progress.stop()
