"""SIGKILL after every durability step of a run (each rename, unlink, fsync and ledger commit),
then the same command again: every recording stored once, byte-identical, with its manifest,
no temporary file left, every ledger row ``stored``.

Two recordings archived at once (so their ledger writes share group commits), with
checkpoints, into the gzip sink: the steps cover checkpoints, prepare, the group-committed
``verified`` and final changes, the rename of file and manifest with their one directory
fsync, and the run's end. The killed run is the CLI in a subprocess whose step functions
are wrapped by a small launcher (:data:`LAUNCHER`): nothing in voxpipe knows about it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from voxpipe.orphans import FRESH_SECONDS, MAX_DEPTH, find_orphans
from voxpipe.ledger import Ledger

from cxone_env import emulator, make_wav, pipeline_yaml, sha256_file
from voxpipe_cxone.emulator.settings import DEMO_CLIENT_SECRET

#: Wraps the step functions, counts completed steps, SIGKILLs itself after step KILL_AFTER
#: (0: never), and writes the number of steps it saw to STEPS_FILE when the run ends.
LAUNCHER = r"""
import os, signal, sys
import voxpipe.ledger

kill_after = int(os.environ["KILL_AFTER"])
steps = 0

def step(name):
    global steps
    steps += 1
    if steps == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)

def wrap(owner, attr):
    original = getattr(owner, attr)
    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        step(attr)
        return result
    setattr(owner, attr, wrapped)

for name in ("replace", "rename", "link", "unlink", "fsync", "fdatasync"):
    if hasattr(os, name):
        wrap(os, name)
wrap(voxpipe.ledger.Ledger, "run_batch")
wrap(voxpipe.ledger.Ledger, "record_outcome")

from voxpipe.cli import cli
try:
    cli(["-q", "run", "--no-progress", sys.argv[1]], prog_name="voxpipe")
finally:
    with open(os.environ["STEPS_FILE"], "w") as f:
        f.write(str(steps))
"""


def run(config: Path, tmp: Path, kill_after: int) -> tuple[int, int]:
    """Run the pipeline, killed after step ``kill_after``; returns (exit status, steps seen or -1)."""
    steps_file = tmp / "steps"
    steps_file.unlink(missing_ok=True)
    env = {**os.environ, "CXONE_SECRET": DEMO_CLIENT_SECRET, "KILL_AFTER": str(kill_after),
           "STEPS_FILE": str(steps_file)}
    proc = subprocess.run([sys.executable, "-c", LAUNCHER, str(config)], env=env, capture_output=True, text=True,
                          timeout=120)
    steps = int(steps_file.read_text()) if steps_file.exists() else -1
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr[-2000:]
    return proc.returncode, steps


def check_archive(out: Path, state: Path, sources: dict[str, str]) -> None:
    for rid, want in sources.items():
        stored = list(out.rglob(f"{rid}.wav.gz"))
        assert len(stored) == 1, stored
        assert hashlib.sha256(gzip.decompress(stored[0].read_bytes())).hexdigest() == want
        manifest = json.loads(Path(f"{stored[0]}.json").read_text())
        assert manifest["stored_sha256"] == sha256_file(stored[0]) and manifest["original_sha256"] == want
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".part")]
    # A kill between creating a temporary file and writing to it leaves an empty one, which
    # clean-up spares while it is fresh (its writer may be about to lock it; see
    # voxpipe.orphans.FRESH_SECONDS). Once that grace is over it must be an orphan like any
    # other: nothing may be left that no clean-up would ever remove.
    assert all(p.stat().st_size == 0 for p in leftovers), leftovers
    later = time.time() + FRESH_SECONDS + 1
    assert sorted(find_orphans(out, depth=MAX_DEPTH, now=later)) == sorted(leftovers)
    ledger = Ledger(state / "ledger.sqlite3")
    try:
        assert {s.id: s.state for s in ledger.all()} == {rid: "stored" for rid in sources}
    finally:
        ledger.close()


def test_sigkill_after_every_step_then_rerun(tmp_path):
    recs = tmp_path / "recordings"
    recs.mkdir()
    ids = ["8001", "8002"]
    for i, rid in enumerate(ids):
        make_wav(recs / f"{rid}.wav", seconds=5 + 2 * i, seed=40 + i)  # 80-112 KB: a checkpoint each
    sources = {rid: sha256_file(recs / f"{rid}.wav") for rid in ids}
    with emulator(recs) as (_, base):
        # How many steps a whole run takes.
        out, state = tmp_path / "out0", tmp_path / "state0"
        config = tmp_path / "p0.yaml"
        config.write_text(pipeline_yaml(base, ids, out, state, concurrency=2, chunk=64 * 1024, checkpoint=64 * 1024))
        status, total = run(config, tmp_path, 0)
        assert status == 0 and total >= 20, (status, total)
        check_archive(out, state, sources)
        killed_at = []
        for k in range(1, total + 1):
            out, state = tmp_path / f"out{k}", tmp_path / f"state{k}"
            config = tmp_path / f"p{k}.yaml"
            config.write_text(pipeline_yaml(base, ids, out, state, concurrency=2, chunk=64 * 1024,
                                            checkpoint=64 * 1024))
            status, _ = run(config, tmp_path, k)
            if status == -signal.SIGKILL:
                killed_at.append(k)
            status, _ = run(config, tmp_path, 0)  # the same command again, not killed
            assert status == 0, f"re-run after a kill at step {k} failed"
            check_archive(out, state, sources)
        # Runs differ a little in their steps (which stream checkpoints first...), but most
        # of the planned kills must have happened, or the test proves nothing.
        assert len(killed_at) >= total * 0.8, (len(killed_at), total)
