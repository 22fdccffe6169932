"""The emulator's recordings: audio files in a directory, turned into conversations.

Each file is one recording. Files named ``<call>__<leg>.<ext>`` share the conversation
``<call>`` (a conversation with several recordings); any other file is a conversation of
its own. Ids are UUIDs derived from the names (:func:`uuid.uuid5`), so they are the same
on every run; conversation starts are spread over days (one conversation every
``spacing`` hours from ``start``), so interval queries select subsets.

:class:`SyntheticCatalogue` is the other kind: any number of conversations (one
recording each) computed from their index on demand, so an interval holding more than
the analytics query's 100,000-result paging limit costs no memory or disk.

Both answer :meth:`query` as the analytics details query does: the conversations that
overlap the interval and started on a day it touches (so a query also returns
conversations that began shortly before the interval and were still going on).
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import struct
import uuid
import wave
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

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
    """One recording: ids, the file's bytes and what the API says about them.

    ``payload`` is the bytes, or a function producing them on first use (generated
    catalogues list many recordings whose audio is never asked for).
    """

    recording_id: str
    conversation_id: str
    name: str  # file name, for fault switches and messages
    content_type: str
    payload: bytes | Callable[[], bytes] = field(repr=False, compare=False)
    duration_ms: int = 0

    @functools.cached_property
    def data(self) -> bytes:
        return self.payload if isinstance(self.payload, bytes) else self.payload()

    @functools.cached_property
    def sha256(self) -> str:
        """Hex SHA-256 of ``data`` (the ETag of every media answer derives from it)."""
        return hashlib.sha256(self.data).hexdigest()

    @property
    def etag(self) -> str:
        return '"' + self.sha256[:32] + '"'


@dataclass(frozen=True)
class Conversation:
    """A conversation and what the analytics API tells about it (participants, queue)."""

    conversation_id: str
    key: str
    start: datetime
    end: datetime
    recordings: tuple[Recording, ...]
    direction: str = "inbound"  # originatingDirection
    ani: str = "tel:+15550100000"  # the customer's number
    dnis: str = "tel:+18005550100"  # the number called
    queue_id: str = ""
    queue_name: str = "Support"
    agent_id: str = ""
    agent_name: str = "Agent"

    @property
    def start_ms(self) -> int:
        return to_ms(self.start)

    @property
    def end_ms(self) -> int:
        return to_ms(self.end)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def to_ms(moment: datetime) -> int:
    """Whole milliseconds since the epoch (rounded down)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _day_floor_ms(ms: int) -> int:
    return ms - ms % 86_400_000


def matches(conv: Conversation, start_ms: int, end_ms: int) -> bool:
    """Whether the analytics query for ``[start_ms, end_ms)`` returns ``conv``: it overlaps the
    interval and started on a day the interval touches (the SDK's ``interval`` documentation)."""
    return conv.start_ms < end_ms and conv.end_ms > start_ms and conv.start_ms >= _day_floor_ms(start_ms)


def facts_for(key: str, index: int) -> dict[str, str]:
    """Deterministic participants of conversation ``key``: direction, numbers, queue and agent."""
    agent = index % 7
    return {"direction": "outbound" if index % 4 == 3 else "inbound",
            "ani": f"tel:+1555{(1000003 * (index + 1)) % 10_000_000:07d}", "dnis": "tel:+18005550100",
            "queue_id": derived_id("queue", str(index % 3)), "queue_name": ("Sales", "Support", "Billing")[index % 3],
            "agent_id": derived_id("user", str(agent)), "agent_name": f"Agent {agent + 1}"}


class CatalogueLike(Protocol):
    """What the emulator needs of a catalogue."""

    def conversation(self, conversation_id: str) -> Conversation | None: ...
    def recording(self, recording_id: str) -> Recording | None: ...
    def find(self, key: str) -> Recording | None: ...
    def query(self, start_ms: int, end_ms: int) -> Sequence[Conversation]: ...
    def count(self) -> tuple[int, int]: ...
    def span(self) -> tuple[datetime, datetime]: ...


@dataclass
class Catalogue:
    """Conversations in start order, and lookups by id."""

    conversations: list[Conversation]
    by_conversation: dict[str, Conversation] = field(init=False)
    by_recording: dict[str, Recording] = field(init=False)

    def __post_init__(self) -> None:
        self.by_conversation = {c.conversation_id: c for c in self.conversations}
        self.by_recording = {r.recording_id: r for c in self.conversations for r in c.recordings}

    def conversation(self, conversation_id: str) -> Conversation | None:
        return self.by_conversation.get(conversation_id)

    def recording(self, recording_id: str) -> Recording | None:
        return self.by_recording.get(recording_id)

    def find(self, key: str) -> Recording | None:
        """A recording by id or file name (fault switches accept both)."""
        if key in self.by_recording:
            return self.by_recording[key]
        return next((r for r in self.by_recording.values() if r.name == key or Path(r.name).stem == key), None)

    def query(self, start_ms: int, end_ms: int) -> list[Conversation]:
        """The analytics query's conversations for ``[start_ms, end_ms)``, by start (:func:`matches`)."""
        return [c for c in self.conversations if matches(c, start_ms, end_ms)]

    def count(self) -> tuple[int, int]:
        """(conversations, recordings)."""
        return len(self.conversations), len(self.by_recording)

    def span(self) -> tuple[datetime, datetime]:
        """First conversation start, last conversation end."""
        return self.conversations[0].start, max(c.end for c in self.conversations)


#: Id prefixes of generated conversations and recordings (UUID form; the last group is the index).
SYNTHETIC_CONVERSATION = "5ca1ab1e-0000-4000-8000-"
SYNTHETIC_RECORDING = "5ca1ab1e-0001-4000-8000-"
#: Longest generated conversation (ms): 30 s plus up to 10 × 20 s.
SYNTHETIC_MAX_DURATION_MS = 230_000
#: Most conversations a synthetic catalogue may hold (ids have 12 hex digits).
MAX_SYNTHETIC = 10_000_000
#: Seconds of audio in each generated recording (8 kHz 16-bit mono WAV: 4,044 bytes).
SYNTHETIC_SECONDS = 0.25


class SyntheticCatalogue:
    """``count`` conversations spread evenly over ``span`` from ``start``, computed on demand.

    Conversation ``i`` starts at ``start + floor(i × span / count)`` (whole ms), lasts
    30–230 s and has one recording: a short WAV tone whose bytes derive from ``i``. Nothing
    is stored: lookups parse the index out of the id, and :meth:`query` answers an index
    range, so 150,000 conversations in one day cost a few objects per request.
    """

    def __init__(self, count: int, *, start: datetime = DEFAULT_START, span: timedelta = timedelta(days=1)):
        if not 1 <= count <= MAX_SYNTHETIC:
            raise ValueError(f"a synthetic catalogue holds 1..{MAX_SYNTHETIC} conversations, got {count}")
        self.n = count
        self.start_ms = to_ms(start)
        self.span_ms = max(1, int(span.total_seconds() * 1000))

    def _start_of(self, i: int) -> int:
        return self.start_ms + i * self.span_ms // self.n

    def _first_at_or_after(self, ms: int) -> int:
        """The smallest index whose start is at or after ``ms`` (``n`` if none)."""
        d = ms - self.start_ms
        if d <= 0:
            return 0
        return min(self.n, -(-d * self.n // self.span_ms))

    @staticmethod
    def duration_ms(i: int) -> int:
        return 30_000 + (i % 11) * 20_000

    def _index(self, text: str, prefix: str) -> int | None:
        if not text.startswith(prefix) or len(text) != len(prefix) + 12:
            return None
        try:
            i = int(text[len(prefix):], 16)
        except ValueError:
            return None
        return i if 0 <= i < self.n else None

    def conversation_at(self, i: int) -> Conversation:
        begin = self._start_of(i)
        start = datetime.fromtimestamp(begin / 1000, timezone.utc)
        end = datetime.fromtimestamp((begin + self.duration_ms(i)) / 1000, timezone.utc)
        cid = f"{SYNTHETIC_CONVERSATION}{i:012x}"
        rec = _synthetic_recording(i)
        return Conversation(cid, f"synthetic-{i}", start, end, (rec,), **facts_for(f"synthetic-{i}", i))

    def conversation(self, conversation_id: str) -> Conversation | None:
        i = self._index(conversation_id, SYNTHETIC_CONVERSATION)
        return None if i is None else self.conversation_at(i)

    def recording(self, recording_id: str) -> Recording | None:
        i = self._index(recording_id, SYNTHETIC_RECORDING)
        return None if i is None else _synthetic_recording(i)

    def find(self, key: str) -> Recording | None:
        rec = self.recording(key)
        if rec is None and key.startswith("synthetic-") and key[10:].isdigit() and int(key[10:]) < self.n:
            rec = self.recording(f"{SYNTHETIC_RECORDING}{int(key[10:]):012x}")
        return rec

    def query(self, start_ms: int, end_ms: int) -> "_Matches":
        # conversations that began before the interval (on its first day) and overlap it,
        # then every conversation starting inside it: an index range
        lo = self._first_at_or_after(max(_day_floor_ms(start_ms), start_ms - SYNTHETIC_MAX_DURATION_MS))
        first = self._first_at_or_after(start_ms)
        early = [i for i in range(lo, first) if self._start_of(i) + self.duration_ms(i) > start_ms]
        return _Matches(self, early, first, max(first, self._first_at_or_after(end_ms)))

    def count(self) -> tuple[int, int]:
        return self.n, self.n

    def span(self) -> tuple[datetime, datetime]:
        last = self.n - 1
        return (datetime.fromtimestamp(self.start_ms / 1000, timezone.utc),
                datetime.fromtimestamp((self._start_of(last) + self.duration_ms(last)) / 1000, timezone.utc))

    def ids(self) -> Iterator[str]:
        """Every conversation id, in start order (for tests)."""
        return (f"{SYNTHETIC_CONVERSATION}{i:012x}" for i in range(self.n))


class _Matches(Sequence[Conversation]):
    """A query's answer as a lazy sequence: a few early indices, then a contiguous range."""

    def __init__(self, catalogue: SyntheticCatalogue, early: list[int], first: int, stop: int):
        self.catalogue, self.early, self.first, self.stop = catalogue, early, first, stop

    def __len__(self) -> int:
        return len(self.early) + self.stop - self.first

    def __getitem__(self, item):  # type: ignore[override]
        if isinstance(item, slice):
            return [self[j] for j in range(*item.indices(len(self)))]
        if item < 0:
            item += len(self)
        if not 0 <= item < len(self):
            raise IndexError(item)
        k = len(self.early)
        return self.catalogue.conversation_at(self.early[item] if item < k else self.first + item - k)


def _synthetic_recording(i: int) -> Recording:
    return Recording(f"{SYNTHETIC_RECORDING}{i:012x}", f"{SYNTHETIC_CONVERSATION}{i:012x}", f"synthetic-{i}.wav",
                     "audio/wav", functools.partial(synthetic_audio, i), int(SYNTHETIC_SECONDS * 1000))


@functools.lru_cache(maxsize=64)
def synthetic_audio(i: int) -> bytes:
    """The WAV bytes of generated recording ``i``: a tone whose pitch and offset derive from ``i``."""
    rate = 8000
    freq = 300 + (i % 50) * 10
    frames = b"".join(struct.pack("<h", int(6000 * math.sin(2 * math.pi * freq * n / rate) + (i % 97)))
                      for n in range(int(SYNTHETIC_SECONDS * rate)))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return buffer.getvalue()


@functools.lru_cache(maxsize=1024)
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
                                          tuple(recordings), **facts_for(key, i)))
    return Catalogue(conversations)


def _duration_ms(path: Path, data: bytes) -> int:
    """Duration of a WAV file from its header (0 when unknown; only used for conversationEnd)."""
    if path.suffix.lower() != ".wav":
        return 0
    try:
        with wave.open(io.BytesIO(data)) as w:
            return int(w.getnframes() * 1000 / max(1, w.getframerate()))
    except (wave.Error, EOFError):
        return 0
