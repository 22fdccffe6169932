"""``voxpipe emulate voice``: stream real audio files over WebSocket like a live call.

* Server mode (:class:`VoiceEmulatorServer`): a WebSocket server that, per connection,
  streams one audio file (the one whose stem is the request path's last segment, else
  the files in turn) as a call, at real-time pace (``speed`` 1.0), faster, or as fast as
  possible (``speed`` 0), then closes with 1000. For the ``websocket-voice`` source in
  client mode (the seed's CXone voice stream).
* Client mode (:func:`push_calls`): dials ``{url}/calls/<id>`` once per call, N calls
  concurrently, for the source in server mode (as Twilio Media Streams does).

Payloads: ``pcm16`` (binary PCM16 LE in randomly sized messages, boundaries anywhere),
``twilio`` (JSON events, 20 ms μ-law per ``media``; ``stereo``: both tracks), and in
client mode ``audiohook`` and ``cxone`` (:mod:`.platform_clients`). Faults: ``drop``/``reorder``
probabilities per Twilio media packet, and ``abort_after`` N messages: the first
connection of each call is cut without a close frame (the receiver sees 1006) and a
reconnect to the same path resumes where it stopped. Schedules are seeded
(:mod:`.schedule`), so a test can compute exactly what the receiver should record.
"""

from __future__ import annotations

import logging
import random
import signal
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import click
import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url, wrap_server_stream

from voxpipe.errors import VoxpipeError
from voxpipe.resources import example_recordings

from . import schedule
from .platform_clients import pace, push_audiohook_call, push_cxone_call
from .session import _is_close_race
from .schedule import Audio, Message

log = logging.getLogger("voxpipe.voice.emulator")

#: Largest WebSocket message the emulator accepts (it only expects control frames).
MAX_MESSAGE_BYTES = 64 * 1024


@dataclass(frozen=True)
class StreamOptions:
    """How calls are streamed.

    :ivar codec: ``pcm16`` or ``twilio``.
    :ivar speed: 1.0 = real time, 2.0 = twice as fast, 0 = as fast as possible.
    :ivar seed: seeds message sizes and faults (per call: ``f"{seed}:{call_id}"``).
    :ivar min_bytes, max_bytes: PCM16 message size range (bytes).
    :ivar drop, reorder: Twilio per-packet probabilities.
    :ivar abort_after: cut each call's first connection after this many messages.
    """

    codec: Literal["pcm16", "twilio", "audiohook", "cxone"] = "pcm16"
    speed: float = 1.0
    seed: int = 0
    min_bytes: int = 80
    max_bytes: int = 1200
    drop: float = 0.0
    reorder: float = 0.0
    abort_after: int | None = None
    #: Twilio both tracks / AudioHook both channels / CXone RX + TX: the next file is the agent.
    stereo: bool = False
    #: Twilio stereo: the outbound track starts this much later (ms).
    outbound_delay_ms: int = 40
    #: CXone: ``(at, seconds)`` hold; AudioHook: ``(at, seconds)`` pause.
    hold: tuple[float, float] | None = None
    pause: tuple[float, float] | None = None
    audiohook_format: str = "PCMU"
    api_key: str | None = field(default=None, repr=False)
    client_secret: str | None = field(default=None, repr=False)

    def plan(self, audio: Audio, call_id: str) -> list[int] | None:
        """The Twilio packet plan for a call (None: every packet, in order)."""
        if self.codec != "twilio" or (not self.drop and not self.reorder):
            return None
        rng = random.Random(f"{self.seed}:{call_id}:plan")
        return schedule.packet_plan(len(schedule.mulaw_frames(audio)), rng, self.drop, self.reorder)

    def messages(self, audio: Audio, call_id: str, right: Audio | None = None) -> list[Message]:
        if self.codec == "twilio" and self.stereo and right is not None:
            plans = (self.plan(audio, call_id), self.plan(right, call_id + ":outbound"))
            return schedule.twilio_stereo_messages(audio, right, plans, outbound_delay_ms=self.outbound_delay_ms,
                                                   call_sid=call_id, stream_sid=f"MZ{call_id}")
        if self.codec == "twilio":
            return schedule.twilio_messages(audio, self.plan(audio, call_id), call_sid=call_id,
                                            stream_sid=f"MZ{call_id}")
        return schedule.pcm16_messages(audio, random.Random(f"{self.seed}:{call_id}"), self.min_bytes,
                                       self.max_bytes)


@dataclass
class CallReport:
    """What one streamed call did: messages and bytes sent, worst lateness (s), close."""

    call_id: str
    messages: int = 0
    bytes: int = 0
    max_late: float = 0.0
    close_code: int | None = None
    aborted: bool = False
    error: str | None = None
    #: AudioHook: what the server answered (media, pongs, closed, disconnect).
    outcome: dict | None = None


async def _send(ws, messages: list[Message], start: int, options: StreamOptions, report: CallReport,
                abort_at: int | None = None) -> int:
    """Send ``messages[start:]`` at pace; returns the index reached (``abort_at`` stops early)."""
    return await pace(ws, messages, options.speed, report, start, abort_at)


def load_files(paths: list[Path]) -> list[Audio]:
    """Audio of each WAV file (examples/recordings/*.wav when empty)."""
    if not paths:
        paths = sorted(example_recordings().glob("*.wav"))
    return [schedule.load_wav(p) for p in paths]


class VoiceEmulatorServer:
    """Streams a file per incoming connection. ``await nursery.start(server.serve)`` returns
    the bound port; :attr:`requests` records each request's path and headers (tests),
    :attr:`reports` each call's :class:`CallReport`."""

    def __init__(self, files: list[Audio], options: StreamOptions = StreamOptions(), host: str = "127.0.0.1",
                 port: int = 0):
        if not files:
            raise ValueError("no audio files to stream")
        self.files = files
        self.options = options
        self.host = host
        self.port = port
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.reports: dict[str, CallReport] = {}
        self._positions: dict[str, int] = {}
        self._connections = 0

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def audio_for(self, call_id: str) -> Audio:
        for audio in self.files:
            if audio.name == call_id:
                return audio
        return self.files[sum(map(ord, call_id)) % len(self.files)]

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, self._handle, self.port, host=self.host,
                                                    handler_nursery=nursery))
            self.port = listeners[0].socket.getsockname()[1]
            task_status.started(self.port)

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            async with trio.open_nursery() as nursery:
                request = await wrap_server_stream(nursery, stream, max_message_size=MAX_MESSAGE_BYTES)
                self.requests.append((request.path, {k.decode().lower(): v.decode() for k, v in request.headers}))
                ws = await request.accept()
                call_id = urlsplit(request.path).path.rstrip("/").rsplit("/", 1)[-1] or f"call-{self._connections}"
                self._connections += 1
                audio = self.audio_for(call_id)
                messages = self.options.messages(audio, call_id)
                report = self.reports.setdefault(call_id, CallReport(call_id))
                start = self._positions.get(call_id, 0)
                abort_at = None
                if self.options.abort_after is not None and not report.aborted:
                    abort_at = start + self.options.abort_after
                if start and self.options.codec == "twilio":
                    for m in messages[:2]:  # a new connection starts with connected + start again
                        await ws.send_message(m.data)
                try:
                    reached = await _send(ws, messages, start, self.options, report, abort_at)
                    if reached < len(messages):
                        self._positions[call_id] = reached
                        report.aborted = True
                        await stream.aclose()  # no close frame: the peer sees 1006
                    else:
                        await ws.aclose(1000, "end of call")
                        report.close_code = 1000
                except ConnectionClosed as exc:
                    report.close_code = exc.reason.code if exc.reason else None
                nursery.cancel_scope.cancel()
        except Exception as exc:  # one connection's end never stops the server
            log.debug("emulator connection ended: %r", exc)


async def push_call(url: str, audio: Audio, call_id: str, options: StreamOptions,
                    headers: list[tuple[bytes, bytes]] | None = None, right: Audio | None = None) -> CallReport:
    """Dial ``url`` and stream ``audio`` as call ``call_id`` (``right``: the agent's side of a
    stereo call); close with 1000 at the end."""
    report = CallReport(call_id)
    if options.codec == "audiohook":
        report.outcome = await push_audiohook_call(
            url, audio, right if options.stereo else None, call_id, report, speed=options.speed,
            api_key=options.api_key, client_secret=options.client_secret, fmt=options.audiohook_format,
            pause=options.pause)
        return report
    if options.codec == "cxone":
        base = url.rsplit("/calls/", 1)[0]
        await push_cxone_call(base, audio, right if options.stereo else None, call_id, report, speed=options.speed,
                              seed=options.seed, hold=options.hold, headers=headers)
        return report
    try:
        async with open_websocket_url(url, extra_headers=headers or [], max_message_size=MAX_MESSAGE_BYTES) as ws:
            try:
                await _send(ws, options.messages(audio, call_id, right), 0, options, report)
                await ws.aclose(1000, "end of call")
                report.close_code = 1000
            except ConnectionClosed as exc:
                report.close_code = exc.reason.code if exc.reason else None
    except (HandshakeError, OSError) as exc:
        report.error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        # trio-websocket issue #184: answering a ping while closing raises LocalProtocolError;
        # harmless once the call was sent and closed, an error otherwise.
        if not (report.close_code == 1000 and _is_close_race(exc)):
            report.error = f"{type(exc).__name__}: {exc}"
    return report


async def push_calls(url: str, files: list[Audio], calls: int, options: StreamOptions, *,
                     token: str | None = None, stagger: float = 0.0, prefix: str = "call") -> list[CallReport]:
    """Stream ``calls`` concurrent calls to ``{url}/calls/<prefix>-<n>``, files in turn,
    starting one every ``stagger`` seconds; returns their reports in call order."""
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    reports: list[CallReport | None] = [None] * calls

    async def one(i: int) -> None:
        call_id = f"{prefix}-{i:04d}"
        audio, right = files[i % len(files)], files[(i + 1) % len(files)]
        try:  # one call's failure must not cancel the others
            reports[i] = await push_call(f"{url.rstrip('/')}/calls/{call_id}", audio, call_id, options, headers, right)
        except Exception as exc:
            reports[i] = CallReport(call_id, error=f"{type(exc).__name__}: {exc}")

    async with trio.open_nursery() as nursery:
        for i in range(calls):
            nursery.start_soon(one, i)
            if stagger:
                await trio.sleep(stagger)
    return [r for r in reports if r is not None]


@click.command("voice")
@click.option("--mode", type=click.Choice(["server", "client"]), default="server", show_default=True,
              help="server: serve calls to a pipeline that dials; client: push calls to a listening pipeline.")
@click.option("--file", "files", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="WAV file to stream (PCM16, μ-law or A-law, mono); repeat. Default: the shipped example recordings' *.wav.")
@click.option("--codec", "--protocol", "codec", type=click.Choice(["pcm16", "twilio", "audiohook", "cxone"]),
              default="pcm16", show_default=True, help="What to speak: binary PCM16, Twilio Media Streams, "
              "Genesys AudioHook or CXone Agent Assist (the last two: client mode only, as the platforms call us).")
@click.option("--stereo", is_flag=True, help="Two sides per call (the next file is the agent): Twilio both_tracks, "
              "AudioHook external+internal, CXone TX+RX connections.")
@click.option("--hold", "hold", type=(float, float), default=None, metavar="AT SECONDS",
              help="CXone: close the connections AT s into the call and reconnect SECONDS later.")
@click.option("--pause", "pause", type=(float, float), default=None, metavar="AT SECONDS",
              help="AudioHook: pause AT s into the call for SECONDS (paused/resumed, audio discarded).")
@click.option("--audiohook-format", type=click.Choice(["PCMU", "L16"]), default="PCMU", show_default=True)
@click.option("--api-key", envvar="AUDIOHOOK_API_KEY", default=None,
              help="AudioHook: X-API-KEY (default: $AUDIOHOOK_API_KEY).")
@click.option("--client-secret", envvar="AUDIOHOOK_CLIENT_SECRET", default=None,
              help="AudioHook: client secret (base64) to sign the upgrade request (default: "
              "$AUDIOHOOK_CLIENT_SECRET).")
@click.option("--speed", type=float, default=1.0, show_default=True, help="1 = real time, 0 = as fast as possible.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds message sizes, drops and reorders.")
@click.option("--min-bytes", type=click.IntRange(1), default=80, show_default=True, help="Smallest PCM16 message.")
@click.option("--max-bytes", type=click.IntRange(1), default=1200, show_default=True, help="Largest PCM16 message.")
@click.option("--drop", type=click.FloatRange(0, 1), default=0.0, help="Twilio: probability of dropping a packet.")
@click.option("--reorder", type=click.FloatRange(0, 1), default=0.0, help="Twilio: probability of swapping a packet "
              "with the next.")
@click.option("--abort-after", type=click.IntRange(1), default=None, help="Cut each call's first connection "
              "after N messages (the peer sees 1006); a reconnect resumes.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Server mode: address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8766, show_default=True,
              help="Server mode: port (0 picks one).")
@click.option("--url", default="ws://127.0.0.1:8765", show_default=True, help="Client mode: pipeline's base URL.")
@click.option("--calls", type=click.IntRange(1), default=1, show_default=True, help="Client mode: concurrent calls.")
@click.option("--stagger", type=float, default=0.0, help="Client mode: seconds between call starts.")
@click.option("--repeat", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="Play each file this many times in a row (longer calls).")
@click.option("--token", envvar="VOICE_TOKEN", default=None, help="Client mode: bearer token sent in Authorization "
              "(default: $VOICE_TOKEN).")
def voice(mode, files, codec, stereo, hold, pause, audiohook_format, api_key, client_secret, speed, seed, min_bytes,
          max_bytes, drop, reorder, abort_after, host, port, url, calls, stagger, repeat, token) -> None:
    """Stream audio files as live calls over WebSocket: PCM16, Twilio Media Streams, Genesys
    AudioHook or CXone Agent Assist, mono or stereo (customer left, agent right)."""
    if min_bytes > max_bytes:
        raise click.BadParameter(f"--min-bytes {min_bytes} exceeds --max-bytes {max_bytes}")
    if codec in ("audiohook", "cxone") and mode == "server":
        raise click.BadParameter(f"{codec} platforms connect to voxpipe: use --mode client --url ws://<pipeline>",
                                 param_hint="--codec")
    try:
        audio = load_files(list(files))
    except (OSError, schedule.WavError, VoxpipeError) as exc:
        raise click.ClickException(str(exc)) from None
    if not audio:
        raise click.ClickException("no WAV files given and none among the shipped example recordings")
    audio = [Audio(a.pcm * repeat, a.sample_rate, a.name) for a in audio]
    options = StreamOptions(codec, speed, seed, min_bytes, max_bytes, drop, reorder, abort_after, stereo=stereo,
                            hold=hold, pause=pause, audiohook_format=audiohook_format, api_key=api_key,
                            client_secret=client_secret)
    if mode == "client":
        reports = trio.run(partial(push_calls, url, audio, calls, options, token=token, stagger=stagger))
        failed = [r for r in reports if r.error or r.close_code != 1000 or (r.outcome or {}).get("disconnect")]
        for r in reports:
            refused = (r.outcome or {}).get("disconnect")
            click.echo(f"{r.call_id}: {r.messages} messages, {r.bytes} bytes, close {r.close_code}, "
                       f"max late {r.max_late * 1000:.1f} ms" + (f", error {r.error}" if r.error else "")
                       + (f", disconnect {refused.get('reason')}: {refused.get('info')}" if refused else ""))
        raise SystemExit(1 if failed else 0)
    server = VoiceEmulatorServer(audio, options, host, port)

    async def main() -> None:
        # the signal receiver is open before the banner: a script that stops the emulator as
        # soon as it is announced must not meet a KeyboardInterrupt traceback
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(server.serve)
                click.echo(f"voice emulator ({codec}, speed {speed}) on {server.url}/calls/<id>; files: "
                           + ", ".join(f"{a.name} ({a.seconds:.1f} s)" for a in audio), err=True)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)


__all__ = ["StreamOptions", "CallReport", "VoiceEmulatorServer", "push_call", "push_calls", "load_files", "voice"]
