"""The ``min-size`` verifier: a recording smaller than ``min_bytes`` is rejected."""

from voxpipe.components import Verifier, VerifierRun
from voxpipe.model import Verdict
from voxpipe.settings import ByteSize, Settings, setting


class MinSizeSettings(Settings):
    min_bytes: ByteSize = setting(1024, description="Smallest acceptable recording in bytes (an empty or cut-off "
                                  "export is smaller).", example="4KiB", ge=0)


class MinSizeVerifier(Verifier):
    """Reject recordings smaller than `min_bytes`."""

    type = "min-size"
    Settings = MinSizeSettings

    def begin(self, stream):
        return MinSizeRun(stream.id, self.settings.min_bytes)


class MinSizeRun(VerifierRun):
    # one per stream, called by one task at a time: plain attributes, no locks
    def __init__(self, recording_id, min_bytes):
        self.recording_id, self.min_bytes, self.seen = recording_id, min_bytes, 0

    def update(self, chunk):  # may run in a worker thread for large chunks: no event-loop calls here
        self.seen += len(chunk.data)

    def finish(self):
        if self.seen < self.min_bytes:
            return Verdict("min-size", False, "too-small",
                           f"recording {self.recording_id}: {self.seen} bytes, at least {self.min_bytes} expected")
        return Verdict("min-size", True, details={"bytes": self.seen})
