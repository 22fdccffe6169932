"""The generic deferral mechanism (``Source.defer``): a recording the source leaves for a
later run is listed as deferred, never as failed, and counts no attempt."""

from __future__ import annotations

import csv
import json
import textwrap

import trio

from voxpipe import hookimpl
from voxpipe.audit import read_audit
from voxpipe.config import parse_config
from voxpipe.engine import RunObserver, Runner
from voxpipe.ledger import Ledger
from voxpipe.model import StreamSpec

from plugin_fixtures import MemorySource, ThirdPartyPlugin


class NotYetSource(MemorySource):
    """Memory source that defers ids starting with ``later-`` (as if still uploading)."""

    type = "notyet"

    async def discover(self):
        for rid in self.settings.ids:
            if rid.startswith("later-"):
                self.defer(rid, "not-ready", f"recording {rid} is still being uploaded", waited=1.5)
            else:
                yield StreamSpec(rid, {"format": "bin"})


class NotYetPlugin(ThirdPartyPlugin):
    @hookimpl
    def register_sources(self, register):
        register(NotYetSource)


class Seen(RunObserver):
    def __init__(self):
        self.deferred = []

    def stream_deferred(self, deferral):
        self.deferred.append(deferral)


def test_deferred_recordings_are_reported_not_failed(register_plugin, tmp_path):
    text = textwrap.dedent(f"""
        pipelines:
          p:
            state_dir: {tmp_path}/state
            source: {{type: notyet, ids: [a, later-1, b, later-2], size: 5000, chunk: 1000}}
            verifiers: [{{type: sha256}}]
            sinks: [{{type: collect}}]
    """)
    observer = Seen()
    with register_plugin(NotYetPlugin(), name="notyet") as registry:
        config = parse_config(text, registry, filename="p.yaml", environ={})
        summary = trio.run(Runner(config.pipeline(None), observer=observer).run)
    assert summary.ok and sorted(r.id for r in summary.results) == ["a", "b"]
    assert [d.id for d in summary.deferred] == ["later-1", "later-2"] == [d.id for d in observer.deferred]
    assert summary.deferred_count == 2 and summary.failed == []
    d = summary.deferred[0]
    assert d.to_dict() == {"id": "later-1", "source": "notyet", "pipeline": "p", "status": "deferred",
                           "reason": "not-ready", "message": "recording later-1 is still being uploaded",
                           "details": {"waited": 1.5}}
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite3")
    try:
        assert ledger.get("notyet", "later-1") is None and ledger.get("notyet", "a") is not None
    finally:
        ledger.close()
    report = json.loads(summary.report_paths[0].read_text())
    assert report["totals"]["processed"] == 2 and report["totals"]["failed"] == 0
    assert report["totals"]["deferred"] == 2 and report["sources"]["notyet"]["totals"]["deferred"] == 2
    entries = {e["id"]: e for e in report["sources"]["notyet"]["recordings"]}
    assert [e for e in entries] == ["a", "b", "later-1", "later-2"]  # sorted by id
    assert entries["later-2"] == {"source": "notyet", "id": "later-2", "status": "deferred", "reason": "not-ready",
                                  "sha256": None, "stored_path": None, "bytes": 0, "attempts": 0, "verdicts": [],
                                  "error": "recording later-2 is still being uploaded", "recording_date": None,
                                  "interaction_ids": []}
    rows = list(csv.DictReader(summary.report_paths[1].open()))
    assert [r["status"] for r in rows if r["kind"] == "recording"] == ["ok", "ok", "deferred", "deferred"]
    assert [r["deferred"] for r in rows if r["kind"] == "total"] == ["2", "2"]
    [end] = [e for e in read_audit(tmp_path / "state" / "audit.jsonl") if e["event"] == "run-end"]
    assert end["deferred"] == 2 and end["failed"] == 0


def test_results_table_lists_deferred_rows():
    from rich.console import Console

    from voxpipe.model import Deferral
    from voxpipe.engine import RunSummary
    from voxpipe.progress import results_table

    summary = RunSummary("p", deferred=[Deferral("x9", "genesys", "p", "file-state-restoring", "still RESTORING")])
    console = Console(width=200, color_system=None, record=True)
    console.print(results_table(summary))
    text = console.export_text()
    assert "x9" in text and "deferred (file-state-restoring)" in text and "still RESTORING" in text
