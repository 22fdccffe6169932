"""Several workers, one PostgreSQL ledger, the CXone emulator: 300 recordings archived
exactly once with one worker SIGKILLed mid-run (issue 11's acceptance test).

The emulator runs in this process behind a small ASGI wrapper that logs every download
request with the process that sent it (the client socket's owner, from /proc), so the
test can show that no recording was downloaded by two workers at the same time.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ledger_support import check_archive, identity, make_recordings, start_worker, worker_env, write_pipeline
from voxpipe.ledger import open_ledger
from voxpipe.serving import serve_in_thread
from voxpipe_cxone.emulator.app import CxoneEmulator
from voxpipe_cxone.emulator.settings import EmulatorSettings
from voxpipe_webhook.pg_outbox import PgOutbox

from webhook_receiver import Receiver, verified

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc to map sockets")

RECORDINGS = 300
WORKERS = 3
LEASE = 6.0
HEARTBEAT = 1.0
DOWNLOAD = "/api/v2/recording/download/"

WEBHOOK_SINK = """
      - type: webhook
        url: {hook}/hooks/voxpipe
        secrets: ["{secret}"]
        retry_schedule: [0, 0.2]
        timeout: 5
"""
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"three-workers-webhook-secret-0123").decode()


class RequestLog:
    """ASGI wrapper: every download request's recording, sending process and interval."""

    def __init__(self, app, pids: set[int]):
        self.app, self.pids = app, pids
        self.entries: list[dict] = []
        self._owners: dict[int, int | None] = {}
        self._lock = threading.Lock()

    def _owner(self, client_port: int, server_port: int) -> int | None:
        if client_port in self._owners:
            return self._owners[client_port]
        inode = None
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local, remote = fields[1], fields[2]
                if int(local.split(":")[1], 16) == client_port and int(remote.split(":")[1], 16) == server_port:
                    inode = fields[9]
                    break
        owner = None
        if inode is not None:
            target = f"socket:[{inode}]"
            for pid in list(self.pids):
                try:
                    fds = os.listdir(f"/proc/{pid}/fd")
                except OSError:
                    continue
                if any(_readlink(f"/proc/{pid}/fd/{fd}") == target for fd in fds):
                    owner = pid
                    break
        self._owners[client_port] = owner
        return owner

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(DOWNLOAD) or scope["method"] != "GET":
            return await self.app(scope, receive, send)
        pid = self._owner(scope["client"][1], scope["server"][1])
        entry = {"id": scope["path"][len(DOWNLOAD):], "pid": pid, "start": time.time(), "end": None}
        with self._lock:
            self.entries.append(entry)
        try:
            await self.app(scope, receive, send)
        finally:
            entry["end"] = time.time()


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def test_three_workers_one_killed_store_every_recording_once(tmp_path, pg_url):
    recs = tmp_path / "recordings"
    ids = [str(300000 + i) for i in range(RECORDINGS)]
    digests = make_recordings(recs, ids, lambda i: 1.0 + (i % 5) * 0.5)  # 16-48 KB
    out, state = tmp_path / "out", tmp_path / "state"
    env = worker_env(pg_url)
    pids: set[int] = set()
    log = RequestLog(CxoneEmulator(EmulatorSettings(recordings=recs)), pids)
    receiver = Receiver()
    with serve_in_thread(log) as base, serve_in_thread(receiver) as hook:
        config = write_pipeline(tmp_path, base, ids, lease=LEASE, heartbeat=HEARTBEAT,
                                extra_sinks=WEBHOOK_SINK.format(hook=hook, secret=WEBHOOK_SECRET))
        procs = []
        for _ in range(WORKERS):
            proc = start_worker(config, env)
            pids.add(proc.pid)
            procs.append(proc)
        ledger = open_ledger(pg_url, state_dir=state, pipeline="night", identity=identity(base))
        try:
            victim = procs[1]
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:  # kill once a third is stored and the victim holds leases
                counts = ledger.counts()
                held = [r for r in ledger.recordings("downloading") + ledger.recordings("queued")
                        if r.worker and r.worker.split(":")[1] == str(victim.pid) and r.lease_until]
                if counts.get("stored", 0) >= RECORDINGS // 3 and held:
                    break
                time.sleep(0.02)
            assert victim.poll() is None, "the victim finished before it could be killed"
            victim.send_signal(signal.SIGKILL)
            killed_at = time.time()
            victim.wait()
            orphaned = {r.id for r in ledger.recordings() if r.state != "stored" and r.lease_until
                        and r.worker and r.worker.split(":")[1] == str(victim.pid)}
            assert orphaned, "the victim held no lease when it was killed"
            survivors = [p for p in procs if p is not victim]
            for proc in survivors:
                stdout, stderr = proc.communicate(timeout=120)
                assert proc.returncode == 0, stderr[-3000:]

            # every recording stored exactly once, byte-identical
            assert ledger.counts() == {"stored": RECORDINGS}
            check_archive(out, digests)
            [run] = ledger.runs()
            outcomes = ledger.outcomes(run["run_id"])
            assert sorted(o["id"] for o in outcomes) == ids and all(o["status"] == "ok" for o in outcomes)
            assert run["workers"] == WORKERS and run["finished_at"] is not None
            # the webhook outbox is shared: every recording announced, nothing left pending
            outbox = PgOutbox(ledger)
            assert outbox.counts()["pending"] == 0 and outbox.counts()["delivered"] >= RECORDINGS
            announced = {b["recording_id"] for b in verified(receiver.snapshot(), WEBHOOK_SECRET) if b["success"]}
            assert announced == set(ids)
        finally:
            ledger.close()

    # no recording downloaded by two workers at the same time (the emulator's request log)
    by_id: dict[str, list[dict]] = {}
    for entry in log.entries:
        assert entry["pid"] in pids, f"download of {entry['id']} from an unknown process"
        by_id.setdefault(entry["id"], []).append(entry)
    assert set(by_id) == set(ids)
    for rid, entries in by_id.items():
        spans = {}
        for e in entries:
            lo, hi = spans.get(e["pid"], (e["start"], e["end"] or killed_at))
            spans[e["pid"]] = (min(lo, e["start"]), max(hi, e["end"] or killed_at))
        ordered = sorted(spans.values())
        for (_, first_end), (second_start, _) in zip(ordered, ordered[1:]):
            assert first_end <= second_start, f"recording {rid} downloaded by two workers at once: {spans}"
    # the dead worker's recordings were taken over within the lease time (plus a heartbeat and a poll)
    for rid in orphaned:
        later = [e["start"] for e in by_id[rid] if e["pid"] != victim.pid and e["start"] > killed_at]
        assert later, f"recording {rid} was never downloaded again after the kill"
        assert min(later) - killed_at <= LEASE + HEARTBEAT + 2.0, (rid, min(later) - killed_at)
        assert min(later) - killed_at >= LEASE - HEARTBEAT - 0.5  # not before the lease could expire

    # the run's report covers the whole night, every worker's outcomes
    report = json.loads((state / "reports" / f"run-{run['run_id']}.json").read_text())
    assert report["totals"]["stored"] == RECORDINGS and report["totals"]["processed"] == RECORDINGS
    assert report["run"]["workers"] == WORKERS
    again = subprocess.run([sys.executable, "-m", "voxpipe", "report", str(config), "--format", "json"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["totals"] == report["totals"]  # voxpipe report reads the shared ledger
