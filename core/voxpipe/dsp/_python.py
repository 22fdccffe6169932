"""Pure-Python DSP backend: the bit-identical reference twin of native/voxpipe_dsp.c.

Same integer arithmetic as the C code (see that file for the contract); any
change here must be mirrored there.  Used when the compiled core is missing
or when forced with ``VOXPIPE_DSP_BACKEND=python``.  Parameters arrive
already converted to integers by :mod:`voxpipe.dsp`.
"""

from __future__ import annotations

import sys
from array import array

NAME = "python"

GAIN_SHIFT = 16  # Q16 gain multipliers (65536 == 0 dB)
GATE_SHIFT = 30  # Q30 gate gain and envelope decay
ENV_SHIFT = 16  # envelope and threshold: amplitude in Q16
UNITY_Q30 = 1 << GATE_SHIFT

_BIG_ENDIAN_HOST = sys.byteorder == "big"
_H16 = 1 << (GAIN_SHIFT - 1)
_H30 = 1 << (GATE_SHIFT - 1)


def odd_length_error(n: int) -> ValueError:
    """The error for a PCM16 buffer whose length is not a whole number of samples."""
    return ValueError(
        f"PCM16 buffer length {n} bytes is odd: expected a whole number of "
        "2-byte little-endian samples"
    )


def out_length_error(got: int, want: int) -> ValueError:
    return ValueError(f"out buffer is {got} bytes, expected exactly {want} bytes")


def _samples(pcm, typecode: str = "h") -> array:
    """PCM16 LE bytes-like -> array of ``typecode`` ('h' signed, 'H' the same 16 bits
    unsigned, for table lookups) in host order (copies; validates length)."""
    a = array(typecode)
    try:
        a.frombytes(pcm)
    except ValueError:
        raise odd_length_error(memoryview(pcm).nbytes) from None
    if _BIG_ENDIAN_HOST:
        a.byteswap()
    return a


def _pcm_bytes(a: array) -> bytes:
    if _BIG_ENDIAN_HOST:
        a.byteswap()
    return a.tobytes()


def _emit(data: bytes, out):
    """Return data, or copy it into the caller's buffer and return that."""
    if out is None:
        return data
    mv = memoryview(out).cast("B")
    if mv.readonly:
        raise TypeError("out buffer is read-only; pass a bytearray or writable memoryview")
    if mv.nbytes != len(data):
        raise out_length_error(mv.nbytes, len(data))
    mv[:] = data
    return out


def gain(pcm, q16: int, out=None):
    """Multiply PCM16 by q16 / 2^16, rounding half away from zero, saturating."""
    a = _samples(pcm)
    h = _H16
    for i, x in enumerate(a):
        # magnitude arithmetic, as the C code (q16 >= 0)
        if x < 0:
            m = (h - x * q16) >> 16
            a[i] = -32768 if m > 32768 else -m
        else:
            m = (x * q16 + h) >> 16
            a[i] = 32767 if m > 32767 else m
    return _emit(_pcm_bytes(a), out)


class Gate:
    """Noise-gate state and parameters as plain ints (mirror of the C ``vp_gate``)."""

    __slots__ = ("env", "gain", "hold", "_params")

    def __init__(self, params: tuple[int, int, int, int, int, int, int]):
        # (threshold, env_decay, hold_samples, attack_step, release_step, floor, makeup)
        self._params = tuple(params)
        self.env = 0
        self.gain = self._params[5]
        self.hold = 0

    def get_state(self) -> tuple[int, int, int]:
        return (self.env, self.gain, self.hold)

    def set_state(self, env: int, gain: int, hold: int) -> None:
        self.env, self.gain, self.hold = env, gain, hold

    def process(self, pcm, out=None):
        a = _samples(pcm)
        self._run(a)
        return _emit(_pcm_bytes(a), out)

    def process_channel(self, buf: bytearray, channels: int, index: int) -> None:
        """Gate channel ``index`` of interleaved PCM16 ``buf`` (``channels`` per sample
        frame) in place, as the C ``vp_gate_process_strided``."""
        a = _samples(buf)
        sub = a[index::channels]
        self._run(sub)
        a[index::channels] = sub
        buf[:] = _pcm_bytes(a)

    def _run(self, a: array) -> None:
        threshold, decay, hold_samples, attack, release, floor, makeup = self._params
        env, g, hold = self.env, self.gain, self.hold
        unity, h30, h16 = UNITY_Q30, _H30, _H16
        for i, x in enumerate(a):
            ax = -x if x < 0 else x
            a16 = ax << 16
            env = (env * decay) >> 30
            if a16 > env:
                env = a16
            if env >= threshold:
                hold = hold_samples
                g += attack
                if g > unity:
                    g = unity
            elif hold > 0:
                hold -= 1
                g += attack
                if g > unity:
                    g = unity
            else:
                g -= release
                if g < floor:
                    g = floor
            m = (((ax * g + h30) >> 30) * makeup + h16) >> 16
            if x < 0:
                a[i] = -32768 if m > 32768 else -m
            else:
                a[i] = 32767 if m > 32767 else m
        self.env, self.gain, self.hold = env, g, hold


def interleave(left, right, width: int):
    """``L R L R ...`` of two channels of ``width``-byte samples (same length)."""
    left, right = memoryview(left).cast("B"), memoryview(right).cast("B")
    if width == 1:
        out = bytearray(2 * len(left))
        out[0::2] = left
        out[1::2] = right
        return bytes(out)
    a_l, a_r = array("h"), array("h")
    a_l.frombytes(left)
    a_r.frombytes(right)
    out_a = array("h", bytes(2 * len(left)))
    out_a[0::2] = a_l
    out_a[1::2] = a_r
    return out_a.tobytes()


# ---- G.711: the Sun reference algorithm, as in CPython's audioop ----

_SEG_UEND = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_SEG_AEND = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _seg(v: int, table: tuple[int, ...]) -> int:
    for i, end in enumerate(table):
        if v <= end:
            return i
    return 8


def ulaw_from_linear(x: int) -> int:
    """One PCM16 sample -> one μ-law byte."""
    v = x >> 2  # 14-bit; Python >> floors, as the C floor_shift
    if v < 0:
        v, mask = -v, 0x7F
    else:
        mask = 0xFF
    v = min(v, 8159) + (0x84 >> 2)
    seg = _seg(v, _SEG_UEND)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((v >> (seg + 1)) & 0xF)) ^ mask


def ulaw_to_linear(u: int) -> int:
    """One μ-law byte -> one PCM16 sample."""
    u = ~u & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return (0x84 - t) if u & 0x80 else (t - 0x84)


def alaw_from_linear(x: int) -> int:
    """One PCM16 sample -> one A-law byte."""
    v = x >> 3  # 13-bit
    if v >= 0:
        mask = 0xD5
    else:
        mask, v = 0x55, -v - 1
    seg = _seg(v, _SEG_AEND)
    if seg >= 8:
        return 0x7F ^ mask
    aval = (seg << 4) | (((v >> 1) if seg < 2 else (v >> seg)) & 0xF)
    return aval ^ mask


def alaw_to_linear(a: int) -> int:
    """One A-law byte -> one PCM16 sample."""
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


_ULAW_DECODE = tuple(ulaw_to_linear(u) for u in range(256))
_ALAW_DECODE = tuple(alaw_to_linear(a) for a in range(256))
_encode_tables: dict[str, bytes] = {}


def _encode_table(name: str) -> bytes:
    """65536-entry table indexed by the sample as uint16 (built on first use, ~50 ms)."""
    table = _encode_tables.get(name)
    if table is None:
        f = ulaw_from_linear if name == "ulaw" else alaw_from_linear
        table = bytes(f(u - 65536 if u >= 32768 else u) for u in range(65536))
        _encode_tables[name] = table
    return table


def _decode(data, table, out):
    a = array("h", map(table.__getitem__, memoryview(data).cast("B")))
    return _emit(_pcm_bytes(a), out)


def _encode(pcm, table, out):
    return _emit(bytes(map(table.__getitem__, _samples(pcm, "H"))), out)


def mulaw_decode(data, out=None):
    return _decode(data, _ULAW_DECODE, out)


def alaw_decode(data, out=None):
    return _decode(data, _ALAW_DECODE, out)


def mulaw_encode(pcm, out=None):
    return _encode(pcm, _encode_table("ulaw"), out)


def alaw_encode(pcm, out=None):
    return _encode(pcm, _encode_table("alaw"), out)


class Reassembler:
    """Cuts a byte stream into whole frames of ``frame_bytes``, carrying the rest."""

    __slots__ = ("_carry", "_frame_bytes")

    def __init__(self, frame_bytes: int):
        self._frame_bytes = frame_bytes
        self._carry = bytearray()

    @property
    def pending(self) -> int:
        return len(self._carry)

    def feed(self, data) -> bytes:
        carry = self._carry
        carry += data
        n = len(carry) - len(carry) % self._frame_bytes
        if n == 0:
            return b""
        out = bytes(carry[:n])
        del carry[:n]
        return out

    def take_pending(self) -> bytes:
        rest = bytes(self._carry)
        self._carry.clear()
        return rest
