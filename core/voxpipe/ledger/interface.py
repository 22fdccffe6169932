"""The ledger interface: what the engine, reports, commands and components need.

A ledger holds every recording's state for one pipeline and one source identity (its
*scope*), the runs that worked on them, and each run's outcome per recording. Two
backends implement :class:`LedgerBackend`:

- :class:`voxpipe.ledger.sqlite.SqliteLedger`: one file, one machine (the default);
- :class:`voxpipe.ledger.postgres.PostgresLedger`: one database shared by several
  worker processes on several machines (``ledger: postgresql://...``).

No SQL lives outside the backends. Every method is synchronous and may block on I/O
(fsync, network); async code calls them through :class:`voxpipe.ledger.aio.AsyncLedger`,
which runs each in a worker thread so the trio event loop never waits on the database.

States (a transition table, :data:`TRANSITIONS`)::

    queued ──► downloading ──► verified ──► stored
                   │  ▲            │
                   ▼  │            ▼
                  failed ◄─────────┘

Claims are **leases** (see :mod:`voxpipe.ledger.leases` for the rules): a worker that
claims a recording holds it until ``expires_at`` and renews it while it works. Every
state change passes the :class:`Lease` it was made under and is *fenced*: it applies
only if the row still carries that lease's ``token``; otherwise it raises
:class:`LeaseLost` and changes nothing, so a worker that was paused past its lease can
never overwrite the progress of the worker that took the recording over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol, Sequence, runtime_checkable

from ..errors import VoxpipeError

#: Legal state changes; anything else is a bug and raises :class:`LedgerError`.
TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({"queued", "downloading", "failed"}),
    "queued": frozenset({"queued", "downloading", "failed"}),
    "downloading": frozenset({"downloading", "verified", "failed", "stored"}),
    "verified": frozenset({"stored", "failed", "downloading"}),  # downloading: a crash before commit
    "failed": frozenset({"downloading", "failed", "queued"}),
    "stored": frozenset({"stored"}),
}
#: Every state, in lifecycle order (the order ``voxpipe ledger status`` prints them).
STATES = ("queued", "downloading", "verified", "stored", "failed")
#: States in which a recording still needs work in the run that queued it.
OPEN_STATES = frozenset({"queued", "downloading", "verified"})


class LedgerError(VoxpipeError, RuntimeError):
    """An illegal state change, an unreadable ledger or an unreachable database.

    Messages name the ledger by :attr:`LedgerBackend.location` (never a password); the
    CLI prints them as ``error: ...`` without a traceback."""


class LeaseLost(LedgerError):
    """A fenced change was refused: another worker holds the recording now (its lease
    expired and was taken over), or the recording was forgotten/reset meanwhile."""


class LeaseBusy(LedgerError):
    """:meth:`LedgerBackend.acquire` found a live lease held by another worker."""


def check_transition(recording_id: str, current: str | None, new: str) -> None:
    """:raises LedgerError: ``current -> new`` is not in :data:`TRANSITIONS`."""
    if new not in TRANSITIONS.get(current, frozenset()):
        raise LedgerError(f"recording {recording_id}: illegal ledger transition {current} -> {new}")


@dataclass(frozen=True)
class RecordingState:
    """One recording's row.

    :ivar source: the source type (``cxone``), as in results and reports.
    :ivar resume_offset: bytes of the recording durably held in the sinks' partial state.
    :ivar checkpoint: sink-specific resume data (JSON): ``{"sinks": [...], "host": ...}``.
    :ivar worker: the worker holding (or that last held) the lease, ``None`` if never claimed.
    :ivar lease_token: the lease generation; every claim or takeover increments it.
    :ivar lease_until: when the lease expires (Unix seconds), ``None`` when released.
    :ivar run_id: the run that last queued or worked the recording.
    """

    source: str
    id: str
    state: str
    reason: str | None
    message: str | None
    attempts: int
    size: int | None
    etag: str | None
    resume_offset: int
    checkpoint: dict[str, Any] | None
    sha256: str | None
    stored: list[dict[str, Any]] | None
    verdicts: list[dict[str, Any]] | None
    updated_at: float
    worker: str | None = None
    lease_token: int = 0
    lease_until: float | None = None
    run_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (for ``voxpipe ledger --json``)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Lease:
    """The right to change one recording, until ``expires_at`` (Unix seconds) unless renewed.

    :ivar token: the lease generation the holder's changes are fenced with.
    """

    source: str
    id: str
    worker: str
    token: int
    expires_at: float


@dataclass(frozen=True)
class Claim:
    """A recording taken from the shared queue: its lease, the discovered spec's metadata
    (JSON), the row as it was before the claim (``takeover``: the previous lease expired),
    and ``attempt``, the attempt the claim began (the claim marks the row ``downloading``
    and counts it, so the first attempt needs no :meth:`LedgerBackend.begin_attempt`)."""

    lease: Lease
    metadata: Mapping[str, Any]
    state: RecordingState
    takeover: bool = False
    attempt: int = 1


@dataclass(frozen=True)
class RunHandle:
    """A worker's membership of a run.

    :ivar run_id: the run (shared by every worker draining the same queue).
    :ivar worker: this worker's id (``host:pid:random``).
    :ivar joined: the run was already under way (another worker started it): this
        worker only claims, and leaves orphan cleanup to the run's first worker.
    """

    run_id: int
    worker: str
    joined: bool = False


@dataclass(frozen=True)
class Finish:
    """A recording's final state change in one attempt, applied as one transaction by
    :meth:`LedgerBackend.finish` together with the run's outcome row.

    :ivar state: ``stored`` or ``failed``.
    :ivar keep_checkpoint: ``failed`` only: keep ``resume_offset``/``checkpoint`` (an
        interrupted stream the next attempt resumes), else both are cleared.
    :ivar outcome: ``(status, result)`` for the run's outcomes (``StreamResult.to_dict()``),
        or ``None`` when the stream will be retried in this run.
    """

    state: str
    reason: str | None = None
    message: str | None = None
    stored: list[dict[str, Any]] | None = None
    verdicts: list[dict[str, Any]] | None = None
    keep_checkpoint: bool = False
    outcome: tuple[str, dict[str, Any]] | None = None

    def columns(self) -> dict[str, Any]:
        """The recording columns this finish sets (both backends apply exactly these).

        :raises LedgerError: ``state`` is neither ``stored`` nor ``failed``.
        """
        if self.state not in ("stored", "failed"):
            raise LedgerError(f"finish state must be stored or failed, not {self.state!r}")
        fields: dict[str, Any] = {"reason": self.reason, "message": self.message}
        if self.state == "stored":
            fields.update(stored=self.stored, resume_offset=0, checkpoint=None)
        else:
            if self.verdicts is not None:
                fields["verdicts"] = self.verdicts
            if not self.keep_checkpoint:
                fields.update(resume_offset=0, checkpoint=None)
        return fields


@dataclass(frozen=True)
class WorkerInfo:
    """A worker process of a run, from its last heartbeat (Unix seconds)."""

    run_id: int
    worker: str
    started_at: float
    heartbeat_at: float
    finished_at: float | None = None
    leases: int = 0


@dataclass
class QueueStatus:
    """What is left of a run's queue: recordings per open state, and whether discovery ended."""

    open: dict[str, int] = field(default_factory=dict)
    claimable: int = 0
    discovery: str = "pending"

    @property
    def drained(self) -> bool:
        return self.discovery == "done" and not any(self.open.values())


@runtime_checkable
class LedgerBackend(Protocol):
    """The ledger contract both backends fulfil (tests in ``tests/test_ledger_contract.py``).

    All methods are thread-safe and blocking; they raise :class:`LedgerError` (never a
    driver exception) when the database cannot be used, naming :attr:`location`.
    Recordings are addressed by ``(source, recording_id)`` within the ledger's scope
    (pipeline and source identity, fixed when it is opened).
    """

    #: Where the ledger lives, fit for messages: a file path, or a URL without password.
    location: str
    #: Several processes may work the same pipeline at once (PostgreSQL): streams are
    #: claimed from a shared queue, leases expire and are taken over.
    shared: bool

    def close(self) -> None:
        """Release connections. Idempotent."""

    # ------------------------------------------------------------------ reads
    def get(self, source: str, recording_id: str) -> RecordingState | None:
        """The recording's row, or ``None`` if the ledger has never seen it."""

    def recordings(self, state: str | None = None, *, limit: int | None = None) -> list[RecordingState]:
        """Rows (all, or those in ``state``), ordered by source and id, at most ``limit``."""

    def counts(self) -> dict[str, int]:
        """Recordings per state (states with none are absent)."""

    def held_checkpoints(self) -> list[dict[str, Any]]:
        """The checkpoints (``{"sinks": [entry per storing sink], ...}``) of recordings not
        yet stored: orphan cleanup keeps the partial state they name."""

    # ------------------------------------------------------------------ runs
    def start_run(self, pipeline: str, *, worker: str, lease_seconds: float) -> RunHandle:
        """Begin (or, on a shared ledger, join) a run of ``pipeline``.

        A shared ledger joins the newest unfinished run of the scope that still has a
        live worker (heartbeat younger than ``lease_seconds``), so every worker started
        for one night drains the same queue and reports into the same run.
        """

    def heartbeat(self, run: RunHandle, leases: Sequence[Lease], *, lease_seconds: float) -> list[Lease]:
        """Renew this worker's liveness and ``leases`` by ``lease_seconds`` from now.

        Returns the leases that could *not* be renewed (lost: taken over or forgotten);
        their streams must stop without touching the ledger again.
        """

    def finish_run(self, run: RunHandle, *, interrupted: bool) -> bool:
        """This worker leaves the run. Returns ``True`` if the run is now finished (no
        other live worker remains), i.e. this worker's report covers the whole run."""

    def runs(self) -> list[dict[str, Any]]:
        """Every run, oldest first: ``run_id``, ``pipeline``, ``started_at``,
        ``finished_at`` (Unix s or ``None``), ``interrupted``, ``workers`` (count)."""

    def workers(self, run_id: int | None = None) -> list[WorkerInfo]:
        """Workers of run ``run_id`` (default: every run), oldest first."""

    def outcomes(self, run_id: int) -> list[dict[str, Any]]:
        """The stream results recorded for a run (by any of its workers), by source and id."""

    def record_outcome(self, run_id: int, source: str, recording_id: str, status: str,
                       result: dict[str, Any]) -> None:
        """Record how a stream that needed no attempt ended (skipped, attempts exhausted)."""

    # ------------------------------------------------------------------ the queue
    def begin_discovery(self, run: RunHandle) -> bool:
        """Whether this worker should run discovery for the run: it has not started, the
        worker that started it died (heartbeat older than the lease), or it is this
        worker's own unfinished one (its end could not be recorded). Discovery is
        idempotent (:meth:`enqueue` ignores ids already queued), so a repeat is safe."""

    def end_discovery(self, run: RunHandle, *, error: str | None = None) -> None:
        """Discovery of the run is complete (``error``: it stopped early, with why)."""

    def enqueue(self, run: RunHandle, source: str, specs: Sequence[tuple[str, Mapping[str, Any]]], *,
                max_attempts_total: int) -> list[RecordingState]:
        """Queue discovered recordings ``(id, JSON metadata)`` for the run.

        New ids and ``failed`` ones with attempts left become ``queued``; unfinished
        ones (a crashed earlier run's checkpoint) stay as they are and are claimable
        once their lease has expired. Returns the rows that need no attempt (``stored``,
        or ``failed`` with ``attempts >= max_attempts_total``), for their outcomes.
        """

    def claim(self, run: RunHandle, *, limit: int, lease_seconds: float) -> list[Claim]:
        """Lease up to ``limit`` recordings of the run's queue: ``queued`` ones, and
        unfinished ones whose lease expired (a takeover: the lease token increments).
        Each claimed row becomes ``downloading`` with its attempt counted (one round trip
        for claim and attempt). Concurrent claims never return the same recording
        (``FOR UPDATE SKIP LOCKED``)."""

    def queue_status(self, run: RunHandle) -> QueueStatus:
        """Open recordings of the run per state, how many are claimable now, and the
        discovery state (``pending``, ``running``, ``done``)."""

    # ------------------------------------------------------------------ one recording (fenced)
    def acquire(self, source: str, recording_id: str, *, run: RunHandle, lease_seconds: float,
                metadata: Mapping[str, Any] | None = None) -> Lease:
        """Lease one recording directly (a stream this worker discovered itself, e.g. a
        live call). Creates the row (``queued``) if needed.

        :raises LeaseBusy: another worker holds a live lease on it.
        """

    def begin_attempt(self, lease: Lease) -> int:
        """Mark the recording ``downloading`` and count the attempt; returns the attempt number."""

    def checkpoint(self, lease: Lease, *, resume_offset: int, checkpoint: dict[str, Any], etag: str | None,
                   size: int | None) -> None:
        """Record that ``resume_offset`` bytes are durably in the sinks (called after their fsync)."""

    def clear_checkpoint(self, lease: Lease) -> None:
        """Forget a checkpoint (its partial state was discarded; the next attempt starts at byte 0)."""

    def verified(self, lease: Lease, *, sha256: str | None, verdicts: list[dict[str, Any]]) -> None:
        """Every verifier passed and the sinks are prepared; commit follows."""

    def finish(self, lease: Lease, finish: Finish, *, run_id: int) -> None:
        """The attempt's final change (``stored`` or ``failed``) and, if given, the run's
        outcome row, in one transaction; the lease is released. A stored recording's
        checkpoint is cleared."""

    # ------------------------------------------------------------------ administration
    def reset(self, *, source: str | None = None, ids: Iterable[str] | None = None,
              state: str = "failed") -> int:
        """Make ``state`` recordings (``failed`` by default; ``ids`` narrows) eligible
        again: ``queued`` with ``attempts`` zeroed and reason cleared. Returns how many."""

    def forget(self, source: str, recording_id: str) -> bool:
        """Delete one recording's row (the next run treats it as new). ``False`` if absent.
        A worker holding its lease gets :class:`LeaseLost` on its next change."""
