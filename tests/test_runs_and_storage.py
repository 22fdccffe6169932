"""Overlapping runs, orphaned temporaries, full disks and broken state files (issues 11.5, 15.4, 15.6).

Everything runs the real CLI in a subprocess. Full disks are real kernel errors without
root: ``RLIMIT_FSIZE`` in the child (writes past the limit fail with EFBIG, SIGXFSZ
ignored) and ``/dev/full`` (every write fails with ENOSPC).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from voxpipe.atomic import is_held

from plugin_fixtures import pattern

TESTS = str(Path(__file__).parent)
CLI = f"""
import sys
sys.path.insert(0, {TESTS!r})
from plugin_fixtures import ThirdPartyPlugin
from voxpipe.plugins import get_plugin_manager
get_plugin_manager().register(ThirdPartyPlugin(), name="tp")
from voxpipe.cli import cli
cli.main(args=sys.argv[1:], prog_name="voxpipe")
"""
#: A child that holds a temporary file the way a live writer does, until killed.
HOLDER = """
import sys, time
from voxpipe.atomic import hold_temporary
f = open(sys.argv[1], "ab")
hold_temporary(f.fileno())
print("held", flush=True)
time.sleep(120)
"""


def write_config(tmp_path: Path, *, ids, size=60_000, chunk=10_000, delay=0.0, name="{recording_id}.{format}",
                 extra="", archive="archive") -> Path:
    config = tmp_path / "p.yaml"
    config.write_text(textwrap.dedent(f"""
        pipelines:
          p:
            concurrency: 2
            {extra}
            source: {{type: memory, ids: {list(ids)}, size: {size}, chunk: {chunk}, delay: {delay}}}
            verifiers: [{{type: sha256}}]
            sinks:
              - {{type: file, dir: {tmp_path / archive}, name: "{name}"}}
    """))
    return config


def voxpipe(*args, limit_bytes: int | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    def limits() -> None:
        if limit_bytes is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-c", CLI, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=limits)


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CLI, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def results(proc) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, proc.stdout.splitlines())}


def parts(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.part"))


def wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# ------------------------------------------------------------------ overlapping runs (11.5)

def test_a_second_run_exits_3_and_leaves_the_first_runs_files_alone(tmp_path):
    ids = [f"r{i}" for i in range(4)]
    config = write_config(tmp_path, ids=ids, size=40_000, chunk=2_000, delay=0.25)  # ~5 s per recording
    first = start("run", "--json", "--no-progress", config)
    try:
        archive = tmp_path / "archive"
        wait_for(lambda: parts(archive), 30, "the first run's temporary files")
        in_flight = parts(archive)
        second = voxpipe("run", "--json", "--no-progress", config)
        assert second.returncode == 3, second.stderr
        assert "pipeline 'p' is already running (pid " in second.stderr and "on_overlap: wait" in second.stderr
        assert "Traceback" not in second.stderr and second.stdout == ""
        assert all(p.exists() for p in in_flight)  # still being written by the first run: untouched
        out, err = first.communicate(timeout=60)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == 0, err
    for rid in ids:
        assert (archive / f"{rid}.bin").read_bytes() == pattern(rid, 40_000)
    assert parts(archive) == []


def test_on_overlap_wait_runs_after_the_first_run_ends(tmp_path):
    config = write_config(tmp_path, ids=["a", "b"], size=20_000, chunk=2_000, delay=0.1,
                          extra="on_overlap: wait\n            overlap_wait: 60")
    first = start("run", "--json", "--no-progress", config)
    try:
        wait_for(lambda: (tmp_path / "archive" / ".voxpipe" / "p" / "run.lock").exists()
                 and parts(tmp_path / "archive"), 30, "the first run")
        second = voxpipe("run", "--json", "--no-progress", config)
        first.communicate(timeout=60)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert {r["status"] for r in results(second).values()} == {"skipped"}  # the first run stored them


# ------------------------------------------------------------------ orphaned temporaries (15.6)

def test_orphans_in_template_directories_are_removed_but_not_live_or_resumable_ones(tmp_path):
    archive = tmp_path / "archive"
    day = archive / "2024" / "05"
    day.mkdir(parents=True)
    (archive / ".quarantine").mkdir()
    orphans = [day / ".old.bin.json.0a1b2c3d4e5f.part", archive / "2024" / ".x.json.aaaaaaaaaaaa.part",
               archive / ".quarantine" / ".q.bin.json.bbbbbbbbbbbb.part", archive / ".y.999999999999.part"]
    for p in orphans:
        p.write_bytes(b"half a manifest")
    live = day / ".live.bin.json.cccccccccccc.part"
    live.write_bytes(b"another pipeline is writing this")
    not_temp = day / "notes.part"  # not a temporary name: never touched
    not_temp.write_bytes(b"x")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(live)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert is_held(live) and not is_held(orphans[0])
        config = write_config(tmp_path, ids=["n1"], size=5_000, name="{year}/{month}/{recording_id}.{format}")
        done = voxpipe("run", "--json", "--no-progress", config)
        assert done.returncode == 0, done.stderr
        assert live.exists() and not_temp.exists()
        assert [p for p in orphans if p.exists()] == []
    finally:
        holder.kill()
        holder.wait()
    audit = [json.loads(line) for line in (archive / ".voxpipe" / "p" / "audit.jsonl").read_text().splitlines()]
    removed = {e["path"] for e in audit if e["event"] == "orphan-removed"}
    assert removed == {str(p) for p in orphans}


# ------------------------------------------------------------------ full disks (15.4)

def test_a_full_disk_fails_each_recording_with_its_own_reason_and_the_rerun_completes(tmp_path):
    ids = ["a", "b", "c"]
    config = write_config(tmp_path, ids=ids, size=300_000, chunk=20_000)
    archive = tmp_path / "archive"
    full = voxpipe("run", "--json", "--no-progress", config, limit_bytes=200_000)
    assert full.returncode == 1, full.stderr
    got = results(full)
    assert set(got) == set(ids)
    for rid, r in got.items():
        assert r["status"] == "failed" and r["reason"] == "disk-full", r
        assert f"recording {rid}: writing {archive}/." in r["message"] and ".part failed: File too large" in r["message"]
    assert "Traceback" not in full.stderr and "internal-error" not in full.stdout
    assert parts(archive) == [] and not any(archive.glob("*.bin"))  # nothing partial, nothing under a final name
    again = voxpipe("run", "--json", "--no-progress", config)  # space freed
    assert again.returncode == 0, again.stderr
    assert {r["status"] for r in results(again).values()} == {"ok"}
    for rid in ids:
        assert (archive / f"{rid}.bin").read_bytes() == pattern(rid, 300_000)


def test_enospc_before_the_run_is_one_line_with_exit_4(tmp_path):
    config = write_config(tmp_path, ids=["a"], extra="audit_log: /dev/full")  # every write: ENOSPC
    proc = voxpipe("run", "--no-progress", config)
    assert proc.returncode == 4
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: /dev/full: writing the audit log failed: No space left on device; free space")
    assert not any((tmp_path / "archive").glob("*.bin"))


def test_a_ledger_that_cannot_be_written_is_exit_4(tmp_path):
    config = write_config(tmp_path, ids=["a"])
    proc = voxpipe("run", "--no-progress", config, limit_bytes=3000)  # the ledger's first pages do not fit
    assert proc.returncode == 4, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "ledger.sqlite3: opening the ledger failed" in line and "run again" in line


# ------------------------------------------------------------------ broken state files (15.4)

def test_corrupt_truncated_and_foreign_ledgers_are_exit_5_then_the_rerun_completes(tmp_path):
    config = write_config(tmp_path, ids=["a", "b"], size=5_000)
    assert voxpipe("run", "--no-progress", config).returncode == 0
    ledger = tmp_path / "archive" / ".voxpipe" / "p" / "ledger.sqlite3"
    good = ledger.read_bytes()
    cases = {
        "garbage": b"this is not a database at all\n" * 100,
        "truncated": good[: len(good) // 2] if len(good) > 8192 else good[:5000],
        "zeroed": good[:100] + bytes(len(good) - 100),
    }
    for name, data in cases.items():
        for extra in ("-wal", "-shm"):
            Path(str(ledger) + extra).unlink(missing_ok=True)
        ledger.write_bytes(data)
        proc = voxpipe("run", "--no-progress", config)
        assert proc.returncode == 5, (name, proc.stderr)
        [line] = proc.stderr.strip().splitlines()
        assert line.startswith(f"error: {ledger}: the ledger is "), line
        assert f"mv {ledger} {ledger}.broken" in line and "Traceback" not in proc.stderr
    ledger.unlink()
    foreign = sqlite3.connect(ledger)
    foreign.execute("CREATE TABLE invoices (id INTEGER)")
    foreign.commit()
    foreign.close()
    proc = voxpipe("run", "--no-progress", config)
    assert proc.returncode == 5 and "an SQLite database but not a voxpipe ledger (it has tables invoices" in proc.stderr
    ledger.rename(str(ledger) + ".broken")  # what the message says to do
    again = voxpipe("run", "--json", "--no-progress", config)
    assert again.returncode == 0, again.stderr
    assert {r["status"] for r in results(again).values()} == {"ok"}  # identical files count as stored


def test_a_corrupt_webhook_outbox_is_exit_5(tmp_path):
    config = write_config(tmp_path, ids=["a"], size=5_000)
    text = config.read_text().replace("sinks:\n", "sinks:\n      - {type: webhook, url: http://127.0.0.1:9/h, "
                                      "secrets: [whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3], drain_timeout: 0}\n")
    config.write_text(text)
    outbox = tmp_path / "archive" / ".voxpipe" / "p" / "outbox.sqlite3"
    outbox.parent.mkdir(parents=True)
    outbox.write_bytes(b"\x00" * 4096)
    proc = voxpipe("run", "--no-progress", config)
    assert proc.returncode == 5, proc.stderr
    assert f"error: {outbox}: the webhook outbox is not an SQLite database" in proc.stderr
    assert not any((tmp_path / "archive").glob("*.bin"))
