"""Errors shared by the engine and its components.

Stream-level errors end one stream, never the run: the engine catches them, aborts the
stream's sinks and records the reason. ``reason`` is a short stable code for reports and
metrics; the message is for people and names what was wrong and where (recording id,
byte offset). No error message ever carries a secret.
"""

from __future__ import annotations


class VoxpipeError(Exception):
    """Base class of every error voxpipe raises on purpose."""


class ConfigError(VoxpipeError):
    """One or more configuration problems; ``problems`` lists them as ``file:line: path: message``."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class PluginError(VoxpipeError):
    """A plugin could not be loaded or registered a conflicting component."""


class RunError(VoxpipeError):
    """A pipeline could not run at all (a component failed to start)."""


class RunBusy(RunError):
    """Another run of the same pipeline is running on this machine (``voxpipe run`` exits 3)."""

    exit_code = 3


class StorageError(RunError):
    """Storage failed before the run could start: disk full, quota, file-size limit, I/O
    error, permissions (``voxpipe run`` exits 4). The message names the path and what to do."""

    exit_code = 4


class StateFileError(RunError):
    """A state file (ledger, webhook outbox) is corrupt, truncated, or not voxpipe's
    (``voxpipe run`` exits 5). The message names the file and what to do."""

    exit_code = 5


class StreamError(VoxpipeError):
    """A stream cannot complete.

    :param message: human-readable, names the recording id and byte offset when known.
    :param reason: short stable code, e.g. ``"http-429-exhausted"`` or ``"sha256-mismatch"``.
    :param retryable: whether a fresh attempt of the whole stream may succeed.
    """

    reason = "stream-error"
    retryable = False

    def __init__(self, message: str, *, reason: str | None = None, retryable: bool | None = None):
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        if retryable is not None:
            self.retryable = retryable


class StreamRejected(StreamError):
    """The source declined the stream before transferring it (e.g. metadata gate)."""

    reason = "rejected"


class StreamRestart(StreamError):
    """The stream must start again from byte 0 (e.g. the server's ETag changed mid-download)."""

    reason = "restart"
    retryable = True


class VerificationError(StreamError):
    """A verifier judged the stream bad; raised early from ``update`` or reported at the end."""

    reason = "verification-failed"


class SinkError(StreamError):
    """A sink could not store or announce the stream."""

    reason = "sink-error"
