"""ASGI answers of the Genesys emulator: JSON, the API's error schema, S3-style XML errors,
and byte ranges (RFC 9110 §14) of media. No application state."""

from __future__ import annotations

import json
import uuid
from typing import Any, Awaitable, Callable

Send = Callable[[dict], Awaitable[None]]

#: Bytes per ASGI body message when serving media.
SEND_SIZE = 1 << 20


async def serve_bytes(send: Send, method: str, data: bytes, content_type: str, etag: str,
                      headers: dict[str, str]) -> None:
    """``data`` as a GET/HEAD answer: 200, or 206 for one satisfiable ``Range`` (honouring
    ``If-Range`` against ``etag``), or 416."""
    size = len(data)
    base = [("content-type", content_type), ("etag", etag), ("accept-ranges", "bytes")]
    first, last = 0, size - 1
    status = 200
    spec = headers.get("range")
    if spec is not None and (headers.get("if-range") in (None, etag)):
        parsed = parse_range(spec, size)
        if parsed == "unsatisfiable":
            return await raw(send, 416, b"", base + [("content-range", f"bytes */{size}")])
        if parsed is not None:
            first, last = parsed
            status = 206
            base.append(("content-range", f"bytes {first}-{last}/{size}"))
    length = last - first + 1
    await send({"type": "http.response.start", "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in base + [("content-length", str(length))]]})
    if method == "HEAD":
        return await send({"type": "http.response.body", "body": b""})
    for offset in range(first, last + 1, SEND_SIZE):
        end = min(offset + SEND_SIZE, last + 1)
        await send({"type": "http.response.body", "body": data[offset:end], "more_body": end <= last})
    if length == 0:
        await send({"type": "http.response.body", "body": b""})


def parse_range(spec: str, size: int) -> tuple[int, int] | str | None:
    """One ``bytes=`` range (RFC 9110 §14.1.2) → (first, last); None to ignore the header."""
    unit, _, ranges = spec.partition("=")
    if unit.strip().lower() != "bytes" or "," in ranges:
        return None  # other units and multiple ranges: answer 200 with the whole body (allowed by RFC 9110)
    first_s, dash, last_s = ranges.strip().partition("-")
    if not dash:
        return None
    try:
        if first_s == "":
            n = int(last_s)
            if n == 0:
                return "unsatisfiable"
            return max(0, size - n), size - 1
        first = int(first_s)
        last = int(last_s) if last_s else size - 1
    except ValueError:
        return None
    if first >= size:
        return "unsatisfiable"
    if first > last:
        return None
    return first, min(last, size - 1)


async def raw(send: Send, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
    headers = headers + [("content-length", str(len(body)))]
    await send({"type": "http.response.start", "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers]})
    await send({"type": "http.response.body", "body": body})


async def json_answer(send: Send, status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> None:
    await raw(send, status, json.dumps(payload).encode(), [("content-type", "application/json")] + (headers or []))


async def error_answer(send: Send, status: int, message: str, code: str,
                       headers: list[tuple[str, str]] | None = None) -> None:
    """The API's error body: ``{message, code, status, contextId, details, errors}`` (a fresh
    ``contextId`` per answer, as Genesys gives each request its own)."""
    await json_answer(send, status, {"message": message, "code": code, "status": status,
                                     "contextId": str(uuid.uuid4()), "details": [], "errors": []}, headers)


async def s3_error(send: Send, code: str, message: str) -> None:
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
    await raw(send, 403, body.encode(), [("content-type", "application/xml")])
