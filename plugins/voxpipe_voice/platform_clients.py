"""Emulated platform clients: Genesys AudioHook and CXone Agent Assist calling voxpipe.

Both platforms connect to a server of ours, so ``voxpipe emulate voice --mode client``
plays their part with real speech:

* :func:`push_audiohook_call`: the upgrade request carries ``X-API-KEY``, the
  ``Audiohook-*`` headers and, with a client secret, an HTTP message signature
  (:mod:`.httpsig`); then ``open`` offering stereo and mono PCMU (or L16), waiting
  ``OPEN_TIMEOUT`` s for ``opened`` (a medium not offered gets ``error`` 400 then
  ``close``, as Genesys' client does), audio frames of 20 ms with ``ping`` every 5 s, an
  optional pause, ``close`` and up to ``CLOSE_TIMEOUT`` s for ``closed``.
* :func:`push_cxone_call`: per perspective (TX = the contact's file, RX = the agent's;
  MIX when mono) a connection sending the initial JSON message then raw μ-law in
  randomly sized binary messages; with a hold, each connection closes at the hold and a
  new one opens after it, as CXone does.
"""

from __future__ import annotations

import random
import time
import uuid
from urllib.parse import urlsplit

import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

from . import audiohook, httpsig, schedule
from .schedule import Audio, Message

#: Seconds Genesys waits for ``opened`` and for ``closed`` (reference client).
OPEN_TIMEOUT = 5.0
CLOSE_TIMEOUT = 10.0
#: Largest message the emulated clients accept from the server.
MAX_MESSAGE_BYTES = 64 * 1024


async def pace(ws, messages: list[Message], speed: float, report, start: int = 0,
               abort_at: int | None = None) -> int:
    """Send ``messages[start:]`` at their times (relative to the first sent), ``speed`` ×
    real time (0: at once), counting into ``report``; returns the index reached
    (``abort_at`` stops early)."""
    first = messages[start].at if start < len(messages) else 0.0
    t0 = trio.current_time()
    for i in range(start, len(messages)):
        if abort_at is not None and i >= abort_at:
            return i
        m = messages[i]
        if speed > 0:
            due = t0 + (m.at - first) / speed
            now = trio.current_time()
            if due > now:
                await trio.sleep_until(due)
            else:
                report.max_late = max(report.max_late, now - due)
        await ws.send_message(m.data)
        report.messages += 1
        report.bytes += len(m.data)
    return len(messages)


def audiohook_headers(url: str, *, api_key: str | None, client_secret: str | None, organization_id: str,
                      session_id: str, correlation_id: str) -> list[tuple[bytes, bytes]]:
    """The upgrade request headers Genesys sends (signed when a client secret is given)."""
    parts = urlsplit(url)
    headers = {"audiohook-organization-id": organization_id, "audiohook-correlation-id": correlation_id,
               "audiohook-session-id": session_id}
    if api_key is not None:
        headers["x-api-key"] = api_key
    if client_secret is not None and api_key is not None:
        authority = parts.netloc
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers.update(httpsig.sign(dict(headers, host=authority), request_target=target or "/",
                                    authority=authority, api_key=api_key,
                                    key=httpsig.decode_secret(client_secret), created=int(time.time())))
    return [(k.encode(), v.encode()) for k, v in headers.items()]


async def push_audiohook_call(url: str, left: Audio, right: Audio | None, call_id: str, report, *,
                              speed: float = 1.0, api_key: str | None = None, client_secret: str | None = None,
                              fmt: str = "PCMU", pause: tuple[float, float] | None = None,
                              organization_id: str = "d7934305-0972-4844-938e-9060eef73d05") -> dict:
    """One AudioHook session streaming ``left`` (external) and ``right`` (internal; mono
    when ``None``). Returns what the server said: ``opened`` media, ``pongs``, ``closed``,
    or ``disconnect`` (reason, info)."""
    session_id = str(uuid.uuid4())
    outcome: dict = {"pongs": 0, "closed": False, "media": None, "disconnect": None}
    headers = audiohook_headers(url, api_key=api_key, client_secret=client_secret, organization_id=organization_id,
                                session_id=session_id, correlation_id=str(uuid.uuid4()))
    client = audiohook.ClientSession(session_id)
    offered = [audiohook.Media(fmt, audiohook.STEREO), audiohook.Media(fmt, ("external",))]
    if right is None:
        offered = offered[1:]
    try:
        async with open_websocket_url(url, extra_headers=headers, max_message_size=MAX_MESSAGE_BYTES) as ws:
            await ws.send_message(client.open(organization_id, call_id, {"id": str(uuid.uuid4()),
                                                                           "ani": "+13175550000", "aniName": "",
                                                                           "dnis": "+18005550100"}, offered))
            with trio.fail_after(OPEN_TIMEOUT):
                reply = client.received(await ws.get_message())
            if reply.get("type") == "disconnect":
                outcome["disconnect"] = reply.get("parameters", {})
                await ws.send_message(client.message("close", {"reason": "disconnect"}))
                with trio.move_on_after(CLOSE_TIMEOUT):
                    while client.received(await ws.get_message()).get("type") != "closed":
                        pass
                    outcome["closed"] = True
                await ws.aclose(1000)
                report.close_code = 1000
                return outcome
            media = (reply.get("parameters") or {}).get("media") or []
            chosen = audiohook.parse_media(media, "opened parameters.media")
            if reply.get("type") != "opened" or len(chosen) != 1 or chosen[0] not in offered:
                await ws.send_message(client.message("error", {"code": 400, "message": "medium not offered"}))
                await ws.send_message(client.message("close", {"reason": "error"}))
                report.error = f"server answered open with {reply.get('type')!r} choosing {media!r}"
                return outcome
            medium = chosen[0]
            outcome["media"] = medium
            stereo = len(medium.channels) == 2
            wire = schedule.audiohook_audio(left, right if stereo else None, medium.format)
            messages = schedule.audiohook_messages(client, wire, width=medium.sample_width,
                                                   channels=len(medium.channels), pause=pause)
            closed = trio.Event()

            async def read() -> None:
                try:
                    while True:
                        obj = client.received(await ws.get_message())
                        if obj.get("type") == "pong":
                            outcome["pongs"] += 1
                        elif obj.get("type") == "disconnect":
                            outcome["disconnect"] = obj.get("parameters", {})
                        elif obj.get("type") == "closed":
                            outcome["closed"] = True
                            closed.set()
                            return
                except ConnectionClosed:
                    closed.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                await pace(ws, messages, speed, report)
                with trio.move_on_after(CLOSE_TIMEOUT):
                    await closed.wait()
                nursery.cancel_scope.cancel()
            await ws.aclose(1000, "end of session")
            report.close_code = 1000
    except ConnectionClosed as exc:
        report.close_code = exc.reason.code if exc.reason else None
    except (HandshakeError, OSError, trio.TooSlowError) as exc:
        report.error = f"{type(exc).__name__}: {exc}"
    return outcome


async def push_cxone_call(url: str, left: Audio, right: Audio | None, contact_id: str, report, *,
                          speed: float = 1.0, seed: int = 0, hold: tuple[float, float] | None = None,
                          headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """One CXone contact: TX (``left``, the contact) and RX (``right``, the agent) on their
    own connections to ``{url}/cxone/<contact_id>``, or one MIX connection when ``right``
    is ``None``. A ``hold`` (``(at, seconds)``) closes each connection at ``at`` s of audio
    and opens a new one ``seconds`` later (real seconds whatever the speed: the gap is
    measured on the wall clock)."""
    target = f"{url.rstrip('/')}/cxone/{contact_id}"
    sides = [("TX", left), ("RX", right)] if right is not None else [("MIX", left)]

    async def side(perspective: str, audio: Audio) -> None:
        rng = random.Random(f"{seed}:{contact_id}:{perspective}")
        connections = schedule.cxone_messages(audio, perspective, contact_id, rng, hold=hold)
        try:
            for i, messages in enumerate(connections):
                if i:
                    await trio.sleep(hold[1])
                async with open_websocket_url(target, extra_headers=headers or [],
                                              max_message_size=MAX_MESSAGE_BYTES) as ws:
                    await pace(ws, messages, speed, report)
                    await ws.aclose(1000, "hold" if i < len(connections) - 1 else "end of contact")
            report.close_code = 1000
        except ConnectionClosed as exc:
            report.close_code = exc.reason.code if exc.reason else None
        except (HandshakeError, OSError) as exc:
            report.error = f"{perspective}: {type(exc).__name__}: {exc}"

    async with trio.open_nursery() as nursery:
        for perspective, audio in sides:
            nursery.start_soon(side, perspective, audio)
