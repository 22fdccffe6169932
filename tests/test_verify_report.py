"""Compliance reports: exact JSON and CSV for a mixed run against the emulator (stored,
tampered, wrong format, not downloadable, then skipped on a re-run), written atomically
at the end of every run and reprinted by ``voxpipe report``."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import time
from pathlib import Path

from click.testing import CliRunner
from verify_env import cxone_yaml, run_yaml

from cxone_env import EXAMPLES, emulator
from voxpipe.cli import cli
from voxpipe.ledger import Ledger
from voxpipe.report import CSV_COLUMNS, TOTAL_KEYS

KEY = "report-key"
IDS = ["100001", "100002", "100003", "100004", "200001"]
VERIFIERS = "- type: sha256\n- type: hmac-sha256\n  key: ${HMAC_KEY}\n- type: audio-format"


def _iso(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _verdicts(*pairs):
    return [{"verifier": v, "ok": r is None, "reason": r} for v, r in pairs]


def _mixed_run(tmp_path):
    recs = tmp_path / "recs"
    recs.mkdir()
    for name in ("100001.wav", "100002.wav", "100003.mp3", "100004.opus"):
        shutil.copy(EXAMPLES / name, recs / name)
    shutil.copy(EXAMPLES / "100004.opus", recs / "200001.mp3")  # an Opus recording served as MP3
    out, state = tmp_path / "out", tmp_path / "state"
    text = cxone_yaml("{base}", IDS, out, state, verifiers=VERIFIERS, sink_extra="on_failure: quarantine")
    with emulator(recs, hmac_key=KEY, tamper=("100002",), storage_states={"100004": "archived"}) as (emu, base):
        first = run_yaml(text.replace("{base}", base), env={"HMAC_KEY": KEY})
        second = run_yaml(text.replace("{base}", base), env={"HMAC_KEY": KEY})
    return recs, out, state, first, second


def test_mixed_run_report_is_exact_in_json_and_csv_and_reprinted_by_the_cli(tmp_path):
    recs, out, state, first, second = _mixed_run(tmp_path)
    results = {r.id: r for r in first.results}
    sha = {p.stem: hashlib.sha256(p.read_bytes()).hexdigest() for p in recs.iterdir()}
    tampered = bytearray((recs / "100002.wav").read_bytes())
    tampered[len(tampered) // 2] ^= 0x01
    tampered_sha = hashlib.sha256(tampered).hexdigest()
    ledger = Ledger(state / "ledger.sqlite3")
    runs = ledger.runs()
    ledger.close()
    assert [r["run_id"] for r in runs] == [1, 2]

    ok3 = _verdicts(("sha256", None), ("hmac-sha256", None), ("audio-format", None))
    recordings = [
        {"source": "cxone", "id": "100001", "status": "ok", "reason": None, "sha256": sha["100001"],
         "stored_path": str((out / "100001.wav.gz").resolve()), "bytes": 84520, "attempts": 1, "verdicts": ok3,
         "error": None},
        {"source": "cxone", "id": "100002", "status": "failed", "reason": "sha256-mismatch", "sha256": tampered_sha,
         "stored_path": None, "bytes": 154626, "attempts": 1,
         "verdicts": _verdicts(("sha256", "sha256-mismatch"), ("hmac-sha256", "hmac-mismatch"), ("audio-format", None)),
         "error": f"recording 100002: SHA-256 of 154626 bytes received is {tampered_sha}, the source declared "
                  f"{sha['100002']}"},
        {"source": "cxone", "id": "100003", "status": "ok", "reason": None, "sha256": sha["100003"],
         "stored_path": str((out / "100003.mp3.gz").resolve()), "bytes": 22981, "attempts": 1, "verdicts": ok3,
         "error": None},
        {"source": "cxone", "id": "100004", "status": "failed", "reason": "not-available", "sha256": None,
         "stored_path": None, "bytes": 0, "attempts": 1, "verdicts": [],
         "error": "recording 100004: storageState 'archived' is not downloadable (needs available or stored)"},
        {"source": "cxone", "id": "200001", "status": "failed", "reason": "format-mismatch", "sha256": None,
         "stored_path": None, "bytes": results["200001"].bytes, "attempts": 1,
         "verdicts": _verdicts(("sha256", "incomplete"), ("hmac-sha256", "incomplete"),
                               ("audio-format", "format-mismatch")),
         "error": results["200001"].message},
    ]
    assert results["200001"].message.startswith("recording 200001: declared format 'mp3' but the bytes are OGG")
    totals = {"processed": 5, "stored": 2, "skipped": 0, "failed": 3, "checksum_errors": 1, "format_errors": 1,
              "hmac_failures": 1, "other_failures": 1}
    expected = {
        "format": "voxpipe-compliance-report", "version": 1,
        "run": {"run_id": 1, "pipeline": "archive", "started_at": _iso(runs[0]["started_at"]),
                "finished_at": _iso(runs[0]["finished_at"]), "interrupted": False, "workers": 1},
        "totals": totals,
        "sources": {"cxone": {"totals": totals, "recordings": recordings}},
    }
    json_path, csv_path = first.report_paths
    assert json_path == state / "reports" / "run-1.json" and csv_path == state / "reports" / "run-1.csv"
    assert json.loads(json_path.read_text()) == expected
    assert not list((state / "reports").glob(".*"))  # written atomically: no temporary left

    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert list(rows[0]) == list(CSV_COLUMNS)
    blank_totals = dict.fromkeys(TOTAL_KEYS, "")
    expected_rows = [{"kind": "recording", **{k: "" if v is None else str(v) for k, v in rec.items()},
                      "verdicts": ";".join(f"{v['verifier']}={'ok' if v['ok'] else v['reason']}"
                                           for v in rec["verdicts"]), **blank_totals} for rec in recordings]
    blank_rec = {k: "" for k in CSV_COLUMNS if k not in TOTAL_KEYS and k != "kind"}
    for source in ("cxone", "*"):
        expected_rows.append({"kind": "total", **blank_rec, "source": source,
                              **{k: str(v) for k, v in totals.items()}})
    assert rows == expected_rows
    assert rows[1]["verdicts"] == "sha256=sha256-mismatch;hmac-sha256=hmac-mismatch;audio-format=ok"

    # The re-run skips what is stored and fails the rest again.
    second_report = json.loads(second.report_paths[0].read_text())
    assert second_report["totals"] == {"processed": 5, "stored": 0, "skipped": 2, "failed": 3, "checksum_errors": 1,
                                       "format_errors": 1, "hmac_failures": 1, "other_failures": 1}
    skipped = {r["id"]: r for r in second_report["sources"]["cxone"]["recordings"] if r["status"] == "skipped"}
    assert sorted(skipped) == ["100001", "100003"]
    assert skipped["100001"]["sha256"] == sha["100001"]
    assert skipped["100001"]["stored_path"] == str((out / "100001.wav.gz").resolve())

    # `voxpipe report` reprints the same documents.
    runner = CliRunner()
    db = str(state / "ledger.sqlite3")
    res = runner.invoke(cli, ["report", db, "--run", "1", "--format", "json"])
    assert res.exit_code == 0 and res.output == json_path.read_text()
    res = runner.invoke(cli, ["report", db, "--run", "1", "--format", "csv"])
    assert res.exit_code == 0 and res.output == csv_path.read_text()
    res = runner.invoke(cli, ["report", str(state), "--format", "json"])  # the state directory, latest run
    assert res.exit_code == 0 and res.output == second.report_paths[0].read_text()
    res = runner.invoke(cli, ["report", db, "--run", "1"])
    assert res.exit_code == 0
    assert "100002" in res.output and "sha256-mismatch" in res.output and "format_errors=1" in res.output
    res = runner.invoke(cli, ["report", db, "--run", "9"])
    assert res.exit_code == 2 and "no run 9" in res.output
    res = runner.invoke(cli, ["report", str(tmp_path / "out")])  # a directory without a ledger
    assert res.exit_code == 2 and "no ledger" in res.output
    assert KEY not in json_path.read_text() + csv_path.read_text()
    # Quarantined: what was received and judged; not the recording refused before any byte.
    quarantined = sorted(json.loads(p.read_text())["recording_id"] for p in (out / ".quarantine").glob("*.json"))
    assert quarantined == ["100002", "100002", "200001", "200001"]  # both runs


def test_quarantine_dir_setting_and_delete_default(tmp_path):
    recs = tmp_path / "recs"
    recs.mkdir()
    shutil.copy(EXAMPLES / "100004.opus", recs / "200001.mp3")
    qdir = tmp_path / "q"
    out, state = tmp_path / "out", tmp_path / "state"
    with emulator(recs) as (emu, base):
        text = cxone_yaml(base, ["200001"], out, state, verifiers="- type: audio-format",
                          sink_extra=f"on_failure: quarantine\nquarantine_dir: {qdir}")
        run_yaml(text)
        text = cxone_yaml(base, ["200001"], tmp_path / "out2", tmp_path / "state2", verifiers="- type: audio-format")
        run_yaml(text)
    (report,) = qdir.glob("*.json")
    data = json.loads(report.read_text())
    assert data["reason"] == "format-mismatch" and Path(qdir / data["file"]).is_file()
    assert not (out / ".quarantine").exists()
    assert not [p for p in (tmp_path / "out2").rglob("*") if p.is_file()]  # delete: nothing kept
