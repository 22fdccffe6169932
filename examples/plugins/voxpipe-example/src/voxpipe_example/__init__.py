"""voxpipe-example: three components registered by one plugin module.

- ``min-size`` (verifier): rejects recordings smaller than a size;
- ``dated`` (sink): stores each recording under ``ROOT/YYYY-MM-DD/``;
- ``jsonl-log`` (announcing sink): appends one JSON line per recording's outcome.
"""

from voxpipe import hookimpl

from .dated import DatedSink
from .jsonl_log import JsonlLogSink
from .min_size import MinSizeVerifier


@hookimpl
def register_verifiers(register):
    register(MinSizeVerifier)


@hookimpl
def register_sinks(register):
    register(DatedSink)
    register(JsonlLogSink)
