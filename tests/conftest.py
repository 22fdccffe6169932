"""Shared fixtures: temporary plugin registration and test components."""

from __future__ import annotations

import contextlib

import pytest

from voxpipe.plugins import get_plugin_manager, get_registry


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
def installed_voxpipe(tmp_path_factory):
    """voxpipe as a user has it: a wheel built from this tree, installed into a fresh venv
    (built once per test session; see ``wheel_env``)."""
    from wheel_env import build_and_install

    return build_and_install(tmp_path_factory.mktemp("wheel"))
