"""docs/operations.md lists every failure reason code the code can produce, and every exit code (issue 15.8)."""

from __future__ import annotations

import re
from pathlib import Path

from voxpipe.audioformat import REASONS
from voxpipe.errors import RunBusy, StateFileError, StorageError

ROOT = Path(__file__).resolve().parent.parent
_REASON = re.compile(r"""reason\s*(?:=|:\s*str\s*=)\s*["']([a-z0-9][a-z0-9-]*)["']""")


def documented() -> tuple[set[str], list[str]]:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text[text.index("### Failure reasons"):]
    codes = set(re.findall(r"`([a-z0-9][a-z0-9-]*\*?)`", section))
    prefixes = [c[:-1] for c in codes if c.endswith("*")]
    return codes, prefixes


def produced() -> set[str]:
    found = set()
    for base in ("core", "plugins"):
        for path in (ROOT / base).rglob("*.py"):
            if "emulator" in path.parts:
                continue  # emulators' own fault plans, not stream failures
            found.update(_REASON.findall(path.read_text(encoding="utf-8")))
    return found | set(REASONS) | {"internal-error", "already-stored", "attempts-exhausted", "interrupted"}


def test_every_reason_code_is_documented_with_an_action():
    codes, prefixes = documented()
    missing = sorted(r for r in produced() if r not in codes and not any(r.startswith(p) for p in prefixes))
    assert missing == [], f"reason codes missing from docs/operations.md 'Failure reasons': {missing}"


def test_every_exit_code_is_documented():
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    table = text[text.index("### Exit codes"):text.index("### Failure reasons")]
    for code in (0, 1, 2, RunBusy.exit_code, StorageError.exit_code, StateFileError.exit_code):
        assert f"\n| {code} |" in table
