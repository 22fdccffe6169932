"""What the voice emulator sends, and when (sans-IO, seeded, unit-tested).

* :func:`load_wav`: a WAV file's samples as PCM16 (PCM16, G.711 μ-law or A-law WAVs,
  decoded by :mod:`voxpipe.dsp`), mono.
* :func:`pcm16_messages`: the audio cut into randomly sized binary messages (boundaries
  anywhere, odd sizes included), each with its send time.
* :func:`twilio_messages`: Twilio Media Streams events (``connected``, ``start``, one
  ``media`` per 20 ms of μ-law with ``chunk``/``timestamp``/``sequenceNumber``, ``stop``)
  after a :func:`packet_plan` that drops and reorders packets.
* :func:`expected_twilio_pcm`: the PCM16 a receiver reconstructs from such a plan with
  silence concealment (what the end-to-end tests compare against).

Send times are seconds of audio from the start of the call (divide by the speed).
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from pathlib import Path

from voxpipe import dsp

from . import twilio

#: Bytes per sample (PCM16) and Twilio's μ-law frame: 20 ms at 8 kHz.
TWILIO_FRAME_MS = 20
WAVE_FORMAT_PCM, WAVE_FORMAT_ALAW, WAVE_FORMAT_MULAW = 1, 6, 7


class WavError(ValueError):
    """The file is not a WAV this emulator can stream; the message names file and offset."""


@dataclass(frozen=True, slots=True)
class Audio:
    """Mono PCM16 little-endian samples and their rate (Hz)."""

    pcm: bytes
    sample_rate: int
    name: str = "audio"

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


@dataclass(frozen=True, slots=True)
class Message:
    """One WebSocket message and the audio time (s) at which it is due."""

    at: float
    data: bytes | str


def load_wav(path: str | Path) -> Audio:
    """Read a mono WAV (PCM16, μ-law or A-law) as PCM16.

    :raises WavError: not RIFF/WAVE, no ``fmt ``/``data`` chunk, or an unsupported format.
    """
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise WavError(f"{path}: not a RIFF/WAVE file (byte offset 0)")
    fmt = None
    pos = 12
    while pos + 8 <= len(raw):
        cid, size = raw[pos:pos + 4], struct.unpack_from("<I", raw, pos + 4)[0]
        body = raw[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            if len(body) < 16:
                raise WavError(f"{path}: fmt chunk of {size} bytes at byte offset {pos} is too short")
            fmt = struct.unpack_from("<HHIIHH", body)
        elif cid == b"data":
            if fmt is None:
                raise WavError(f"{path}: data chunk at byte offset {pos} before any fmt chunk")
            tag, channels, rate, _, _, bits = fmt
            if channels != 1:
                raise WavError(f"{path}: {channels} channels; the emulator streams mono")
            if tag == WAVE_FORMAT_PCM and bits == 16:
                pcm = body[: len(body) - len(body) % 2]
            elif tag == WAVE_FORMAT_MULAW and bits == 8:
                pcm = dsp.mulaw_decode(body)
            elif tag == WAVE_FORMAT_ALAW and bits == 8:
                pcm = dsp.alaw_decode(body)
            else:
                raise WavError(f"{path}: WAVE format tag {tag} with {bits} bits is not PCM16, μ-law or A-law")
            return Audio(bytes(pcm), rate, path.stem)
        pos += 8 + size + (size & 1)
    raise WavError(f"{path}: no data chunk")


def slice_sizes(total: int, rng: random.Random, min_bytes: int = 1, max_bytes: int = 1000) -> list[int]:
    """Random message sizes in ``[min_bytes, max_bytes]`` summing to ``total`` (last may be smaller)."""
    if not 1 <= min_bytes <= max_bytes:
        raise ValueError(f"message sizes [{min_bytes}, {max_bytes}] are not a valid range")
    sizes = []
    left = total
    while left > 0:
        n = min(left, rng.randint(min_bytes, max_bytes))
        sizes.append(n)
        left -= n
    return sizes


def pcm16_messages(audio: Audio, rng: random.Random, min_bytes: int = 1, max_bytes: int = 1000) -> list[Message]:
    """The audio as binary messages of random sizes, each due when its last sample is."""
    out = []
    offset = 0
    bytes_per_second = audio.sample_rate * 2
    for size in slice_sizes(len(audio.pcm), rng, min_bytes, max_bytes):
        out.append(Message((offset + size) / bytes_per_second, audio.pcm[offset:offset + size]))
        offset += size
    return out


def packet_plan(n: int, rng: random.Random, drop: float = 0.0, reorder: float = 0.0) -> list[int]:
    """The order packets ``0..n-1`` are sent in: each is dropped with probability ``drop``
    (never the first or last, so a receiver can see every gap) and swapped with the next
    with probability ``reorder`` when their numbers are consecutive (one place out of order,
    which a jitter buffer of one frame or more restores)."""
    for p, name in ((drop, "drop"), (reorder, "reorder")):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name}={p} is not a probability in [0, 1]")
    kept = [i for i in range(n) if i in (0, n - 1) or rng.random() >= drop]
    i = 1
    while i < len(kept) - 2:
        # Only consecutive sequence numbers swap: a packet then arrives at most one place
        # late, which any jitter buffer of >= 1 frame puts back in order.
        if rng.random() < reorder and kept[i + 1] == kept[i] + 1:
            kept[i], kept[i + 1] = kept[i + 1], kept[i]
            i += 2
        else:
            i += 1
    return kept


def mulaw_frames(audio: Audio) -> list[bytes]:
    """The audio as G.711 μ-law, cut into 20 ms frames (the last may be shorter)."""
    ulaw = dsp.mulaw_encode(audio.pcm)
    step = audio.sample_rate * TWILIO_FRAME_MS // 1000
    return [ulaw[i:i + step] for i in range(0, len(ulaw), step)]


def twilio_messages(audio: Audio, plan: list[int] | None = None, *, call_sid: str = "CA0", stream_sid: str = "MZ0",
                    account_sid: str = "AC0") -> list[Message]:
    """Twilio Media Streams events for the audio, media packets sent in ``plan`` order."""
    frames = mulaw_frames(audio)
    plan = list(range(len(frames))) if plan is None else plan
    out = [Message(0.0, twilio.serialize(twilio.Connected())),
           Message(0.0, twilio.serialize(twilio.Start(1, stream_sid, call_sid, account_sid,
                                                      sample_rate=audio.sample_rate)))]
    frame_s = TWILIO_FRAME_MS / 1000
    for sent, i in enumerate(plan):
        event = twilio.Media(i + 2, stream_sid, i + 1, i * TWILIO_FRAME_MS, frames[i])
        out.append(Message((sent + 1) * frame_s, twilio.serialize(event)))
    out.append(Message(len(frames) * frame_s, twilio.serialize(twilio.Stop(len(frames) + 2, stream_sid, call_sid,
                                                                           account_sid))))
    return out


def expected_twilio_pcm(audio: Audio, plan: list[int] | None = None) -> bytes:
    """PCM16 a receiver rebuilds: μ-law round trip, dropped frames as μ-law silence (0xFF)."""
    frames = mulaw_frames(audio)
    sent = set(range(len(frames)) if plan is None else plan)
    ulaw = b"".join(f if i in sent else b"\xff" * len(f) for i, f in enumerate(frames))
    return dsp.mulaw_decode(ulaw)


# ---- stereo calls: Twilio both tracks, Genesys AudioHook, CXone Agent Assist ------------------------


def _pad(pcm: bytes, n_bytes: int) -> bytes:
    return pcm + bytes(n_bytes - len(pcm))


def stereo_pcm(left: bytes, right: bytes) -> bytes:
    """Two mono PCM16 signals as one interleaved stereo signal, the shorter padded with silence."""
    n = max(len(left), len(right))
    return dsp.interleave(_pad(left, n), _pad(right, n))


def mulaw_round_trip(pcm: bytes) -> bytes:
    """What G.711 μ-law transport makes of PCM16 (encode then decode)."""
    return dsp.mulaw_decode(dsp.mulaw_encode(pcm))


def twilio_stereo_messages(inbound: Audio, outbound: Audio, plans: tuple[list[int] | None, list[int] | None] = (
        None, None), *, outbound_delay_ms: int = 0, call_sid: str = "CA0", stream_sid: str = "MZ0",
        account_sid: str = "AC0") -> list[Message]:
    """A ``both_tracks`` stream (``<Start><Stream track="both_tracks">``): one ``start`` listing
    both tracks, then each track's ``media`` (its own ``chunk`` counter from 1, ``timestamp``
    in ms since the stream started; the outbound track starting ``outbound_delay_ms``
    later) merged in time order, then ``stop``."""
    frame_s = TWILIO_FRAME_MS / 1000
    out = [Message(0.0, twilio.serialize(twilio.Connected())),
           Message(0.0, twilio.serialize(twilio.Start(1, stream_sid, call_sid, account_sid, ("inbound", "outbound"),
                                                      sample_rate=inbound.sample_rate)))]
    media = []
    for track, audio, plan, delay in (("inbound", inbound, plans[0], 0), ("outbound", outbound, plans[1],
                                                                           outbound_delay_ms)):
        frames = mulaw_frames(audio)
        order = list(range(len(frames))) if plan is None else plan
        for sent, i in enumerate(order):
            at = delay / 1000 + (sent + 1) * frame_s
            media.append((at, track == "outbound", i, track, frames[i], delay))
    media.sort(key=lambda m: (m[0], m[1]))
    seq = 2
    for at, _, i, track, payload, delay in media:
        out.append(Message(at, twilio.serialize(twilio.Media(seq, stream_sid, i + 1, delay + i * TWILIO_FRAME_MS,
                                                             payload, track))))
        seq += 1
    end = max(m[0] for m in media) if media else 0.0
    out.append(Message(end, twilio.serialize(twilio.Stop(seq, stream_sid, call_sid, account_sid))))
    return out


def expected_twilio_stereo_pcm(inbound: Audio, outbound: Audio, plans: tuple[list[int] | None, list[int] | None] = (
        None, None), *, outbound_delay_ms: int = 0) -> bytes:
    """The stereo PCM16 a receiver records from :func:`twilio_stereo_messages`: inbound left,
    outbound right (after ``outbound_delay_ms`` of silence), concealed frames silent."""
    left = expected_twilio_pcm(inbound, plans[0])
    right = bytes(2 * outbound.sample_rate * outbound_delay_ms // 1000) + expected_twilio_pcm(outbound, plans[1])
    return stereo_pcm(left, right)


def audiohook_audio(left: Audio, right: Audio | None, fmt: str) -> bytes:
    """The wire audio of an AudioHook session: PCMU (μ-law) or L16 (PCM16 LE), the two
    channels interleaved (external = ``left``, internal = ``right``) when ``right`` is given."""
    if right is None:
        return dsp.mulaw_encode(left.pcm) if fmt == "PCMU" else left.pcm
    n = max(len(left.pcm), len(right.pcm))
    pcm = dsp.interleave(_pad(left.pcm, n), _pad(right.pcm, n))
    return dsp.mulaw_encode(pcm) if fmt == "PCMU" else pcm


def audiohook_messages(client, wire: bytes, *, width: int, channels: int, frame_ms: int = 20,
                       pause: tuple[float, float] | None = None, ping_every: float = 5.0) -> list[Message]:
    """What an AudioHook client sends after ``opened``: binary frames of ``frame_ms`` of the
    ``wire`` audio, a ``ping`` every ``ping_every`` s, an optional pause (``(at, seconds)``:
    ``paused``, no audio for that long, ``resumed`` with the discarded duration; the audio
    of the paused stretch is never sent), then ``close`` (reason ``end``). ``client`` is an
    :class:`.audiohook.ClientSession` (positions and sequence numbers advance as built)."""
    from .audiohook import format_duration

    rate = 8000
    block = width * channels
    step = rate * frame_ms // 1000 * block
    out: list[Message] = []
    ping_step = round(ping_every * rate)
    next_ping = ping_step
    pause_at = None if pause is None else round(pause[0] * rate)
    pos = 0
    sent = 0  # samples per channel, sent or discarded (the AudioHook position)
    while pos < len(wire):
        if pause_at is not None and sent >= pause_at:
            pause_at = None
            out.append(Message(sent / rate, client.message("paused")))
            skip = round(pause[1] * rate)
            start = client.position
            pos += skip * block
            sent += skip
            client.position = sent / rate
            out.append(Message(sent / rate, client.message("resumed", {"start": format_duration(start),
                                                                       "discarded": format_duration(pause[1])})))
            continue
        frame = wire[pos:pos + step]
        pos += len(frame)
        sent += len(frame) // block
        client.position = sent / rate
        out.append(Message(sent / rate, frame))
        if sent >= next_ping:
            out.append(Message(sent / rate, client.message("ping")))
            next_ping += ping_step
    t = sent / rate
    out.append(Message(t, client.message("close", {"reason": "end"})))
    return out


def expected_audiohook_pcm(left: Audio, right: Audio | None, fmt: str, *, pause: tuple[float, float] | None = None,
                           pause_mode: str = "silence") -> bytes:
    """The PCM16 (interleaved when stereo) recorded from :func:`audiohook_messages`."""
    wire = audiohook_audio(left, right, fmt)
    pcm = dsp.mulaw_decode(wire) if fmt == "PCMU" else wire
    if pause is None:
        return pcm
    block = 2 * (1 if right is None else 2)
    at, length = round(pause[0] * 8000), round(pause[1] * 8000)
    # the pause starts at the first frame boundary at or after ``at`` (20 ms frames)
    at = -(-at // 160) * 160
    head, tail = pcm[: at * block], pcm[(at + length) * block:]
    return head + (bytes(length * block) if pause_mode == "silence" else b"") + tail


def cxone_messages(audio: Audio, perspective: str, contact_id: str, rng: random.Random, *, min_bytes: int = 80,
                   max_bytes: int = 480, hold: tuple[float, float] | None = None) -> list[list[Message]]:
    """One CXone perspective as connections: each starts with the initial JSON message
    (``streamPerspective``, ``contactId``) followed by raw μ-law in randomly sized binary
    messages. With ``hold`` (``(at, seconds)``) the first connection closes at ``at`` s
    and a second one opens ``seconds`` later, continuing the audio (as CXone does around a
    hold)."""
    import json

    ulaw = dsp.mulaw_encode(audio.pcm)
    rate = audio.sample_rate
    cut = len(ulaw) if hold is None else min(len(ulaw), round(hold[0] * rate))
    pieces = [(0, cut, 0.0)] + ([] if hold is None else [(cut, len(ulaw), hold[1])])
    hello = json.dumps({"streamPerspective": perspective, "contactId": contact_id})
    connections = []
    for begin, end, delay in pieces:
        msgs = [Message(begin / rate + delay, hello)]
        pos = begin
        for size in slice_sizes(end - begin, rng, min_bytes, max_bytes):
            msgs.append(Message((pos + size) / rate + delay, ulaw[pos:pos + size]))
            pos += size
        connections.append(msgs)
    return connections
