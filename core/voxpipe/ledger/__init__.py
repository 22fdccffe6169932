"""The ledger: every recording's state, per pipeline (see :mod:`.interface` for the contract).

- :class:`LedgerBackend`: the interface (a ``typing.Protocol``) the engine, reports,
  commands and components use; no SQL outside the backends;
- :class:`SqliteLedger` (the default, one file per pipeline), also importable under its
  historical name ``Ledger``; :class:`voxpipe.ledger.postgres.PostgresLedger` (shared by
  several workers, ``pip install 'voxpipe[postgres]'``);
- :func:`open_ledger` picks the backend from the pipeline's ``ledger`` setting;
- :class:`AsyncLedger`: the same methods as coroutines running in worker threads.
"""

from __future__ import annotations


from .aio import AsyncLedger
from .interface import (OPEN_STATES, STATES, TRANSITIONS, Claim, Finish, Lease, LeaseBusy, LeaseLost, LedgerBackend,
                        LedgerError, QueueStatus, RecordingState, RunHandle, WorkerInfo)
from .locate import is_url, open_ledger, redact_url
from .sqlite import SqliteLedger

#: The SQLite backend under its name before the interface was extracted.
Ledger = SqliteLedger

__all__ = ["AsyncLedger", "Claim", "Finish", "Lease", "LeaseBusy", "LeaseLost", "Ledger", "LedgerBackend",
           "LedgerError", "OPEN_STATES", "QueueStatus", "RecordingState", "RunHandle", "STATES", "SqliteLedger",
           "TRANSITIONS", "WorkerInfo", "is_url", "open_ledger", "redact_url"]
