"""The plugin manager and the registry of components it yields.

Plugins are found through the ``voxpipe`` entry-point group; first-party plugins are
registered exactly like third-party ones. A plugin that fails to import does not stop
the others: it is recorded in :attr:`Registry.load_errors` and shown by
``voxpipe plugins`` and in configuration errors that mention its components.
"""

from __future__ import annotations

import importlib.metadata
import threading
from dataclasses import dataclass, field

import pluggy

from . import hookspecs
from .components import KINDS, Component
from .errors import PluginError

ENTRY_POINT_GROUP = "voxpipe"
_HOOK_BY_KIND = {"source": "register_sources", "transform": "register_transforms",
                 "verifier": "register_verifiers", "sink": "register_sinks"}


@dataclass(frozen=True)
class PluginLoadError:
    """An entry point that failed to load: its name, target and the error text."""

    name: str
    target: str
    error: str


@dataclass(frozen=True)
class ComponentInfo:
    """A registered component: its kind, YAML ``type``, class and providing plugin."""

    kind: str
    type: str
    cls: type[Component]
    plugin: str

    @property
    def summary(self) -> str:
        return self.cls.summary()


@dataclass
class Registry:
    """Components by kind and type, plus the plugins that failed to load."""

    components: dict[str, dict[str, ComponentInfo]] = field(default_factory=lambda: {k: {} for k in KINDS})
    load_errors: list[PluginLoadError] = field(default_factory=list)

    def get(self, kind: str, type_: str) -> ComponentInfo | None:
        return self.components[kind].get(type_)

    def known(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def all(self) -> list[ComponentInfo]:
        return [info for kind in KINDS for _, info in sorted(self.components[kind].items())]


_pm: pluggy.PluginManager | None = None
_load_errors: list[PluginLoadError] = []
_lock = threading.Lock()


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, with every ``voxpipe`` entry point loaded once.

    Tests register extra plugins with ``pm.register(obj)`` and remove them with
    ``pm.unregister(obj)``; :func:`get_registry` reflects the current set.
    """
    global _pm
    with _lock:
        if _pm is None:
            pm = pluggy.PluginManager("voxpipe")
            pm.add_hookspecs(hookspecs)
            for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                if pm.has_plugin(ep.name):
                    continue
                try:
                    pm.register(ep.load(), name=ep.name)
                except Exception as exc:  # any import-time failure of a plugin is reported, not fatal
                    _load_errors.append(PluginLoadError(ep.name, ep.value, f"{type(exc).__name__}: {exc}"))
            _pm = pm
        return _pm


def get_registry(pm: pluggy.PluginManager | None = None) -> Registry:
    """Build the component registry from the plugins currently registered.

    :raises PluginError: two plugins registered the same ``type`` for one kind, or a
        registered class does not derive from the base class of its kind.
    """
    pm = pm or get_plugin_manager()
    registry = Registry(load_errors=list(_load_errors))
    for kind, hook_name in _HOOK_BY_KIND.items():
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)

            def register(cls, _kind=kind, _plugin=plugin_name):
                _add(registry, _kind, cls, _plugin)

            impl.function(register=register)
    return registry


def _add(registry: Registry, kind: str, cls: type, plugin: str) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Component) and cls.kind == kind):
        raise PluginError(f"plugin {plugin!r} registered {cls!r} as a {kind}, but it does not derive from the {kind} base class")
    if not cls.type:
        raise PluginError(f"plugin {plugin!r} registered {cls.__name__} without a 'type' name")
    existing = registry.components[kind].get(cls.type)
    if existing is not None and existing.cls is not cls:
        raise PluginError(f"{kind} type {cls.type!r} is registered by both plugin {existing.plugin!r} "
                          f"({_where(existing.cls)}) and plugin {plugin!r} ({_where(cls)}); uninstall one of them, or "
                          "have one register its component under another type name")
    registry.components[kind][cls.type] = ComponentInfo(kind, cls.type, cls, plugin)


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
