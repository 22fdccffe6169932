"""Which backend a pipeline's ``ledger`` setting names, and how to show it safely."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .interface import LedgerBackend, LedgerError

#: URL schemes of the PostgreSQL backend (libpq's own).
POSTGRES_SCHEMES = ("postgresql", "postgres")
#: Default ledger file name inside a pipeline's state directory.
LEDGER_FILE = "ledger.sqlite3"


def is_url(spec: str | Path | None) -> bool:
    """Whether ``spec`` is a database URL (``postgresql://...``) rather than a file path."""
    return isinstance(spec, str) and spec.split("://", 1)[0].lower() in POSTGRES_SCHEMES and "://" in spec


def redact_url(url: str) -> str:
    """``url`` without its password (and without any ``password=`` query parameter), for
    messages and reports: ``postgresql://voxpipe:***@db:5432/ledger``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    query = "&".join(("password=***" if q.lower().startswith("password=") else q)
                     for q in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def open_ledger(spec: str | Path | None, *, state_dir: Path, pipeline: str, identity: str) -> LedgerBackend:
    """The ledger a pipeline's ``ledger`` setting names.

    :param spec: ``None`` (``<state_dir>/ledger.sqlite3``), a file path (SQLite) or a
        ``postgresql://`` URL (PostgreSQL; needs ``voxpipe[postgres]``).
    :param pipeline: the pipeline name; with ``identity`` (the source's, see
        :meth:`voxpipe.components.Source.identity`) it scopes a shared database's rows.
    :raises LedgerError: the backend cannot be opened (the message never holds a password).
    """
    if is_url(spec):
        try:
            from .postgres import PostgresLedger
        except ImportError as exc:
            raise LedgerError(f"ledger {redact_url(str(spec))}: the PostgreSQL backend needs "
                              f"`pip install 'voxpipe[postgres]'` ({exc.name} is missing)") from None
        return PostgresLedger(str(spec), pipeline=pipeline, identity=identity)
    from .sqlite import SqliteLedger

    return SqliteLedger(Path(spec) if spec is not None else state_dir / LEDGER_FILE)
