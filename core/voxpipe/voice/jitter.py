"""Jitter buffer and per-call quality statistics (sans-IO, no clock of its own).

* :class:`JitterEstimator`: RFC 3550 §6.4.1 interarrival jitter,
  ``J += (|D(i-1, i)| - J) / 16``, with media timestamps in sample units and
  arrival times in seconds, reported in milliseconds.
* :class:`CallQuality`: packets, bytes, frames late / concealed / dropped,
  duplicates, jitter and effective bitrate for one call; ``snapshot()``
  gives a frozen :class:`QualitySnapshot` with ``to_dict()``.
* :class:`JitterBuffer`: reorders packets by sequence number within a
  configurable depth (e.g. 40 ms = 2 frames of 20 ms) and conceals frames
  still missing when their turn comes with silence, counting them.

Requirement: issue "Live call audio over WebSocket", item 5.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass

#: Deepest jitter buffer accepted (frames): 1 s at 20 ms.
MAX_DEPTH_FRAMES = 50
#: A forward jump in sequence numbers longer than this (frames) is treated
#: as a stream restart: the buffer is drained and playout resynchronises at
#: the new number instead of emitting seconds of concealment silence.
MAX_GAP_FRAMES = 250
#: How many recently concealed sequence numbers are remembered, so that a
#: packet arriving after its slot was concealed is counted as late rather
#: than as a duplicate.
LATE_WINDOW_FRAMES = 500
#: RFC 3550 §6.4.1 gain of the jitter estimator (1/16).
JITTER_GAIN_DIVISOR = 16


class JitterEstimator:
    """RFC 3550 §6.4.1 interarrival jitter for one stream.

    ``update(timestamp, arrival)``: ``timestamp`` is the packet's media
    timestamp in samples (RTP timestamp units, or Twilio's ms times
    ``clock_rate / 1000``), ``arrival`` the local receive time in seconds
    (any monotonic clock).  Packets are fed in arrival order.  With
    ``R = arrival * clock_rate``, ``D = (R_i - R_j) - (S_i - S_j)`` and
    ``J += (|D| - J) / 16``.  :attr:`jitter` is in samples,
    :attr:`jitter_ms` in milliseconds.
    """

    __slots__ = ("clock_rate", "jitter", "_prev")

    def __init__(self, clock_rate: int):
        if clock_rate <= 0:
            raise ValueError(f"clock_rate={clock_rate!r} Hz must be positive")
        self.clock_rate = clock_rate
        self.jitter = 0.0
        self._prev: tuple[float, float] | None = None

    def update(self, timestamp: float, arrival: float) -> float:
        """Feed one packet; returns the current jitter in ms."""
        r = arrival * self.clock_rate
        if self._prev is not None:
            prev_r, prev_s = self._prev
            d = (r - prev_r) - (timestamp - prev_s)
            self.jitter += (abs(d) - self.jitter) / JITTER_GAIN_DIVISOR
        self._prev = (r, timestamp)
        return self.jitter_ms

    @property
    def jitter_ms(self) -> float:
        return self.jitter * 1000.0 / self.clock_rate


@dataclass(frozen=True, slots=True)
class QualitySnapshot:
    """Call quality at one moment (all counts since the call started).

    ``frames_dropped`` = concealed frames whose packet never arrived
    (``frames_concealed - frames_late``), the RFC 3550 "cumulative number of
    packets lost" seen at playout.  ``bitrate_bps`` is payload bits per
    second over the arrival span (0.0 until two timed packets).
    """

    packets: int
    bytes: int
    frames_late: int
    frames_concealed: int
    frames_dropped: int
    duplicates: int
    resyncs: int
    jitter_ms: float
    bitrate_bps: float

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


class CallQuality:
    """Mutable per-call counters; :class:`JitterBuffer` updates them.

    ``record_packet(nbytes, timestamp=None, arrival=None)`` counts one
    received packet of ``nbytes`` payload bytes; with both ``timestamp``
    (samples) and ``arrival`` (seconds) it also feeds the jitter estimator
    and the bitrate.
    """

    __slots__ = ("packets", "bytes", "frames_late", "frames_concealed", "duplicates",
                 "resyncs", "estimator", "_first_arrival", "_last_arrival", "_timed_bytes")

    def __init__(self, sample_rate: int = 8000):
        self.packets = 0
        self.bytes = 0
        self.frames_late = 0
        self.frames_concealed = 0
        self.duplicates = 0
        self.resyncs = 0
        self.estimator = JitterEstimator(sample_rate)
        self._first_arrival: float | None = None
        self._last_arrival: float | None = None
        self._timed_bytes = 0  # payload bytes that arrived after the first timed packet

    def record_packet(self, nbytes: int, timestamp: float | None = None,
                      arrival: float | None = None) -> None:
        self.packets += 1
        self.bytes += nbytes
        if arrival is None:
            return
        if not math.isfinite(arrival):
            raise ValueError(f"arrival={arrival!r} s is not a finite time")
        if self._first_arrival is None:
            self._first_arrival = arrival
        else:
            self._timed_bytes += nbytes
        self._last_arrival = arrival
        if timestamp is not None:
            self.estimator.update(timestamp, arrival)

    @property
    def jitter_ms(self) -> float:
        return self.estimator.jitter_ms

    @property
    def bitrate_bps(self) -> float:
        """Payload bits received after the first packet / seconds since it arrived."""
        if self._first_arrival is None or self._last_arrival is None:
            return 0.0
        span = self._last_arrival - self._first_arrival
        return self._timed_bytes * 8 / span if span > 0 else 0.0

    def snapshot(self) -> QualitySnapshot:
        return QualitySnapshot(
            packets=self.packets,
            bytes=self.bytes,
            frames_late=self.frames_late,
            frames_concealed=self.frames_concealed,
            frames_dropped=self.frames_concealed - self.frames_late,
            duplicates=self.duplicates,
            resyncs=self.resyncs,
            jitter_ms=self.jitter_ms,
            bitrate_bps=self.bitrate_bps,
        )


class JitterBuffer:
    """Reorders frames by sequence number and conceals gaps with silence.

    Playout is driven by arrivals, not by a clock: frame ``n`` is released
    once a packet with sequence number ``>= n + depth_frames`` has arrived
    (or at :meth:`flush`), so packets up to ``depth_frames`` places out of
    order are put back in order, at a latency of ``depth_ms``.  A frame
    still missing when released is replaced by ``silence`` (counted in
    ``quality.frames_concealed``).  A packet for a frame already released
    is discarded: counted as late if that frame was concealed, else as a
    duplicate; so is a second copy of a buffered frame.  A forward jump of
    more than ``max_gap_frames`` drains the buffer and resynchronises.

    ``push(seq, payload, *, timestamp=None, arrival=None) -> list[bytes]``
    returns the frames released, in order (``payload`` is copied).
    ``seq`` is an integer >= 0; with ``seq_bits=16`` (RTP) it wraps and is
    extended internally.  ``timestamp`` (samples) and ``arrival`` (s) feed
    the RFC 3550 jitter in :attr:`quality`.

    Depth: ``depth_ms`` must be a multiple of ``frame_ms``, at most
    ``MAX_DEPTH_FRAMES`` frames.

    Start of a stream: until the first frame is released, a packet numbered
    below the lowest seen so far moves the start back (the first two packets
    swapped are reordered, not dropped), within ``depth_frames``. With
    ``first_seq`` (Twilio's ``chunk`` counts from 1) playout starts at that
    number whatever arrives first, so a lost first packet is concealed and
    counted like any other.
    """

    def __init__(
        self,
        silence: bytes,
        depth_ms: int = 40,
        frame_ms: int = 20,
        *,
        quality: CallQuality | None = None,
        seq_bits: int | None = None,
        max_gap_frames: int = MAX_GAP_FRAMES,
        first_seq: int | None = None,
    ):
        if frame_ms <= 0 or depth_ms < 0 or depth_ms % frame_ms:
            raise ValueError(
                f"depth_ms={depth_ms!r} must be a non-negative multiple of frame_ms={frame_ms!r}"
            )
        self.depth_frames = depth_ms // frame_ms
        if self.depth_frames > MAX_DEPTH_FRAMES:
            raise ValueError(
                f"depth_ms={depth_ms} is {self.depth_frames} frames; at most "
                f"{MAX_DEPTH_FRAMES} frames are allowed"
            )
        if seq_bits is not None and not 8 <= seq_bits <= 64:
            raise ValueError(f"seq_bits={seq_bits!r} must be None or in [8, 64]")
        if max_gap_frames < self.depth_frames:
            raise ValueError(f"max_gap_frames={max_gap_frames} is less than the depth")
        self.silence = bytes(silence)
        self.frame_ms = frame_ms
        self.quality = quality if quality is not None else CallQuality()
        self.max_gap_frames = max_gap_frames
        self._modulus = None if seq_bits is None else 1 << seq_bits
        self._frames: dict[int, bytes] = {}
        if first_seq is not None and (isinstance(first_seq, bool) or not isinstance(first_seq, int) or first_seq < 0):
            raise ValueError(f"first_seq={first_seq!r} must be None or an integer >= 0")
        self.first_seq = first_seq
        self._next: int | None = None  # next (extended) sequence number to release
        self._highest: int | None = None
        self._released = False  # whether any frame left the buffer (the start is fixed from then on)
        self._concealed: deque[int] = deque(maxlen=LATE_WINDOW_FRAMES)

    @property
    def buffered(self) -> int:
        """Frames held waiting for their turn (<= depth_frames)."""
        return len(self._frames)

    @property
    def next_seq(self) -> int | None:
        """Extended sequence number of the next frame to release (None before the first)."""
        return self._next

    def _extend(self, seq: int) -> int:
        mod = self._modulus
        if mod is None or self._highest is None:
            return seq
        cand = self._highest - self._highest % mod + seq
        if cand - self._highest > mod // 2:
            cand -= mod
        elif self._highest - cand > mod // 2:
            cand += mod
        return cand

    def push(self, seq: int, payload, *, timestamp: float | None = None,
             arrival: float | None = None) -> list[bytes]:
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0 or (
            self._modulus is not None and seq >= self._modulus
        ):
            raise ValueError(f"sequence number {seq!r} is not a valid integer in range")
        payload = bytes(payload)
        q = self.quality
        q.record_packet(len(payload), timestamp, arrival)
        seq = self._extend(seq)
        out: list[bytes] = []
        if self._next is None:
            first = self.first_seq
            # a first packet far beyond first_seq is a stream joined late: no seconds of concealment
            start = first if first is not None and first <= seq <= first + self.max_gap_frames else seq
            self._next, self._highest = start, seq
        elif seq < self._next and not self._released and self.first_seq is None and \
                self._highest - seq <= self.depth_frames:
            self._next = seq  # reordered at the very start: this one plays first
        elif seq < self._next:
            if seq in self._concealed:
                self._concealed.remove(seq)
                q.frames_late += 1
            else:
                q.duplicates += 1
            return out
        elif seq in self._frames:
            q.duplicates += 1
            return out
        elif seq - self._next > self.max_gap_frames:
            out = self.flush()
            q.resyncs += 1
            self._next = self._highest = seq
        self._frames[seq] = payload
        if seq > self._highest:
            self._highest = seq
        while self._highest - self._next >= self.depth_frames:
            out.append(self._release())
        return out

    def _release(self) -> bytes:
        self._released = True
        n = self._next
        self._next = n + 1
        frame = self._frames.pop(n, None)
        if frame is None:
            self.quality.frames_concealed += 1
            self._concealed.append(n)
            return self.silence
        return frame

    def flush(self) -> list[bytes]:
        """Release everything buffered, in order, concealing interior gaps (end of call)."""
        out: list[bytes] = []
        if self._next is None or not self._frames:
            return out
        last = max(self._frames)
        while self._next <= last:
            out.append(self._release())
        return out
