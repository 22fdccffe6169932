"""Compliance reports: what one run did with every recording, as JSON and CSV.

Built only from the ledger (its ``runs`` and ``outcomes`` tables), so the report written
at the end of a run and the one ``voxpipe report STATE_DB`` prints later are the same
document. On a shared (PostgreSQL) ledger a run is the night's work of every worker that
drained its queue: the report covers the outcomes all of them recorded, and ``workers``
says how many took part. Written atomically (temporary name, fsync, rename) to
``<state_dir>/reports/run-<run_id>.json`` and ``.csv``.

Totals, per source and for the whole run (requirement: the verification issue, item 4):

- ``processed``: recordings the run settled (every outcome, skipped ones included);
- ``stored``: stored by this run; ``skipped``: already stored by an earlier run;
- ``failed``: not stored;
- ``checksum_errors``: failed recordings with a failed ``sha256`` verdict or a
  ``sha256-*`` reason; ``hmac_failures``: likewise ``hmac-sha256`` / ``hmac-*``;
  ``format_errors``: likewise ``audio-format`` / an audio-format reason code;
  a recording can count in several (a tampered one fails both SHA-256 and HMAC);
- ``other_failures``: failed recordings in none of those three (HTTP, sink, gate...).

Verdicts with reason ``incomplete`` (a verifier that never gave its judgement because
another check aborted the stream first) count nowhere.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any, Iterable

from .atomic import write_atomic
from .audioformat import REASONS as AUDIO_FORMAT_REASONS
from .ledger import LedgerBackend

REPORT_FORMAT = "voxpipe-compliance-report"
REPORT_VERSION = 1
REPORTS_DIR = "reports"

TOTAL_KEYS = ("processed", "stored", "skipped", "failed", "checksum_errors", "format_errors", "hmac_failures",
              "other_failures")
RECORDING_KEYS = ("source", "id", "status", "reason", "sha256", "stored_path", "bytes", "attempts", "verdicts",
                  "error")
CSV_COLUMNS = ("kind", *RECORDING_KEYS, *TOTAL_KEYS)
#: Reason of a verdict that was never given (another check failed first).
INCOMPLETE = "incomplete"
#: Reasons of the audio-format verifier besides the checker's own codes.
_EXTRA_FORMAT_REASONS = frozenset({"format-not-allowed"})


class ReportError(Exception):
    """No such run, or no ledger."""


def _iso(ts: float | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _categories(outcome: dict[str, Any]) -> set[str]:
    """Which error totals a failed outcome counts in."""
    found: set[str] = set()
    reasons = [outcome.get("reason") or ""]
    for v in outcome.get("verdicts") or []:
        if not v.get("ok") and v.get("reason") != INCOMPLETE:
            reasons.append(v.get("reason") or "")
            verifier = v.get("verifier")
            if verifier == "sha256":
                found.add("checksum_errors")
            elif verifier == "hmac-sha256":
                found.add("hmac_failures")
            elif verifier == "audio-format":
                found.add("format_errors")
    for reason in reasons:
        if reason.startswith("sha256-"):
            found.add("checksum_errors")
        elif reason.startswith("hmac-"):
            found.add("hmac_failures")
        elif reason in AUDIO_FORMAT_REASONS or reason in _EXTRA_FORMAT_REASONS:
            found.add("format_errors")
    return found


def _entry(outcome: dict[str, Any]) -> dict[str, Any]:
    stored = outcome.get("stored") or []
    status = outcome.get("status")
    return {
        "source": outcome.get("source"), "id": outcome.get("id"), "status": status,
        "reason": outcome.get("reason") if status != "ok" else None,
        "sha256": (outcome.get("digests") or {}).get("sha256"),
        "stored_path": stored[0].get("path") if stored else None,
        "bytes": outcome.get("bytes"), "attempts": outcome.get("attempts"),
        "verdicts": [{"verifier": v.get("verifier"), "ok": v.get("ok"), "reason": v.get("reason")}
                     for v in outcome.get("verdicts") or []],
        "error": outcome.get("message") if status == "failed" else None,
    }


def _totals(outcomes: Iterable[dict[str, Any]]) -> dict[str, int]:
    totals = dict.fromkeys(TOTAL_KEYS, 0)
    for o in outcomes:
        totals["processed"] += 1
        status = o.get("status")
        if status == "ok":
            totals["stored"] += 1
        elif status == "skipped":
            totals["skipped"] += 1
        else:
            totals["failed"] += 1
            cats = _categories(o)
            for cat in cats:
                totals[cat] += 1
            if not cats:
                totals["other_failures"] += 1
    return totals


def build_report(ledger: LedgerBackend, run_id: int | None = None) -> dict[str, Any]:
    """The report of run ``run_id`` (default: the latest run) from ``ledger``.

    Shape::

        {"format": "voxpipe-compliance-report", "version": 1,
         "run": {"run_id", "pipeline", "started_at", "finished_at" (ISO 8601 UTC), "interrupted"},
         "totals": {processed, stored, skipped, failed, checksum_errors, format_errors, hmac_failures,
                    other_failures},
         "sources": {source: {"totals": {...}, "recordings": [{source, id, status, reason, sha256,
                     stored_path, bytes, attempts, verdicts: [{verifier, ok, reason}], error}, ...]}}}

    Recordings are sorted by source then id.

    :raises ReportError: the ledger has no runs, or no run ``run_id``.
    """
    runs = ledger.runs()
    if not runs:
        raise ReportError(f"{ledger.location}: no runs recorded")
    if run_id is None:
        run = runs[-1]
    else:
        run = next((r for r in runs if r["run_id"] == run_id), None)
        if run is None:
            raise ReportError(f"{ledger.location}: no run {run_id} (runs {runs[0]['run_id']}..{runs[-1]['run_id']})")
    outcomes = ledger.outcomes(run["run_id"])
    sources: dict[str, dict[str, Any]] = {}
    for o in outcomes:
        sources.setdefault(str(o.get("source")), {"totals": {}, "recordings": []})["recordings"].append(_entry(o))
    for name, section in sources.items():
        section["totals"] = _totals(o for o in outcomes if str(o.get("source")) == name)
    return {
        "format": REPORT_FORMAT, "version": REPORT_VERSION,
        "run": {"run_id": run["run_id"], "pipeline": run["pipeline"], "started_at": _iso(run["started_at"]),
                "finished_at": _iso(run["finished_at"]), "interrupted": bool(run["interrupted"]),
                "workers": run.get("workers", 1)},
        "totals": _totals(outcomes),
        "sources": dict(sorted(sources.items())),
    }


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False) + "\n"


def _verdicts_cell(verdicts: list[dict[str, Any]]) -> str:
    return ";".join(f"{v['verifier']}={'ok' if v['ok'] else v['reason']}" for v in verdicts)


def render_csv(report: dict[str, Any]) -> str:
    """One ``recording`` row per recording, then one ``total`` row per source and one for
    the run (source ``*``); columns :data:`CSV_COLUMNS`, blank where not applicable.
    Verdicts read ``sha256=ok;hmac-sha256=hmac-mismatch``."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for section in report["sources"].values():
        for rec in section["recordings"]:
            writer.writerow({"kind": "recording", **{k: ("" if rec[k] is None else rec[k]) for k in RECORDING_KEYS},
                             "verdicts": _verdicts_cell(rec["verdicts"])})
    for name, section in report["sources"].items():
        writer.writerow({"kind": "total", "source": name, **section["totals"]})
    writer.writerow({"kind": "total", "source": "*", **report["totals"]})
    return out.getvalue()


def render_table(report: dict[str, Any]) -> str:
    """A plain-text summary for people (rich table)."""
    from rich.console import Console
    from rich.table import Table

    run = report["run"]
    console = Console(file=io.StringIO(), width=160, color_system=None)
    table = Table(title=f"run {run['run_id']} of {run['pipeline']} ({run['started_at']} .. {run['finished_at']})")
    for col in ("source", "id", "status", "reason", "verdicts", "stored path"):
        table.add_column(col, overflow="fold")
    for section in report["sources"].values():
        for rec in section["recordings"]:
            table.add_row(rec["source"], rec["id"], rec["status"], rec["reason"] or "",
                          _verdicts_cell(rec["verdicts"]), rec["stored_path"] or "")
    console.print(table)
    console.print(" ".join(f"{k}={v}" for k, v in report["totals"].items()))
    return console.file.getvalue()  # type: ignore[attr-defined]


def write_report(report: dict[str, Any], state_dir: Path) -> tuple[Path, Path]:
    """Write ``report`` as ``<state_dir>/reports/run-<id>.json`` and ``.csv``, atomically."""
    base = Path(state_dir) / REPORTS_DIR / f"run-{report['run']['run_id']}"
    json_path, csv_path = base.with_suffix(".json"), base.with_suffix(".csv")
    write_atomic(json_path, render_json(report).encode("utf-8"))
    write_atomic(csv_path, render_csv(report).encode("utf-8"))
    return json_path, csv_path


def write_run_report(ledger: LedgerBackend, run_id: int, state_dir: Path) -> tuple[Path, Path]:
    """Build and write the report of ``run_id`` (called by the engine at the end of every run)."""
    return write_report(build_report(ledger, run_id), state_dir)
