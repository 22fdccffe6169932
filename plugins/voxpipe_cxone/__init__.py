"""First-party plugin: NICE CXone (the ``cxone`` source and ``voxpipe emulate cxone``)."""

from voxpipe import hookimpl

from .source import CxoneSource


@hookimpl
def register_sources(register):
    register(CxoneSource)


@hookimpl
def register_commands(cli):
    from .emulator.cli import cxone

    cli.emulate.add_command(cxone)
