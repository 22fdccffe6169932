"""The example plugin, tested with voxpipe's public test helpers (voxpipe.testing)."""

import hashlib
import json
from pathlib import Path

from voxpipe.resources import example_recordings
from voxpipe.testing import cxone_emulator, run_pipeline

PIPELINE = Path(__file__).resolve().parent.parent / "pipeline.yaml"


def test_recordings_are_stored_by_day_and_logged(tmp_path):
    with cxone_emulator() as emulator:  # the shipped recordings, on a free loopback port
        summary = run_pipeline(PIPELINE, environ=emulator.environ(EXAMPLE_OUT=str(tmp_path)))
    assert summary.ok and len(summary.results) == 6
    for source in sorted(p for p in example_recordings().iterdir() if p.suffix != ".md"):
        [stored] = (tmp_path / "by-day").glob(f"*/{source.name}")
        assert stored.read_bytes() == source.read_bytes()
    lines = [json.loads(line) for line in (tmp_path / "outcomes.jsonl").read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == [r.id for r in sorted(summary.results, key=lambda r: r.id)]
    for line in lines:
        [path] = line["stored"]
        assert line["status"] == "ok" and hashlib.sha256(Path(path).read_bytes()).hexdigest() == line["sha256"]


def test_a_too_small_recording_is_rejected_and_logged(tmp_path):
    text = PIPELINE.read_text().replace("min_bytes: 4KiB", "min_bytes: 100KiB")
    with cxone_emulator() as emulator:
        summary = run_pipeline(text, environ=emulator.environ(EXAMPLE_OUT=str(tmp_path)))
    small = {r.id for r in summary.results if r.bytes < 100 * 1024}
    assert small and {r.id for r in summary.failed} == small
    assert all(r.reason == "too-small" for r in summary.failed)
    failed = [json.loads(line) for line in (tmp_path / "outcomes.jsonl").read_text().splitlines()
              if json.loads(line)["status"] == "failed"]
    assert {line["id"] for line in failed} == small and all("100 KiB" not in line["message"] for line in failed)
