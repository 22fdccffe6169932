"""NICE CXone emulator: a real HTTP server on loopback for rehearsals and tests.

Implements the server side of the CXone contract the voxpipe CXone source
uses — OAuth token (client credentials and access-key password grant),
recording metadata, ranged download with ETag/If-Range/416, the Media Playback
API with signed temporary URLs, and the chunked streaming endpoint — over
the audio files of one directory, with seeded or scripted fault injection
(429, 5xx, dropped connections, ignored ranges, JSON error bodies, ETag
changes), tampering, HMAC signing and served-byte counters.

Typical use in a test::

    emulator = CxoneEmulator(EmulatorSettings(recordings=tmp_path))
    with run_in_thread(emulator) as base_url:
        ...  # token at f"{base_url}/oauth/token"
    emulator.close()
"""

from .app import CxoneEmulator
from .faults import FaultAction, FaultConfig, FaultKind, FaultPlan, RequestKind
from .ratelimit import RateLimit
from .server import run_in_thread, serve_emulator
from .settings import EmulatorSettings
from .store import Recording, RecordingStore, RecordingStoreError

__all__ = [
    "CxoneEmulator",
    "EmulatorSettings",
    "FaultAction",
    "FaultConfig",
    "FaultKind",
    "FaultPlan",
    "RateLimit",
    "Recording",
    "RecordingStore",
    "RecordingStoreError",
    "RequestKind",
    "run_in_thread",
    "serve_emulator",
]
