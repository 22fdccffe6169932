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
