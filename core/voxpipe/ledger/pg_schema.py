"""The PostgreSQL ledger's schema, created and migrated by voxpipe (versioned).

Everything lives in the ``voxpipe`` schema of the database the URL names, so the ledger
can share a database with other applications. ``voxpipe.schema_migrations`` lists the
versions applied; :func:`migrate` applies the missing ones in order, each in its own
transaction, under a transaction-level advisory lock (several workers starting at once
migrate once; the others wait, then find nothing to do). A database whose version is
newer than this voxpipe knows is refused (an older worker must not write rows it does
not understand).

Versions:

1. ``runs``, ``workers`` (heartbeats), ``recordings`` keyed by pipeline, source
   identity, source type and recording id (with lease columns and the queued spec),
   ``outcomes`` per run; an index of each run's open recordings for claims.
"""

from __future__ import annotations

#: A constant key for ``pg_advisory_xact_lock`` while migrating ("voxpipe" in ASCII).
MIGRATION_LOCK = 0x766F787069706500

MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE voxpipe.runs (
    run_id          bigserial PRIMARY KEY,
    pipeline        text NOT NULL,
    identity        text NOT NULL,
    started_at      double precision NOT NULL,
    finished_at     double precision,
    interrupted     boolean NOT NULL DEFAULT false,
    lease_seconds   double precision NOT NULL DEFAULT 60,  -- of the worker that started it
    discovery       text NOT NULL DEFAULT 'pending',  -- pending / running / done
    discoverer      text,
    discovery_error text
);
CREATE INDEX runs_scope ON voxpipe.runs (pipeline, identity, run_id);
CREATE TABLE voxpipe.workers (
    run_id       bigint NOT NULL REFERENCES voxpipe.runs (run_id) ON DELETE CASCADE,
    worker       text NOT NULL,
    started_at   double precision NOT NULL,
    heartbeat_at double precision NOT NULL,
    finished_at  double precision,
    PRIMARY KEY (run_id, worker)
);
CREATE TABLE voxpipe.recordings (
    pipeline      text NOT NULL,
    identity      text NOT NULL,
    source        text NOT NULL,
    id            text NOT NULL,
    state         text NOT NULL,
    reason        text,
    message       text,
    attempts      integer NOT NULL DEFAULT 0,
    size          bigint,
    etag          text,
    resume_offset bigint NOT NULL DEFAULT 0,
    checkpoint    jsonb,
    sha256        text,
    stored        jsonb,
    verdicts      jsonb,
    updated_at    double precision NOT NULL,
    worker        text,
    lease_token   bigint NOT NULL DEFAULT 0,
    lease_until   double precision,
    run_id        bigint,
    spec          jsonb,
    PRIMARY KEY (pipeline, identity, source, id)
);
CREATE INDEX recordings_open ON voxpipe.recordings (pipeline, identity, run_id, id)
    WHERE state IN ('queued', 'downloading', 'verified');
CREATE INDEX recordings_state ON voxpipe.recordings (pipeline, identity, state);
CREATE TABLE voxpipe.outcomes (
    run_id bigint NOT NULL REFERENCES voxpipe.runs (run_id) ON DELETE CASCADE,
    source text NOT NULL,
    id     text NOT NULL,
    status text NOT NULL,
    result jsonb NOT NULL,
    PRIMARY KEY (run_id, source, id)
);
""",
}
SCHEMA_VERSION = max(MIGRATIONS)
