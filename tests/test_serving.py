"""The shared hypercorn-on-trio server helpers, over a real loopback socket."""

from __future__ import annotations

import httpx
import pytest
import trio

from voxpipe.serving import serve_asgi, serve_in_thread


async def hello(scope, receive, send):
    assert scope["type"] == "http"
    body = f"{scope['method']} {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def test_serve_in_thread_binds_an_ephemeral_port_and_stops():
    with serve_in_thread(hello) as url:
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        assert httpx.get(url + "/a/b").text == "GET /a/b"
    try:
        httpx.get(url + "/", timeout=1)
    except httpx.ConnectError:
        pass
    else:
        raise AssertionError("server still answering after the block")


def test_serve_asgi_reports_url_via_task_status():
    async def main():
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_asgi, hello)
            async with httpx.AsyncClient() as client:
                assert (await client.post(url + "/x")).text == "POST /x"
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_ipv6_loopback_is_bound_in_brackets():
    from voxpipe.serving import hypercorn_config

    assert hypercorn_config("::1", 8080).bind == ["[::1]:8080"]
    assert hypercorn_config("127.0.0.1", 0).bind == ["127.0.0.1:0"]


def test_read_body_joins_messages_stops_at_disconnect_and_bounds_the_size():
    from voxpipe.serving import BodyTooLarge, read_body

    def receiver(*messages):
        it = iter(messages)

        async def receive():
            return next(it)
        return receive

    async def main():
        parts = receiver({"type": "http.request", "body": b"ab", "more_body": True},
                         {"type": "http.request", "body": b"cd", "more_body": False})
        assert await read_body(parts, 4) == b"abcd"
        gone = receiver({"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.disconnect"})
        assert await read_body(gone, 4) == b"ab"
        big = receiver({"type": "http.request", "body": b"abc", "more_body": True},
                       {"type": "http.request", "body": b"de", "more_body": True})
        with pytest.raises(BodyTooLarge, match="exceeds 4 bytes"):
            await read_body(big, 4)

    trio.run(main)
