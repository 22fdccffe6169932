"""The database goes away mid-run: two workers on one PostgreSQL ledger, the server
stopped for a few seconds and started again; both workers finish, every recording is
stored once and byte-identical. Uses its own PostgreSQL (the session's is shared)."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import pytest

from cxone_env import emulator
from ledger_support import (check_archive, identity, make_recordings, postgres_server, start_worker, worker_env,
                            write_pipeline)
from voxpipe.ledger import open_ledger

RECORDINGS = 150
OUTAGE_SECONDS = 4.0


@pytest.fixture
def own_server():
    pytest.importorskip("pgserver")
    with postgres_server() as server:
        yield server


def _restart_after(server, seconds: float) -> None:
    """Stop the server (fast shutdown: sessions cut), wait, start it with the same options."""
    from pgserver import pg_ctl

    data = Path(server.pgdata)
    argv = shlex.split((data / "postmaster.opts").read_text())[1:]
    options = [a for i, a in enumerate(argv) if a != "-D" and (i == 0 or argv[i - 1] != "-D")]
    pg_ctl(["-w", "stop", "-m", "fast"], pgdata=data, user=server.system_user)
    time.sleep(seconds)
    pg_ctl(["-w", "start", "-o", shlex.join(options), "-l", str(data / "restart.log")], pgdata=data,
           user=server.system_user)


def test_workers_ride_out_a_database_restart(tmp_path, own_server):
    ids = [str(600000 + i) for i in range(RECORDINGS)]
    digests = make_recordings(tmp_path / "recordings", ids, lambda i: 2.0)
    url = own_server.get_uri("postgres")
    with emulator(tmp_path / "recordings") as (_, base):
        config = write_pipeline(tmp_path, base, ids, lease=20, heartbeat=2)
        procs = [start_worker(config, worker_env(url)) for _ in range(2)]
        ledger = open_ledger(url, state_dir=tmp_path, pipeline="night", identity=identity(base))
        try:
            deadline = time.monotonic() + 60
            while ledger.counts().get("stored", 0) < RECORDINGS // 4 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            ledger.close()
        assert all(p.poll() is None for p in procs), "the run ended before the outage"
        _restart_after(own_server, OUTAGE_SECONDS)
        for proc in procs:
            _, stderr = proc.communicate(timeout=180)
            assert proc.returncode == 0, stderr[-3000:]
    check_archive(tmp_path / "out", digests)
    ledger = open_ledger(url, state_dir=tmp_path, pipeline="night", identity=identity(base))
    try:
        assert ledger.counts() == {"stored": RECORDINGS}
        [run] = ledger.runs()
        assert sorted(o["id"] for o in ledger.outcomes(run["run_id"])) == ids
    finally:
        ledger.close()
