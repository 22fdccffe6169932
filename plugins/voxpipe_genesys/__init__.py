"""First-party plugin: Genesys Cloud (the ``genesys`` source and ``voxpipe emulate genesys``)."""

from voxpipe import hookimpl

from .source import GenesysSource


@hookimpl
def register_sources(register):
    register(GenesysSource)


@hookimpl
def register_commands(cli):
    from .emulator.cli import command

    cli.emulate.add_command(command)
