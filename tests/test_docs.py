"""Generated documentation cannot drift from the settings declarations."""

from __future__ import annotations

from pathlib import Path

from voxpipe.docgen import render_configuration
from voxpipe.plugins import get_registry

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_reference_is_current():
    expected = render_configuration(get_registry())
    actual = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert actual == expected, "docs/configuration.md is stale: run `python -m voxpipe.docgen > docs/configuration.md`"


def test_every_setting_is_documented():
    for info in get_registry().all():
        for name, field in info.cls.Settings.model_fields.items():
            assert field.description, f"{info.kind} {info.type}: setting {name!r} has no description"
        assert info.summary, f"{info.kind} {info.type} has no one-line summary"
