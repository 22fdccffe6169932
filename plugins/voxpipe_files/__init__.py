"""First-party plugin: the ``file`` and ``gzip`` sinks."""

from voxpipe import hookimpl

from .sinks import FileSink, GzipSink


@hookimpl
def register_sinks(register):
    register(FileSink)
    register(GzipSink)
