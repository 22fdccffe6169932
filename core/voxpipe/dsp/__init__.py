"""Voice DSP on PCM16: gain, noise gate, G.711 μ-law/A-law — one API, two backends.

All functions take bytes-like (``bytes``, ``bytearray``, ``memoryview``)
little-endian PCM16 mono and return new ``bytes``; pass ``out=`` (a writable
buffer of exactly the output length) to write in place instead, in which case
``out`` is returned.  A PCM16 input of odd length raises ``ValueError`` naming
the length.  Gain and gate accept ``out`` aliasing the input.

Backends (bit-identical by construction and by test):

* ``native``: the C core in ``native/voxpipe_dsp.c``, compiled by cffi at
  install time (``voxpipe._native_dsp``); one C call per batch of frames.
* ``python``: the pure-Python twin, used when the compiled core is missing.

Selection: environment variable ``VOXPIPE_DSP_BACKEND`` = ``auto`` (default:
native if built, else python), ``native`` (fail with
:class:`NativeBackendUnavailable` if not built) or ``python``.  Per component,
pass ``backend="python"`` / ``"native"`` to :class:`NoiseGate`, the codec
functions or :class:`voxpipe.voice.framing.FrameAssembler`.  :data:`BACKEND`
names the default in use.

All arithmetic is integer fixed point so both backends agree bit for bit:
dB values are converted to Q16/Q30 multipliers here, once, in Python.
Requirement: issue "Live call audio over WebSocket", items 3 and 4.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from types import ModuleType

from . import _python

__all__ = [
    "BACKEND",
    "ENV_VAR",
    "NativeBackendUnavailable",
    "NoiseGate",
    "GateParams",
    "alaw_decode",
    "alaw_encode",
    "available_backends",
    "backend",
    "gain",
    "gain_q16",
    "interleave",
    "mulaw_decode",
    "mulaw_encode",
]

ENV_VAR = "VOXPIPE_DSP_BACKEND"
BACKEND_CHOICES = ("auto", "native", "python")

#: Accepted gain range in dB.  +60 dB keeps every product in 64-bit range
#: with a wide margin; below -96 dB a 16-bit signal rounds to silence anyway.
MIN_GAIN_DB = -120.0
MAX_GAIN_DB = 60.0
#: Gate threshold and floor range in dBFS (0 dBFS = full-scale 32768).
MIN_LEVEL_DB = -120.0
#: Longest accepted attack, hold or release time.
MAX_GATE_TIME_MS = 10_000.0
#: Accepted sample rates (Hz).
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000
#: Most interleaved channels a gate or frame handles (stereo calls use 2).
MAX_CHANNELS = 8
#: Time constant of the gate's envelope detector (peak, exponential decay).
#: Short enough to follow syllables; the hold time bridges the gaps between
#: pitch periods so the gate does not chatter.
ENVELOPE_RELEASE_MS = 10.0

GAIN_SHIFT = _python.GAIN_SHIFT
GATE_SHIFT = _python.GATE_SHIFT
ENV_SHIFT = _python.ENV_SHIFT
UNITY_Q30 = _python.UNITY_Q30


class NativeBackendUnavailable(ImportError):
    """The native backend was requested but ``voxpipe._native_dsp`` is not built."""


def _load_native() -> ModuleType:
    try:
        from . import _native
    except ImportError as exc:
        raise NativeBackendUnavailable(
            "voxpipe native DSP core (voxpipe._native_dsp) is not available "
            f"({exc}); reinstall with a C compiler (pip install .) or use "
            f"{ENV_VAR}=python"
        ) from exc
    return _native


_backends: dict[str, ModuleType] = {"python": _python}


def backend(name: str | ModuleType | None = None) -> ModuleType:
    """Return a backend module by name: ``"native"``, ``"python"`` or ``"auto"``.

    ``None`` returns the default backend (see :data:`BACKEND`); a backend
    module is returned unchanged.  Raises :class:`NativeBackendUnavailable`
    for ``"native"`` when it is not built, ``ValueError`` for other names.
    """
    if name is None:
        return _default
    if isinstance(name, ModuleType):
        return name
    mod = _backends.get(name)
    if mod is not None:
        return mod
    if name == "native":
        mod = _backends["native"] = _load_native()
        return mod
    if name == "auto":
        try:
            return backend("native")
        except NativeBackendUnavailable:
            return _python
    raise ValueError(f"unknown DSP backend {name!r}; expected one of {BACKEND_CHOICES}")


_resolve = backend  # the public name is shadowed by ``backend=`` parameters below


def available_backends() -> tuple[str, ...]:
    """Names of the backends that can be used here, fastest first."""
    try:
        backend("native")
    except NativeBackendUnavailable:
        return ("python",)
    return ("native", "python")


def _select_default() -> ModuleType:
    choice = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if choice not in BACKEND_CHOICES:
        raise ValueError(
            f"{ENV_VAR}={choice!r} is not a DSP backend; expected one of {BACKEND_CHOICES}"
        )
    return backend(choice)


_default: ModuleType = _select_default()
#: Name of the default backend in use: ``"native"`` or ``"python"``.
BACKEND: str = _default.NAME


# ---- parameter conversion (shared by both backends, hence bit-identity) ----


def _round_pos(x: float) -> int:
    """Round a non-negative float half away from zero (not Python's banker's round)."""
    return math.floor(x + 0.5)


def _check_range(name: str, value: float, lo: float, hi: float, unit: str) -> float:
    value = float(value)
    if not lo <= value <= hi:  # also rejects NaN
        raise ValueError(f"{name}={value!r} {unit} is outside [{lo}, {hi}] {unit}")
    return value


@functools.lru_cache(maxsize=256)
def gain_q16(db: float) -> int:
    """Linear gain ``10 ** (db / 20)`` as a Q16 integer (65536 == 0 dB).

    Raises ``ValueError`` if ``db`` is outside [MIN_GAIN_DB, MAX_GAIN_DB] or NaN.
    """
    db = _check_range("gain db", db, MIN_GAIN_DB, MAX_GAIN_DB, "dB")
    return _round_pos(10.0 ** (db / 20.0) * (1 << GAIN_SHIFT))


def gain(pcm, db: float, *, out=None, backend: str | ModuleType | None = None):
    """Apply ``db`` decibels of gain to PCM16, saturating to int16.

    Each sample becomes ``round(x * q / 2**16)`` (half away from zero), clipped
    to [-32768, 32767], where ``q = gain_q16(db)``.  Input: bytes-like PCM16 LE
    mono of even length; output: ``bytes`` of the same length, or ``out``.
    Raises ``ValueError`` for an odd length, a ``db`` out of range, or an
    ``out`` of the wrong length.
    """
    impl = _default if backend is None else _resolve(backend)
    return impl.gain(pcm, gain_q16(db), out)


@dataclass(frozen=True, slots=True)
class GateParams:
    """Noise-gate parameters in the integer units the backends use."""

    threshold: int  # envelope threshold, amplitude in Q16
    env_decay: int  # per-sample envelope decay, Q30
    hold_samples: int  # samples
    attack_step: int  # Q30 gain rise per sample
    release_step: int  # Q30 gain fall per sample
    floor: int  # Q30 gain when closed
    makeup: int  # Q16 gain after the gate

    @classmethod
    def from_db_ms(
        cls,
        sample_rate: int,
        threshold_db: float,
        attack_ms: float,
        hold_ms: float,
        release_ms: float,
        floor_db: float,
        makeup_db: float,
    ) -> "GateParams":
        """Convert user units (Hz, dBFS, ms, dB) to integers; ``ValueError`` names a bad one."""
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int):
            raise ValueError(f"sample_rate={sample_rate!r} must be an integer number of Hz")
        if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
            raise ValueError(
                f"sample_rate={sample_rate} Hz is outside [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}] Hz"
            )
        threshold_db = _check_range("threshold_db", threshold_db, MIN_LEVEL_DB, 0.0, "dBFS")
        times = [
            _check_range(name, v, 0.0, MAX_GATE_TIME_MS, "ms")
            for name, v in (("attack_ms", attack_ms), ("hold_ms", hold_ms), ("release_ms", release_ms))
        ]
        if floor_db == -math.inf:
            floor = 0
        else:
            floor_db = _check_range("floor_db", floor_db, MIN_LEVEL_DB, 0.0, "dB")
            floor = _round_pos(10.0 ** (floor_db / 20.0) * UNITY_Q30)
        span = UNITY_Q30 - floor

        def samples(ms: float) -> int:
            return _round_pos(ms * sample_rate / 1000.0)

        attack_n, hold_n, release_n = (samples(t) for t in times)
        return cls(
            threshold=_round_pos(32768.0 * 10.0 ** (threshold_db / 20.0) * (1 << ENV_SHIFT)),
            env_decay=_round_pos(
                math.exp(-1000.0 / (ENVELOPE_RELEASE_MS * sample_rate)) * UNITY_Q30
            ),
            hold_samples=hold_n,
            # ceil, so the ramp completes within the stated time
            attack_step=-(-span // max(1, attack_n)),
            release_step=-(-span // max(1, release_n)),
            floor=floor,
            makeup=gain_q16(makeup_db),
        )

    def as_tuple(self) -> tuple[int, int, int, int, int, int, int]:
        return (
            self.threshold,
            self.env_decay,
            self.hold_samples,
            self.attack_step,
            self.release_step,
            self.floor,
            self.makeup,
        )


class NoiseGate:
    """Stateful noise gate with attack/hold/release and optional makeup gain.

    Per sample: a peak envelope follower (instant rise, ``ENVELOPE_RELEASE_MS``
    decay) is compared with ``threshold_db`` (dBFS; 0 dBFS = 32768).  While it
    is above, or for ``hold_ms`` after it falls below, the gate gain ramps up
    to 1 over ``attack_ms``; then it ramps down to ``floor_db`` over
    ``release_ms`` — so speech tails fade instead of being chopped sample by
    sample.  The gated signal is then multiplied by ``makeup_db`` and
    saturated to int16, making ``process`` a one-pass gain + gate + clip:
    ``NoiseGate(..., makeup_db=d).process(x) == gain(NoiseGate(...).process(x), d)``.

    ``process(pcm, out=None) -> bytes``: PCM16 LE mono bytes-like of even
    length (any number of frames) in, same length out (or into ``out``).
    State carries across calls, so any split of a stream into calls gives
    the same output as one call.  Raises ``ValueError`` on an odd length or
    a parameter out of range (the message names it).

    The gate starts closed (gain = floor).  ``backend`` forces ``"native"``
    or ``"python"``; default is :data:`BACKEND`.

    ``channels`` > 1: ``pcm`` is interleaved (L R L R ... for stereo) and each
    channel has its own gate, keyed on its own level (the customer's speech
    does not open the agent's channel); ``process`` then needs a whole number
    of sample frames (``2 * channels`` bytes) and :attr:`state` is the first
    channel's (:attr:`states` has all).
    """

    __slots__ = ("params", "sample_rate", "backend_name", "channels", "_gate", "_gates", "process")

    def __init__(
        self,
        sample_rate: int = 8000,
        threshold_db: float = -48.0,
        attack_ms: float = 2.0,
        hold_ms: float = 80.0,
        release_ms: float = 150.0,
        floor_db: float = -math.inf,
        makeup_db: float = 0.0,
        *,
        channels: int = 1,
        backend: str | ModuleType | None = None,
    ):
        impl = _default if backend is None else _resolve(backend)
        if isinstance(channels, bool) or not isinstance(channels, int) or not 1 <= channels <= MAX_CHANNELS:
            raise ValueError(f"channels={channels!r} must be an integer in [1, {MAX_CHANNELS}]")
        self.params = GateParams.from_db_ms(
            sample_rate, threshold_db, attack_ms, hold_ms, release_ms, floor_db, makeup_db
        )
        self.sample_rate = sample_rate
        self.channels = channels
        self.backend_name: str = impl.NAME
        self._gates = tuple(impl.Gate(self.params.as_tuple()) for _ in range(channels))
        self._gate = self._gates[0]
        # Bound straight to the backend: no extra Python frame per call.
        self.process = self._gate.process if channels == 1 else self._process_interleaved

    def _process_interleaved(self, pcm, out=None):
        n = memoryview(pcm).nbytes
        block = 2 * self.channels
        if n % block:
            raise ValueError(f"PCM16 buffer of {n} bytes is not a whole number of {self.channels}-channel "
                             f"sample frames ({block} bytes each)")
        buf = bytearray(pcm)
        for index, gate in enumerate(self._gates):
            gate.process_channel(buf, self.channels, index)
        if out is None:
            return bytes(buf)
        mv = memoryview(out).cast("B")
        if mv.nbytes != n:
            raise _python.out_length_error(mv.nbytes, n)
        mv[:] = buf
        return out

    @property
    def states(self) -> tuple[tuple[int, int, int], ...]:
        """Each channel's ``(envelope Q16, gate gain Q30, hold samples left)``."""
        return tuple(g.get_state() for g in self._gates)

    @property
    def state(self) -> tuple[int, int, int]:
        """``(envelope Q16, gate gain Q30, hold samples left)``."""
        return self._gate.get_state()

    @property
    def is_open(self) -> bool:
        """True while the gate gain is above its floor."""
        return self._gate.get_state()[1] > self.params.floor

    def reset(self) -> None:
        """Return to the initial state (closed, envelope 0), e.g. for a new call."""
        for gate in self._gates:
            gate.set_state(0, self.params.floor, 0)

    def __repr__(self) -> str:
        return f"NoiseGate(sample_rate={self.sample_rate}, backend={self.backend_name!r})"


def mulaw_decode(data, *, out=None, backend: str | ModuleType | None = None):
    """G.711 μ-law bytes (one per sample) -> PCM16 LE ``bytes`` of twice the length.

    ITU-T G.711 with the reference (Sun/audioop) expansion; e.g. 0xFF -> 0,
    0x00 -> -32124, 0x80 -> 32124.
    """
    impl = _default if backend is None else _resolve(backend)
    return impl.mulaw_decode(data, out)


def mulaw_encode(pcm, *, out=None, backend: str | ModuleType | None = None):
    """PCM16 LE (even length) -> G.711 μ-law ``bytes`` of half the length.

    Samples are truncated to 14 bits, clipped to ±8159 and biased (ITU-T
    G.711; identical to CPython's ``audioop.lin2ulaw(pcm, 2)``).
    """
    impl = _default if backend is None else _resolve(backend)
    return impl.mulaw_encode(pcm, out)


def alaw_decode(data, *, out=None, backend: str | ModuleType | None = None):
    """G.711 A-law bytes (one per sample) -> PCM16 LE ``bytes`` of twice the length.

    E.g. 0xD5 -> 8, 0x55 -> -8, 0xAA -> 32256, 0x2A -> -32256.
    """
    impl = _default if backend is None else _resolve(backend)
    return impl.alaw_decode(data, out)


def alaw_encode(pcm, *, out=None, backend: str | ModuleType | None = None):
    """PCM16 LE (even length) -> G.711 A-law ``bytes`` of half the length.

    Samples are truncated to 13 bits (ITU-T G.711; identical to CPython's
    ``audioop.lin2alaw(pcm, 2)``).
    """
    impl = _default if backend is None else _resolve(backend)
    return impl.alaw_encode(pcm, out)


def interleave(left, right, *, width: int = 2, backend: str | ModuleType | None = None) -> bytes:
    """Two channels -> one interleaved buffer ``L R L R ...`` (a stereo WAV's ``data``).

    ``left`` and ``right`` are bytes-like of the same length holding samples of
    ``width`` bytes (2: PCM16 LE; 1: G.711, so μ-law can be interleaved before a
    single decode).  Returns ``bytes`` of twice the length.
    Raises ``ValueError`` for different lengths, a bad ``width`` or partial samples.
    """
    n_l, n_r = memoryview(left).nbytes, memoryview(right).nbytes
    if width not in (1, 2):
        raise ValueError(f"width={width!r} bytes per sample must be 1 or 2")
    if n_l != n_r:
        raise ValueError(f"channels differ in length: left {n_l} bytes, right {n_r} bytes")
    if n_l % width:
        raise ValueError(f"{n_l} bytes is not a whole number of {width}-byte samples")
    impl = _default if backend is None else _resolve(backend)
    return impl.interleave(left, right, width)
