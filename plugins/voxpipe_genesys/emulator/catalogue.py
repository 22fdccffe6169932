"""The emulator's recordings: audio files in a directory, turned into conversations.

Each file is one recording. Files named ``<call>__<leg>.<ext>`` share the conversation
``<call>`` (a conversation with several recordings); any other file is a conversation of
its own. Ids are UUIDs derived from the names (:func:`uuid.uuid5`), so they are the same
on every run; conversation starts are spread over days (one conversation every
``spacing`` hours from ``start``), so interval queries select subsets.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

#: Namespace of the emulator's name-derived UUIDs.
NAMESPACE = uuid.UUID("6f1c4d0e-2b7a-4e55-9a0c-7c1d2e3f4a5b")
#: Audio file extensions served, with the content type the batch result declares.
CONTENT_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".opus": "audio/ogg; codecs=opus",
                 ".webm": "audio/webm"}
#: Most bytes of audio the emulator holds in memory.
MAX_CATALOGUE_BYTES = 2 << 30
#: Default first conversation start and spacing between conversation starts.
DEFAULT_START = datetime(2026, 11, 1, 8, 0, tzinfo=timezone.utc)
DEFAULT_SPACING = timedelta(hours=13)


@dataclass(frozen=True)
class Recording:
    """One recording: ids, the file's bytes and what the API says about them."""

    recording_id: str
    conversation_id: str
    name: str  # file name, for fault switches and messages
    content_type: str
    data: bytes = field(repr=False)
    duration_ms: int = 0
    #: hex SHA-256 of ``data``, computed once (the ETag of every media answer derives from it)
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha256", hashlib.sha256(self.data).hexdigest())

    @property
    def etag(self) -> str:
        return '"' + self.sha256[:32] + '"'


@dataclass(frozen=True)
class Conversation:
    conversation_id: str
    key: str
    start: datetime
    end: datetime
    recordings: tuple[Recording, ...]


@dataclass
class Catalogue:
    """Conversations in start order, and lookups by id."""

    conversations: list[Conversation]
    by_conversation: dict[str, Conversation] = field(init=False)
    by_recording: dict[str, Recording] = field(init=False)

    def __post_init__(self) -> None:
        self.by_conversation = {c.conversation_id: c for c in self.conversations}
        self.by_recording = {r.recording_id: r for c in self.conversations for r in c.recordings}

    def find(self, key: str) -> Recording | None:
        """A recording by id or file name (fault switches accept both)."""
        if key in self.by_recording:
            return self.by_recording[key]
        return next((r for r in self.by_recording.values() if r.name == key or Path(r.name).stem == key), None)


def derived_id(kind: str, name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{name}"))


def load_catalogue(directory: str | Path, *, start: datetime = DEFAULT_START,
                   spacing: timedelta = DEFAULT_SPACING) -> Catalogue:
    """Read every audio file of ``directory`` (not recursive).

    :raises ValueError: no audio files, or more than :data:`MAX_CATALOGUE_BYTES` bytes.
    """
    directory = Path(directory)
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in CONTENT_TYPES)
    if not files:
        raise ValueError(f"{directory}: no audio files ({', '.join(CONTENT_TYPES)})")
    groups: dict[str, list[Path]] = {}
    for path in files:
        groups.setdefault(path.stem.split("__", 1)[0], []).append(path)
    total = 0
    conversations = []
    for i, (key, paths) in enumerate(groups.items()):
        cid = derived_id("conversation", key)
        recordings = []
        for path in paths:
            data = path.read_bytes()
            total += len(data)
            if total > MAX_CATALOGUE_BYTES:
                raise ValueError(f"{directory}: more than {MAX_CATALOGUE_BYTES} bytes of audio")
            recordings.append(Recording(derived_id("recording", path.name), cid, path.name,
                                        CONTENT_TYPES[path.suffix.lower()], data, _duration_ms(path, data)))
        begin = start + i * spacing
        longest = max((r.duration_ms for r in recordings), default=0)
        conversations.append(Conversation(cid, key, begin, begin + timedelta(milliseconds=longest or 60_000),
                                          tuple(recordings)))
    return Catalogue(conversations)


def _duration_ms(path: Path, data: bytes) -> int:
    """Duration of a WAV file from its header (0 when unknown; only used for conversationEnd)."""
    if path.suffix.lower() != ".wav":
        return 0
    import io
    import wave

    try:
        with wave.open(io.BytesIO(data)) as w:
            return int(w.getnframes() * 1000 / max(1, w.getframerate()))
    except (wave.Error, EOFError):
        return 0
