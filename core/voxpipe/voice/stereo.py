"""Joining two mono timelines into one interleaved stereo stream (sans-IO).

Stereo call recordings put the customer on the left channel and the agent on the
right (Amazon Connect's and Genesys AudioHook's convention: ``external`` left,
``internal`` right). Platforms that send the two sides separately — Twilio
``both_tracks`` (one ``media`` stream per track, each with its own ``chunk``
counter), CXone Agent Assist (one WebSocket per ``streamPerspective``) — deliver
each side at its own pace; :class:`ChannelJoiner` lines them up by position
(samples since the call started) and emits ``L R L R ...`` only for the stretch
both sides have covered.

* A position beyond a channel's end (a hold, a reconnect, a track that starts later)
  is filled with silence: counted in ``gap_samples``.
* A position before a channel's end (overlap) drops the repeated samples: counted in
  ``overlap_samples``.
* A channel that falls more than ``max_skew`` samples behind the other (a track that
  stopped sending) is filled with silence so the other side is not held back without
  bound: counted in ``fill_samples``; audio for that stretch arriving later overlaps
  and is dropped. The buffered audio is therefore bounded by ``max_skew`` samples plus
  one push per channel.
* :meth:`finish` pads the shorter channel to the longer (counted in ``fill_samples``).

Samples are ``width`` bytes (1: G.711, so the μ-law of both sides is interleaved
before one decode; 2: PCM16 LE); ``silence`` is one sample of silence in that codec
(``b"\\xff"`` μ-law, ``b"\\x00\\x00"`` PCM16). Requirement: issue 16, items 2–4.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from types import ModuleType

from voxpipe import dsp

#: Channel indexes: customer left, agent right.
LEFT, RIGHT = 0, 1
#: Largest skew accepted (samples): 60 s at 8 kHz.
MAX_SKEW_SAMPLES = 480_000


@dataclass(frozen=True, slots=True)
class ChannelCounters:
    """What the joiner did to one channel (samples)."""

    samples: int
    gap_samples: int
    fill_samples: int
    overlap_samples: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class ChannelJoiner:
    """Interleaves two channels pushed at their own pace, aligned by position.

    ``push(channel, data, position=None)``: append ``data`` (whole samples) to
    ``channel`` (0 left, 1 right); ``position`` (samples since the call started) says
    where ``data`` begins, ``None`` continues where the channel ended.
    ``take() -> bytes``: the interleaved samples both channels now cover (maybe
    ``b""``). ``finish() -> bytes``: the rest, the shorter side padded with silence.

    :raises ValueError: a partial sample, a negative position, a bad channel or width.
    """

    __slots__ = ("width", "silence", "max_skew", "backend", "emitted", "min_take", "_pending", "_samples", "_gap",
                 "_fill", "_overlap")

    def __init__(self, width: int, silence: bytes, max_skew: int, *, backend: str | ModuleType | None = None,
                 min_take: int = 0):
        if width not in (1, 2) or len(silence) != width:
            raise ValueError(f"width={width!r} must be 1 or 2 and silence one sample of it")
        if isinstance(max_skew, bool) or not isinstance(max_skew, int) or not 0 <= max_skew <= MAX_SKEW_SAMPLES:
            raise ValueError(f"max_skew={max_skew!r} samples must be in [0, {MAX_SKEW_SAMPLES}]")
        self.width = width
        self.silence = silence
        self.max_skew = max_skew
        self.backend = backend
        #: ``take`` waits until both sides cover this many samples (one interleave call per
        #: batch instead of per 20 ms message; :meth:`finish` returns the rest)
        self.min_take = min_take
        #: samples per channel already returned by take/finish
        self.emitted = 0
        self._pending = (bytearray(), bytearray())
        self._samples = [0, 0]
        self._gap = [0, 0]
        self._fill = [0, 0]
        self._overlap = [0, 0]

    def pushed(self, channel: int) -> int:
        """Samples pushed to ``channel`` so far (without silence the joiner added)."""
        return self._samples[channel]

    def end(self, channel: int) -> int:
        """Position (samples) just after the last sample pushed to ``channel``."""
        return self.emitted + len(self._pending[channel]) // self.width

    def push(self, channel: int, data, position: int | None = None) -> None:
        if channel not in (LEFT, RIGHT):
            raise ValueError(f"channel={channel!r} must be 0 (left) or 1 (right)")
        n = memoryview(data).nbytes
        if n % self.width:
            raise ValueError(f"{n} bytes is not a whole number of {self.width}-byte samples")
        pending = self._pending[channel]
        if position is not None:
            if position < 0:
                raise ValueError(f"position {position} samples is negative")
            end = self.end(channel)
            if position > end:
                pending += self.silence * (position - end)
                self._gap[channel] += position - end
            elif position < end:
                drop = min(end - position, n // self.width)
                self._overlap[channel] += drop
                data = memoryview(data)[drop * self.width:]
                n -= drop * self.width
        pending += data
        self._samples[channel] += n // self.width

    def _fill_to(self, channel: int, samples: int) -> None:
        pending = self._pending[channel]
        have = len(pending) // self.width
        if samples > have:
            pending += self.silence * (samples - have)
            self._fill[channel] += samples - have

    def take(self) -> bytes:
        left, right = self._pending
        n_l, n_r = len(left) // self.width, len(right) // self.width
        if n_l < self.min_take or n_r < self.min_take:
            if abs(n_l - n_r) <= self.max_skew:
                return b""
        if n_l - n_r > self.max_skew:
            self._fill_to(RIGHT, n_l - self.max_skew)
        elif n_r - n_l > self.max_skew:
            self._fill_to(LEFT, n_r - self.max_skew)
        return self._emit(min(len(left), len(right)) // self.width)

    def finish(self) -> bytes:
        left, right = self._pending
        n = max(len(left), len(right)) // self.width
        self._fill_to(LEFT, n)
        self._fill_to(RIGHT, n)
        return self._emit(n)

    def _emit(self, n: int) -> bytes:
        if n == 0:
            return b""
        left, right = self._pending
        k = n * self.width
        out = dsp.interleave(left[:k], right[:k], width=self.width, backend=self.backend)
        del left[:k]
        del right[:k]
        self.emitted += n
        return out

    def counters(self, channel: int) -> ChannelCounters:
        return ChannelCounters(self._samples[channel], self._gap[channel], self._fill[channel],
                               self._overlap[channel])
