"""One run of a pipeline at a time on a machine: an exclusive lock on ``<state_dir>/run.lock``.

Two overlapping runs of one pipeline (a nightly cron job that runs long) would share the
SQLite ledger and each other's temporary files. :func:`acquire` takes an exclusive
``flock`` on the pipeline's lock file for the whole run; the kernel releases it when the
process exits, however it exits (``kill -9`` included), so a stale lock is impossible.
The file records the holder's pid, host and start time for the message the second run
prints. What the second run does is the pipeline's ``on_overlap`` setting: ``exit`` at
once, or ``wait`` up to ``overlap_wait`` seconds for the first run to end; either way,
if it cannot run it raises :class:`voxpipe.errors.RunBusy` (``voxpipe run`` exits 3).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from .errors import RunBusy

LOCK_FILE = "run.lock"
#: Seconds between attempts while waiting for another run to end.
POLL_SECONDS = 1.0


@dataclass
class RunLock:
    """A held run lock; :meth:`release` (idempotent) lets the next run in."""

    path: Path
    fd: int | None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock; the file stays (its inode is what is locked)
            self.fd = None


def _try(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd


def holder(path: Path) -> str:
    """Who holds the lock, in words (``pid 4242 on host-1 since 01:30:02 UTC``), as far as known."""
    try:
        info = json.loads(path.read_text()[:4096])
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(info["started_at"])))
        return f"pid {int(info['pid'])} on {info['host']} since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


async def acquire(state_dir: Path, pipeline: str, *, on_overlap: str, wait_seconds: float) -> RunLock:
    """Take the run lock of ``pipeline`` in ``state_dir``.

    :param on_overlap: ``exit`` (fail at once) or ``wait`` (poll every :data:`POLL_SECONDS`
        for up to ``wait_seconds``).
    :raises RunBusy: another run holds the lock (and, in ``wait`` mode, kept it too long).
    :raises OSError: the lock file cannot be created (the caller reports it as a state problem).
    """
    path = state_dir / LOCK_FILE
    deadline = trio.current_time() + (wait_seconds if on_overlap == "wait" else 0)
    while True:
        fd = _try(path)
        if fd is not None:
            break
        if trio.current_time() >= deadline:
            who = holder(path)
            waited = f" after waiting {wait_seconds:.0f} s" if on_overlap == "wait" else ""
            raise RunBusy(f"pipeline {pipeline!r} is already running ({who}; lock {path}){waited}; this run "
                          f"exits without touching anything. Let the other run finish, or set on_overlap: wait")
        await trio.sleep(POLL_SECONDS)
    info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started_at": time.time(),
                       "pipeline": pipeline}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, info, 0)
    return RunLock(path, fd)
