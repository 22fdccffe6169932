"""Hook specifications: how plugins contribute components and commands.

Every hook follows the ``register_*(register)`` pattern of datasette and llm: the
plugin calls ``register`` once per thing it contributes. The specs carry no code, only
the contract. A plugin module registers through the ``voxpipe`` entry-point group::

    [project.entry-points.voxpipe]
    my_sink = "my_package.plugin"

and implements any of these hooks with :data:`voxpipe.hookimpl`.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("voxpipe")


@hookspec
def register_sources(register):
    """Register source components.

    Call ``register(cls)`` with a subclass of :class:`voxpipe.components.Source` for
    each source. The class declares ``type`` (the name used as ``type:`` in YAML),
    a nested ``Settings`` model (a :class:`voxpipe.settings.Settings` subclass), and a
    docstring whose first line is the one-line summary shown by ``voxpipe plugins``.
    """


@hookspec
def register_transforms(register):
    """Register transform components: ``register(cls)`` with a
    :class:`voxpipe.components.Transform` subclass (same declarations as sources)."""


@hookspec
def register_verifiers(register):
    """Register verifier components: ``register(cls)`` with a
    :class:`voxpipe.components.Verifier` subclass (same declarations as sources)."""


@hookspec
def register_sinks(register):
    """Register sink components: ``register(cls)`` with a
    :class:`voxpipe.components.Sink` subclass (same declarations as sources)."""


@hookspec
def register_commands(cli):
    """Add command-line commands.

    ``cli`` is the root :class:`click.Group`; ``cli.emulate`` is the group behind
    ``voxpipe emulate``, where emulators of vendor platforms add their sub-command
    (``cli.emulate.add_command(cmd)``).
    """


@hookspec(firstresult=True)
def open_archive_storage(location):
    """Open an archive that is not a local directory, for ``voxpipe serve`` and ``voxpipe retention``.

    ``location`` is what the user gave, e.g. ``s3://bucket/prefix?endpoint_url=...``.
    Return a :class:`voxpipe.archive_storage.ArchiveStorage` when this plugin handles the
    location's scheme, else ``None``. Raise ``ValueError`` with a message naming what is
    wrong when the location is for this plugin but unusable (bad bucket, unreachable store).
    """


@hookspec
def register_archive_stores(register):
    """Register readers of archives kept elsewhere than a directory (object storage).

    Call ``register(scheme, factory)``: ``factory(url)`` returns a
    :class:`voxpipe.archivestore.ArchiveStore` for ``scheme://...`` locations, which
    ``voxpipe verify`` then checks like a directory.
    """
