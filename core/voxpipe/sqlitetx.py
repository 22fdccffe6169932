"""Write transactions on an autocommit SQLite connection, shared by every SQLite store
(the ledger, the webhook outbox)."""

from __future__ import annotations

import sqlite3


class Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) on a connection opened
    with ``isolation_level=None``: the write lock is taken up front, so a transaction never
    fails half-way on ``SQLITE_BUSY`` after reading. Inside an already open transaction
    (e.g. :meth:`voxpipe.ledger.SqliteLedger.run_batch`) it is a savepoint instead, rolled
    back alone on error.

    :raises sqlite3.Error: from ``BEGIN``/``COMMIT`` (busy past the connection's timeout,
        disk full...); on ``COMMIT`` failure nothing of the transaction is applied.
    """

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self.nested = False

    def __enter__(self) -> None:
        self.nested = self.db.in_transaction
        self.db.execute("SAVEPOINT nested" if self.nested else "BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.nested:
            if exc_type:
                self.db.execute("ROLLBACK TO nested")
            self.db.execute("RELEASE nested")
        else:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
