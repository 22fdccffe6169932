"""`voxpipe run --dry-run`: discovery only; nothing downloaded, stored or recorded."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

from cxone_env import emulator, ids_of, pipeline_yaml, recordings_dir, run_pipeline
from voxpipe_cxone.emulator.settings import DEMO_CLIENT_SECRET


def dry(config, *args):
    return subprocess.run([sys.executable, "-m", "voxpipe", "run", "--dry-run", *args, str(config)],
                          capture_output=True, text=True, env={**os.environ, "CXONE_SECRET": DEMO_CLIENT_SECRET},
                          timeout=120)


def ledger_rows(path):
    with sqlite3.connect(path) as db:
        return sorted(db.execute("SELECT source, id, state, attempts, updated_at FROM recordings").fetchall()), \
            db.execute("SELECT count(*) FROM runs").fetchone()[0]


def test_dry_run_lists_discovery_and_touches_nothing(tmp_path):
    recs = recordings_dir(tmp_path)
    ids = ids_of(recs)
    out, state = tmp_path / "out", tmp_path / "state"
    with emulator(recs) as (emu, base):
        config = tmp_path / "p.yaml"
        config.write_text(pipeline_yaml(base, ids, out, state))
        first = dry(config)
        assert first.returncode == 0, first.stderr
        assert emu.stats.bytes_served() == 0  # nothing downloaded
        assert [line.split()[0] for line in first.stdout.splitlines()] == ids
        assert all(line.rstrip().endswith("fetch") for line in first.stdout.splitlines())
        assert f"{len(ids)} recordings discovered: {len(ids)} to fetch, 0 to resume, 0 to skip" in first.stderr
        assert "no ledger yet" in first.stderr
        assert not out.exists() and not state.exists()  # no sink touched, no state created

        # half of them stored by a real run; then the dry run says what it would skip
        assert run_pipeline(pipeline_yaml(base, ids[:3], out, state)).ok
        before = ledger_rows(state / "ledger.sqlite3")
        stored = sorted(p.name for p in out.iterdir())
        served = emu.stats.bytes_served()
        again = dry(config, "--json")
        assert again.returncode == 0, again.stderr
        plan = [json.loads(line) for line in again.stdout.splitlines()]
        assert [(p["id"], p["action"], p["reason"]) for p in plan] == \
            [(i, "skip", "already-stored") for i in ids[:3]] + [(i, "fetch", None) for i in ids[3:]]
        assert ledger_rows(state / "ledger.sqlite3") == before  # not a single state or run row changed
        assert sorted(p.name for p in out.iterdir()) == stored
        assert emu.stats.bytes_served() == served


def test_dry_run_reports_a_discovery_failure(tmp_path):
    config = tmp_path / "p.yaml"
    text = pipeline_yaml("http://127.0.0.1:9", ["1"], tmp_path / "out", tmp_path / "state")
    config.write_text(text.replace("recordings: ['1']", f"recordings_file: {tmp_path / 'ids.txt'}"))
    (tmp_path / "ids.txt").write_text("100001\nnot an id\n")
    result = dry(config)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{tmp_path / 'ids.txt'}:2: not a recording id" in result.stderr
