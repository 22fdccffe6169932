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


def test_setting_types_render_as_users_write_them():
    from pathlib import Path as P
    from typing import Literal, Optional

    from voxpipe.docgen import _type_name

    assert _type_name(int) == "int"
    assert _type_name(P | None) == "Path | null"
    assert _type_name(Optional[Literal["WAV", "MP3"]]) == "one of WAV, MP3 | null"
    assert _type_name(tuple[int, ...]) == "tuple[int, ...]"
    assert _type_name(dict[str, list[float]]) == "dict[str, list[float]]"


def test_plugin_guide_code_is_the_example_package_verbatim():
    """Every ``# file: PATH`` block of docs/plugins.md is that file's exact content."""
    import re

    root = Path(__file__).resolve().parent.parent
    guide = (root / "docs" / "plugins.md").read_text()
    blocks = re.findall(r"```\w+\n# file: (\S+)\n(.*?)```", guide, re.S)
    package = root / "examples" / "plugins" / "voxpipe-example"
    shipped = {str(p.relative_to(root)) for p in package.rglob("*") if p.is_file() and p.suffix in (".py", ".toml", ".yaml")
               and not {"__pycache__", "build"} & set(p.parts)}
    assert {path for path, _ in blocks} == shipped
    for path, text in blocks:
        assert text == (root / path).read_text(), f"docs/plugins.md's copy of {path} differs: paste the file again"
