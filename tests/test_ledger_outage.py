"""The database goes away mid-run: two workers on one PostgreSQL ledger, the server
stopped for a few seconds and started again; both workers finish, every recording is
stored once and byte-identical. Uses its own PostgreSQL (the session's is shared)."""

from __future__ import annotations

import gzip
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from cxone_env import emulator, make_wav
from voxpipe.ledger import open_ledger
from voxpipe_cxone.emulator.settings import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

RECORDINGS = 150
OUTAGE_SECONDS = 4.0

PIPELINE = """
pipelines:
  night:
    concurrency: 4
    state_dir: {state}
    ledger: ${{LEDGER_URL}}
    lease_seconds: 20
    heartbeat_seconds: 2
    source:
      type: cxone
      api_base: {base}
      token_url: {base}/oauth/token
      client_id: {client_id}
      client_secret: ${{CXONE_SECRET}}
      recordings_file: {ids}
      retry_base_delay: 0.01
    verifiers:
      - type: sha256
    sinks:
      - type: gzip
        dir: {out}
        level: 1
"""


@pytest.fixture
def own_server():
    pgserver = pytest.importorskip("pgserver")
    base = tempfile.mkdtemp(prefix="voxpipe-pg-outage-")
    os.chmod(base, 0o755)
    server = pgserver.get_server(os.path.join(base, "data"), cleanup_mode="stop")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


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
    recs = tmp_path / "recordings"
    recs.mkdir()
    ids = [str(600000 + i) for i in range(RECORDINGS)]
    digests = {}
    for i, rid in enumerate(ids):
        path = make_wav(recs / f"{rid}.wav", seconds=2.0, seed=i)
        digests[rid] = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    url = own_server.get_uri("postgres")
    env = {**os.environ, "CXONE_SECRET": DEMO_CLIENT_SECRET, "LEDGER_URL": url}
    out = tmp_path / "out"
    with emulator(recs) as (_, base):
        config = tmp_path / "p.yaml"
        config.write_text(PIPELINE.format(state=tmp_path / "state", base=base, client_id=DEMO_CLIENT_ID,
                                          ids=tmp_path / "ids.txt", out=out))
        procs = [subprocess.Popen([sys.executable, "-m", "voxpipe", "-q", "run", "--no-progress", str(config)],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        ledger = open_ledger(url, state_dir=tmp_path, pipeline="night", identity=f"cxone {base} client={DEMO_CLIENT_ID}")
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
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".gz") == sorted(f"{rid}.wav.gz" for rid in ids)
    for rid in ids:
        with gzip.open(out / f"{rid}.wav.gz", "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digests[rid], rid
    ledger = open_ledger(url, state_dir=tmp_path, pipeline="night", identity=f"cxone {base} client={DEMO_CLIENT_ID}")
    try:
        assert ledger.counts() == {"stored": RECORDINGS}
        [run] = ledger.runs()
        assert sorted(o["id"] for o in ledger.outcomes(run["run_id"])) == ids
    finally:
        ledger.close()
