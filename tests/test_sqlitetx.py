"""voxpipe.sqlitetx.Transaction: BEGIN IMMEDIATE/COMMIT/ROLLBACK, savepoints when nested."""

from __future__ import annotations

import sqlite3

import pytest

from voxpipe.sqlitetx import Transaction


@pytest.fixture
def db(tmp_path):
    conn = sqlite3.connect(tmp_path / "t.sqlite3", isolation_level=None)
    conn.execute("CREATE TABLE t (v INTEGER)")
    yield conn
    conn.close()


def values(db):
    return [v for (v,) in db.execute("SELECT v FROM t ORDER BY v")]


def test_commits_or_rolls_back_as_a_whole(db, tmp_path):
    with Transaction(db):
        db.execute("INSERT INTO t VALUES (1)")
        other = sqlite3.connect(tmp_path / "t.sqlite3", timeout=0)
        with pytest.raises(sqlite3.OperationalError, match="locked"):  # IMMEDIATE: the write lock is held
            other.execute("BEGIN IMMEDIATE")
        other.close()
    with pytest.raises(ValueError):
        with Transaction(db):
            db.execute("INSERT INTO t VALUES (2)")
            raise ValueError("boom")
    assert values(db) == [1] and not db.in_transaction


def test_nested_is_a_savepoint_rolled_back_alone(db):
    with Transaction(db):
        db.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(ValueError):
            with Transaction(db):
                db.execute("INSERT INTO t VALUES (2)")
                raise ValueError("boom")
        with Transaction(db):
            db.execute("INSERT INTO t VALUES (3)")
        assert db.in_transaction
    assert values(db) == [1, 3] and not db.in_transaction
