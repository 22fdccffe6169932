"""First-party plugin: the archive retrieval API (``voxpipe serve``) and retention (``voxpipe retention``).

Modules: :mod:`.paths` (id checks, containment), :mod:`.manifest` (reading manifests),
:mod:`.index` (the catalogue), :mod:`.conditional` (Range/ETag decisions),
:mod:`.bodies` (bounded, verified body readers), :mod:`.auth` (bearer tokens),
:mod:`.app` (the ASGI app), :mod:`.retention` (policy planning and deletion),
:mod:`.cli` (the commands).
"""

from voxpipe import hookimpl


@hookimpl
def register_commands(cli):
    from .cli import retention, serve

    cli.add_command(serve)
    cli.add_command(retention)
