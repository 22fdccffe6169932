"""Helpers shared by the shared-ledger tests and benchmarks/ledger_scale.py: a throwaway
PostgreSQL, the worker pipeline, recordings with their digests, worker processes, and
the check that an archive holds every recording byte-identical."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from cxone_env import make_wav
from voxpipe_cxone.emulator.settings import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

#: The pipeline every worker runs: CXone -> sha256 -> gzip level 1, ledger from $LEDGER_URL.
WORKER_PIPELINE = """
pipelines:
  night:
    concurrency: {concurrency}
    state_dir: {state}
    ledger: ${{LEDGER_URL}}
    lease_seconds: {lease}
    heartbeat_seconds: {heartbeat}
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


@contextmanager
def postgres_server() -> Iterator[object]:
    """A PostgreSQL 16 from the ``pgserver`` wheel in a temporary directory; stopped and
    deleted afterwards. The directory is world-traversable because pgserver runs
    PostgreSQL as its own user when started as root."""
    import pgserver

    base = tempfile.mkdtemp(prefix="voxpipe-pg-")
    os.chmod(base, 0o755)
    server = pgserver.get_server(os.path.join(base, "data"), cleanup_mode="stop")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def identity(base: str) -> str:
    """The CXone source identity of a pipeline against the emulator at ``base``."""
    return f"cxone {base} client={DEMO_CLIENT_ID}"


def make_recordings(directory: Path, ids: list[str], seconds) -> dict[str, str]:
    """Write ``{id}.wav`` for each id (``seconds(i)`` long); return their SHA-256 by id."""
    directory.mkdir(parents=True, exist_ok=True)
    digests = {}
    for i, rid in enumerate(ids):
        path = make_wav(directory / f"{rid}.wav", seconds=seconds(i), seed=i)
        digests[rid] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def write_pipeline(directory: Path, base: str, ids: list[str], *, lease: float = 60, heartbeat: float = 20,
                   concurrency: int = 4, extra_sinks: str = "") -> Path:
    """The worker pipeline (ids file, state and out directories under ``directory``)."""
    (directory / "ids.txt").write_text("\n".join(ids) + "\n")
    config = directory / "pipeline.yaml"
    config.write_text(WORKER_PIPELINE.format(concurrency=concurrency, state=directory / "state", lease=lease,
                                             heartbeat=heartbeat, base=base, client_id=DEMO_CLIENT_ID,
                                             ids=directory / "ids.txt", out=directory / "out") + extra_sinks)
    return config


def worker_env(ledger_url: str) -> dict[str, str]:
    return {**os.environ, "CXONE_SECRET": DEMO_CLIENT_SECRET, "LEDGER_URL": ledger_url}


def start_worker(config: Path, env: dict[str, str], **popen) -> subprocess.Popen:
    """``voxpipe run`` in its own process."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([sys.executable, "-m", "voxpipe", "-q", "run", "--no-progress", str(config)],
                            env=env, text=True, **popen)


def check_archive(out: Path, digests: dict[str, str]) -> None:
    """``out`` holds exactly one ``{id}.wav.gz`` per recording, each decompressing to the source's bytes."""
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".gz") == sorted(f"{r}.wav.gz" for r in digests)
    for rid, digest in digests.items():
        with gzip.open(out / f"{rid}.wav.gz", "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, rid
