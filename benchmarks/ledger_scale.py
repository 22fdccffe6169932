"""Ledger scale: claim+commit cycles per second on PostgreSQL, and archive throughput
of 1, 2 and 4 worker processes sharing one PostgreSQL ledger.

Part 1, the ledger alone (no network, no files). A *cycle* is one recording's way
through the ledger: ``claim`` (``FOR UPDATE SKIP LOCKED``; it also begins the attempt)
and ``finish`` (stored + the run's outcome, one statement): the issue's claim+commit
cycle; and, as the engine does it, with ``verified`` between them. Measured for SQLite
in one process (the baseline of the ratios) and PostgreSQL with one and four worker
processes draining one queue.

Each is measured with one stream per worker (sequential calls) and with eight (the
engine's streams call the ledger concurrently, so commits share WAL flushes), and once
more against a database with ``synchronous_commit = off``: the ledger's own cost when
the disk's fsync latency is taken out (what group commit across streams, or a server
configured that way, can reach; see docs/scaling.md for what that trades).

Goal (issue 11): the PostgreSQL ledger sustains >= 1,000 cycles/s, so it is never what
limits a fleet (a worker archives tens of recordings per second at most).

Part 2, whole pipelines: the CXone emulator (a thread of this otherwise idle process) serves ``--recordings``
small WAV files; 1, 2 and 4 ``voxpipe run`` processes share one PostgreSQL ledger and
one output directory; every output is checked (gunzip + SHA-256) after each run. Prints
recordings/s and the ratio to one worker. On this 2-core machine the emulator, the
database and the workers all share two cores, so the ratios show the coordination cost
and that work spreads over workers, not how a fleet of machines scales (see
docs/scaling.md).

PostgreSQL is a throwaway ``pgserver`` instance (Unix socket, temporary directory).
Run: ``python benchmarks/ledger_scale.py [--cycles 3000 --recordings 240]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from voxpipe.ledger import Finish, RunHandle, SqliteLedger, open_ledger  # noqa: E402

IDENTITY = "bench"
OUTCOME = {"status": "ok", "bytes": 32000, "digests": {"sha256": "ab" * 32}}


# ---------------------------------------------------------------------- part 1: the ledger alone


def _queue(ledger, n: int) -> RunHandle:
    run = ledger.start_run("bench", worker="setup", lease_seconds=600)
    ledger.begin_discovery(run)
    for start in range(0, n, 1000):
        ledger.enqueue(run, "cxone", [(f"{i:07d}", {}) for i in range(start, min(n, start + 1000))],
                       max_attempts_total=5)
    ledger.end_discovery(run)
    return run


#: What one cycle asks of the ledger: ``commit`` is the issue's claim+commit cycle (claim,
#: which also begins the attempt, then finish: stored + outcome); ``engine`` adds the call
#: the engine makes between them (verified), i.e. a recording too small for checkpoints.
MODES = ("commit", "engine")


def _drain(ledger, run: RunHandle, worker: str, mode: str = "commit") -> int:
    handle = RunHandle(run.run_id, worker)
    done = 0
    while claims := ledger.claim(handle, limit=1, lease_seconds=60):
        lease = claims[0].lease
        if mode == "engine":
            ledger.verified(lease, sha256="ab" * 32, verdicts=[{"verifier": "sha256", "ok": True}])
        ledger.finish(lease, Finish("stored", stored=[{"sink": "gzip", "path": f"/a/{lease.id}.gz"}],
                                    outcome=("ok", {**OUTCOME, "id": lease.id})), run_id=run.run_id)
        done += 1
    return done


def _threads(ledger, run: RunHandle, worker: str, threads: int, mode: str) -> int:
    """Drain with ``threads`` concurrent streams, as the engine's streams call the ledger."""
    counts = [0] * threads

    def one(i: int) -> None:
        counts[i] = _drain(ledger, run, worker, mode)

    pool = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts)


def _pg_worker(url: str, pipeline: str, run_id: int, worker: str, threads: int, mode: str, start, results) -> None:
    ledger = open_ledger(url, state_dir=Path("."), pipeline=pipeline, identity=IDENTITY)
    try:
        start.wait()
        results.put(_threads(ledger, RunHandle(run_id, worker), worker, threads, mode))
    finally:
        ledger.close()


def cycles_sqlite(tmp: Path, n: int, threads: int, mode: str) -> float:
    path = tmp / f"bench-{threads}-{mode}.sqlite3"
    ledger = SqliteLedger(path)
    try:
        run = _queue(ledger, n)
        t0 = time.perf_counter()
        done = _threads(ledger, run, "w1", threads, mode)
        assert done == n, f"{done} cycles for {n} recordings"
        return done / (time.perf_counter() - t0)
    finally:
        ledger.close()


def cycles_pg(url: str, n: int, workers: int, threads: int, mode: str) -> float:
    pipeline = f"bench-{workers}-{time.time_ns()}"
    setup = open_ledger(url, state_dir=Path("."), pipeline=pipeline, identity=IDENTITY)
    try:
        run = _queue(setup, n)
    finally:
        setup.close()
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_pg_worker, args=(url, pipeline, run.run_id, f"w{i}", threads, mode, start,
                                                         results))
             for i in range(workers)]
    for p in procs:
        p.start()
    time.sleep(1.5)  # every worker connected before the clock starts
    t0 = time.perf_counter()
    start.set()
    done = sum(results.get(timeout=300) for _ in procs)
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    assert done == n, f"{done} cycles for {n} recordings"
    return n / elapsed


# ---------------------------------------------------------------------- part 2: whole pipelines

def archive(url_for, base: str, tmp: Path, ids: list[str], digests: dict[str, str], workers: int) -> float:
    from ledger_support import check_archive, start_worker, worker_env, write_pipeline

    run_dir = tmp / f"run-{workers}"
    run_dir.mkdir()
    config = write_pipeline(run_dir, base, ids)
    env = worker_env(url_for(f"a{workers}"))
    t0 = time.perf_counter()
    procs = [start_worker(config, env, stdout=subprocess.DEVNULL) for _ in range(workers)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
    elapsed = time.perf_counter() - t0
    check_archive(run_dir / "out", digests)
    return len(ids) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=1500, help="Recordings per ledger measurement.")
    ap.add_argument("--recordings", type=int, default=240, help="Recordings per archive run.")
    ap.add_argument("--seconds", type=float, default=4.0, help="Length of each WAV (8 kHz PCM16: 16 KB/s).")
    ap.add_argument("--skip-archive", action="store_true", help="Only the ledger measurements.")
    ap.add_argument("--modes", nargs="+", choices=MODES, default=["commit"],
                    help="Ledger cycle kinds to measure (engine: with the verified call between).")
    args = ap.parse_args()

    import psycopg

    from ledger_support import postgres_server

    with postgres_server() as server:
        run(args, server, psycopg)


def run(args, server, psycopg) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="voxpipe-ledger-bench-"))

    def url_for(name: str) -> str:
        with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return server.get_uri(name)

    try:
        url = url_for("cycles")
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start (other users share them)")
        fast_url = url_for("cycles_async")
        with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
            conn.execute('ALTER DATABASE "cycles_async" SET synchronous_commit = off')
        for mode in args.modes:
            what = "claim + finish" if mode == "commit" else "claim + verified + finish"
            print(f"ledger cycles, {mode} ({what}), {args.cycles} recordings each; 'streams' are concurrent "
                  f"threads of a worker, as the engine's streams call the ledger:")
            base = cycles_sqlite(tmp, args.cycles, 1, mode)
            print(f"  sqlite,     1 process, 1 stream   {base:7.0f} cycles/s   (baseline)")
            rows = []
            for workers, threads in ((1, 1), (1, 8), (4, 1), (4, 8)):
                rows.append((f"postgresql, {workers} worker{'s' if workers > 1 else ' '}, {threads} stream"
                             f"{'s' if threads > 1 else ' '}",
                             lambda w=workers, t=threads: cycles_pg(url, args.cycles, w, t, mode)))
            for workers in (1, 4):
                rows.append((f"  same, database synchronous_commit=off, {workers} worker{'s' if workers > 1 else ''}, "
                             f"8 streams", lambda w=workers: cycles_pg(fast_url, args.cycles, w, 8, mode)))
            rates = {}
            for label, measure in rows:
                rates[label] = rate = measure()
                print(f"  {label} {rate:7.0f} cycles/s   {rate / base:6.2f}x baseline")
            if mode == "commit":
                best = max(v for k, v in rates.items() if k.startswith("postgresql, 4"))
                print(f"  goal: >= 1000 durable claim+commit cycles/s from four workers: "
                      f"{'met' if best >= 1000 else 'NOT met'} ({best:.0f}/s)")
        if args.skip_archive:
            return
        from ledger_support import make_recordings
        from voxpipe.serving import serve_in_thread
        from voxpipe_cxone.emulator.app import CxoneEmulator
        from voxpipe_cxone.emulator.settings import EmulatorSettings

        recs = tmp / "recordings"
        ids = [str(700000 + i) for i in range(args.recordings)]
        digests = make_recordings(recs, ids, lambda i: args.seconds)
        size = sum(p.stat().st_size for p in recs.iterdir()) / 1e6
        print(f"archive, {args.recordings} recordings ({size:.1f} MB), workers sharing one PostgreSQL ledger:")
        with serve_in_thread(CxoneEmulator(EmulatorSettings(recordings=recs))) as emu:
            rates = {}
            for workers in (1, 2, 4):
                rates[workers] = archive(url_for, emu, tmp, ids, digests, workers)
                print(f"  {workers} worker(s)   {rates[workers]:7.1f} recordings/s   "
                      f"{rates[workers] / rates[1]:4.2f}x one worker   (load average {os.getloadavg()[0]:.1f})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
