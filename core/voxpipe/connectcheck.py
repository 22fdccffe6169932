"""``voxpipe check --connect``: every pipeline's components check what they need, for real.

For each pipeline of a valid file: the source is started and asked for its checks
(:meth:`voxpipe.components.Component.check_connect`: obtain a token, read the first page of
discovery), then every sink (a storing sink's destination is writable; a webhook endpoint
resolves and accepts a connection). Nothing is downloaded, stored or announced; no
ledger, audit log or outbox is opened. Each component's checks are bounded by
:data:`COMPONENT_TIMEOUT` seconds; an exception is a failed check carrying its message.

Also here, the checks components share: :func:`check_writable_dir` and :func:`check_endpoint`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import trio

from .components import Component, ConnectCheck, PipelineContext, aclose_all
from .config import PipelineConfig
from .engine import _primary_error, state_dir_of

#: Seconds one component's checks may take in all.
COMPONENT_TIMEOUT = 60.0
#: Seconds a TCP connection to an endpoint may take.
CONNECT_TIMEOUT = 10.0
#: Seconds components get to close afterwards.
CLOSE_TIMEOUT = 10.0


@dataclass(frozen=True)
class CheckLine:
    """One reported check: which pipeline and component, and the check itself."""

    pipeline: str
    component: str  # "source cxone", "sink gzip"
    check: ConnectCheck


async def check_pipeline(config: PipelineConfig, on_line: Callable[[CheckLine], None] = lambda line: None) -> list[CheckLine]:
    """Run the connection checks of one pipeline's source and sinks (see the module docstring)."""
    lines: list[CheckLine] = []

    def report(component: Component, check: ConnectCheck) -> None:
        line = CheckLine(config.name, f"{component.kind} {component.type}", check)
        lines.append(line)
        on_line(line)

    context = PipelineContext(pipeline=config.name, state_dir=Path("."))
    components: list[Component] = []
    try:
        for cfg in (config.source, *config.sinks):
            components.append(cfg.info.cls(cfg.settings, context))
    except Exception as exc:  # a constructor that fails is a failed check, not a traceback
        report(_Named(cfg.info.kind, cfg.type), ConnectCheck("setup", False, str(_primary_error(exc))))
        return lines
    context.state_dir = state_dir_of(config, [c for c in components if c.kind == "sink"])  # not created
    async with trio.open_nursery() as nursery:
        try:
            for component in components:
                checks = await _checks_of(component, nursery)
                if not checks:
                    checks = [ConnectCheck("connect", True, "nothing to check")]
                for check in checks:
                    report(component, check)
        finally:
            await aclose_all(components, CLOSE_TIMEOUT)
            nursery.cancel_scope.cancel()
    return lines


async def _checks_of(component: Component, nursery: trio.Nursery) -> list[ConnectCheck]:
    try:
        with trio.fail_after(COMPONENT_TIMEOUT):
            if component.kind == "source":  # a source may need its tasks (a server binds here); sinks
                await component.start(nursery)  # are not started: that would open outboxes
            return list(await component.check_connect())
    except trio.TooSlowError:
        return [ConnectCheck("connect", False, f"no answer within {COMPONENT_TIMEOUT:.0f} s")]
    except Exception as exc:
        return [ConnectCheck("connect", False, str(_primary_error(exc)))]


@dataclass
class _Named:
    kind: str
    type: str


def check_writable_dir(directory: Path) -> ConnectCheck:
    """Whether files can be created in ``directory`` (or, when it does not exist yet, in its
    nearest existing ancestor, where it would be created), by creating and deleting an empty
    hidden probe file: permission bits alone do not tell (root, read-only mounts, ACLs).
    """
    directory = Path(directory)
    probe_dir = directory
    while not probe_dir.exists():
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    where = str(directory) if probe_dir == directory else f"{directory} (to be created in {probe_dir.resolve()})"
    if not probe_dir.is_dir():
        return ConnectCheck("destination", False, f"{directory}: {probe_dir} is not a directory")
    try:
        fd, name = tempfile.mkstemp(prefix=".voxpipe-probe-", dir=probe_dir)
    except OSError as exc:
        return ConnectCheck("destination", False, f"{where}: cannot create files ({exc.strerror})")
    os.close(fd)
    os.unlink(name)
    return ConnectCheck("destination", True, f"{where}: writable")


async def check_endpoint(url: str, display: str | None = None) -> ConnectCheck:
    """Whether ``url``'s host resolves and accepts a TCP connection on its port (nothing is
    sent). ``display`` is how to name it (a URL without query string or credentials)."""
    import httpx

    parsed = httpx.URL(url)
    name = display or f"{parsed.scheme}://{parsed.host}{'' if parsed.port is None else f':{parsed.port}'}"
    port = parsed.port or (443 if parsed.scheme in ("https", "wss") else 80)
    try:
        addresses = await trio.socket.getaddrinfo(parsed.host, port, type=trio.socket.SOCK_STREAM)
    except OSError as exc:
        return ConnectCheck("endpoint", False, f"{name}: {parsed.host} does not resolve ({exc})")
    shown = ", ".join(sorted({a[4][0] for a in addresses})[:3])
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            stream = await trio.open_tcp_stream(parsed.host, port)
    except trio.TooSlowError:
        return ConnectCheck("endpoint", False, f"{name}: resolves to {shown}; no connection within {CONNECT_TIMEOUT:.0f} s")
    except OSError as exc:
        return ConnectCheck("endpoint", False, f"{name}: resolves to {shown}; connection refused ({exc.strerror or exc})")
    await stream.aclose()
    return ConnectCheck("endpoint", True, f"{name}: resolves to {shown}, accepts connections")
