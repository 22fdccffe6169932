"""Plugin loading: entry points, failures reported by name, conflicts."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pluggy
import pytest

from voxpipe import hookimpl, hookspecs
from voxpipe import plugins as plugins_module
from voxpipe.components import Sink
from voxpipe.errors import PluginError


class _EP:
    def __init__(self, name, value, target):
        self.name, self.value, self._target = name, value, target

    def load(self):
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


def test_a_plugin_that_fails_to_import_is_reported_by_name(monkeypatch):
    good = type("Good", (), {"register_sinks": hookimpl(lambda register: None)})
    eps = [_EP("broken", "broken_pkg.plugin", ImportError("No module named 'numpyy'")), _EP("good", "good.mod", good)]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: eps if group == "voxpipe" else [])
    monkeypatch.setattr(plugins_module, "_pm", None)
    monkeypatch.setattr(plugins_module, "_load_errors", [])
    pm = plugins_module.get_plugin_manager()
    registry = plugins_module.get_registry(pm)
    assert pm.has_plugin("good") and not pm.has_plugin("broken")
    [err] = registry.load_errors
    assert err.name == "broken" and err.target == "broken_pkg.plugin" and "numpyy" in err.error


def test_conflicting_component_names_are_an_error():
    pm = pluggy.PluginManager("voxpipe")
    pm.add_hookspecs(hookspecs)

    class A(Sink):
        type = "dup"

    class B(Sink):
        type = "dup"

    class PA:
        @hookimpl
        def register_sinks(self, register):
            register(A)

    class PB:
        @hookimpl
        def register_sinks(self, register):
            register(B)

    pm.register(PA(), name="pa")
    pm.register(PB(), name="pb")
    with pytest.raises(PluginError, match="registered by both"):
        plugins_module.get_registry(pm)


def test_registering_a_non_component_is_an_error():
    pm = pluggy.PluginManager("voxpipe")
    pm.add_hookspecs(hookspecs)

    class Bad:
        @hookimpl
        def register_sinks(self, register):
            register(dict)

    pm.register(Bad(), name="bad")
    with pytest.raises(PluginError, match="does not derive from the sink base class"):
        plugins_module.get_registry(pm)


BOUNDED = """
import re, sys, textwrap, trio
sys.path.insert(0, {tests!r})
from plugin_fixtures import ThirdPartyPlugin
from voxpipe.plugins import get_plugin_manager, get_registry
from voxpipe.config import parse_config
from voxpipe.engine import Runner
get_plugin_manager().register(ThirdPartyPlugin(), name="tp")
cfg = parse_config(textwrap.dedent('''
    pipelines:
      big:
        source: {{type: memory, ids: [huge], size: {size}, chunk: 1048576, repeat: true}}
        verifiers: [{{type: sha256}}]
        sinks: [{{type: file, dir: {out!r}}}]
'''), get_registry())
summary = trio.run(Runner(cfg.pipeline(None)).run)
assert summary.ok, summary.results
# VmHWM, not ru_maxrss: on Linux ru_maxrss survives execve, so a child spawned by a big
# pytest process would report the parent's peak; VmHWM belongs to this process image only.
status = open("/proc/self/status").read()
print(int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) // 1024)
"""


def test_a_large_recording_archives_in_bounded_memory(tmp_path):
    """768 MiB through sha256 and the file sink; peak RSS stays far below the recording's size."""
    size = 768 << 20
    script = BOUNDED.format(tests=str(Path(__file__).parent), out=str(tmp_path), size=size)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    peak_mib = int(out.stdout.strip().splitlines()[-1])
    assert peak_mib < 200, f"peak RSS {peak_mib} MiB for a {size >> 20} MiB recording"
    assert (tmp_path / "huge.bin").stat().st_size == size


def test_every_first_party_plugin_is_an_entry_point_and_loads():
    """First-party plugins are registered exactly as a third party's would be."""
    import tomllib

    root = Path(__file__).resolve().parent.parent
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["entry-points"]["voxpipe"]
    packages = {p.name for p in (root / "plugins").iterdir() if (p / "__init__.py").exists()}
    assert set(declared.values()) == packages
    registry = plugins_module.get_registry()
    assert registry.load_errors == []
    assert {info.plugin for info in registry.all()} >= {name for name, target in declared.items()
                                                         if target != "voxpipe_archive"}
