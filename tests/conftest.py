"""Shared fixtures: temporary plugin registration and test components."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, settings

from voxpipe.plugins import get_plugin_manager, get_registry


# Property tests check correctness, not speed: a per-example deadline only measures how
# loaded the machine is (CI shares its cores), so it is off for every test.
settings.register_profile("voxpipe", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("voxpipe")


@contextlib.contextmanager
def registered(plugin, name: str | None = None):
    """Register ``plugin`` with the process plugin manager for the block, then remove it."""
    pm = get_plugin_manager()
    pm.register(plugin, name=name)
    try:
        yield get_registry()
    finally:
        pm.unregister(plugin)


@pytest.fixture
def register_plugin():
    """``with register_plugin(obj) as registry: ...``"""
    return registered


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL 16 from the ``pgserver`` wheel, for the whole session (about 5 s to
    start), on a Unix socket in a temporary directory; stopped and deleted at the end."""
    pytest.importorskip("pgserver")
    from ledger_support import postgres_server

    with postgres_server() as server:
        yield server


@pytest.fixture
def pg_url(pg_server, request):
    """The URL of a fresh, empty database for this test."""
    import re
    import uuid

    import psycopg

    name = "t_" + re.sub(r"\W", "_", request.node.name)[:40].lower() + "_" + uuid.uuid4().hex[:8]
    with psycopg.connect(pg_server.get_uri("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_server.get_uri(name)


@pytest.fixture(scope="session")
def installed_voxpipe(tmp_path_factory):
    """voxpipe as a user has it: a wheel built from this tree, installed into a fresh venv
    (built once per test session; see ``wheel_env``)."""
    from wheel_env import build_and_install

    return build_and_install(tmp_path_factory.mktemp("wheel"))
