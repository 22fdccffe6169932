"""Scripted fault schedules at random points: a plain resuming reader still ends with the
exact current content, and the emulator's served-byte counter equals what it received."""

from __future__ import annotations

import email.utils
from pathlib import Path
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cxone_emulator_support import bearer, write_wav
from voxpipe_cxone.emulator import CxoneEmulator, EmulatorSettings, FaultAction, FaultKind, run_in_thread

SEGMENT = 4096
MAX_ATTEMPTS = 200
"""Bound on the reference reader's requests per download."""

actions = st.one_of(
    st.builds(FaultAction, kind=st.just(FaultKind.RATE_LIMIT), retry_after=st.just(0.0), retry_after_http_date=st.booleans()),
    st.builds(FaultAction, kind=st.just(FaultKind.SERVER_ERROR), status=st.sampled_from([500, 502, 503, 504])),
    st.builds(FaultAction, kind=st.just(FaultKind.DROP), drop_after=st.integers(0, 3 * SEGMENT), ignore_range=st.booleans()),
    st.builds(FaultAction, kind=st.sampled_from([FaultKind.IGNORE_RANGE, FaultKind.JSON_ERROR, FaultKind.ETAG_CHANGE, FaultKind.NONE])),
)


@pytest.fixture(scope="module")
def emulated(tmp_path_factory) -> Iterator[tuple[CxoneEmulator, httpx.Client, dict[str, str]]]:
    d: Path = tmp_path_factory.mktemp("sched")
    write_wav(d / "rec.wav", 2, seed=21)  # 32 044 bytes: several segments
    emulator = CxoneEmulator(EmulatorSettings(recordings=d))
    with run_in_thread(emulator) as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
        yield emulator, client, bearer(client)
    emulator.close()


def resume_download(client: httpx.Client, headers: dict[str, str]) -> tuple[bytes, int]:
    """A minimal reference reader: ranged segments with If-Range; restarts on a new ETag."""
    buf = bytearray()
    etag: str | None = None
    received = 0
    for _ in range(MAX_ATTEMPTS):
        h = dict(headers)
        h["Range"] = f"bytes={len(buf)}-{len(buf) + SEGMENT - 1}"
        if etag is not None:
            h["If-Range"] = etag
        body = bytearray()
        status = None
        try:
            with client.stream("GET", "/api/v2/recording/download/rec", headers=h) as reply:
                status = reply.status_code
                if reply.status_code in (429, 500, 502, 503, 504):
                    retry = reply.headers.get("retry-after")
                    if reply.status_code == 429:
                        assert retry is not None and (retry.isdigit() or email.utils.parsedate_to_datetime(retry))
                    reply.read()
                    continue
                try:
                    for piece in reply.iter_raw():
                        body += piece
                finally:
                    received += len(body) if not reply.headers["content-type"].startswith("application/json") else 0
                if reply.headers["content-type"] == "application/json":
                    continue  # an error payload, never audio
                if reply.status_code == 200:
                    buf = bytearray(body)  # whole representation (ignored range or changed ETag)
                    etag = reply.headers["etag"]
                    return bytes(buf), received
                assert reply.status_code == 206
                if etag is not None and reply.headers["etag"] != etag:
                    raise AssertionError("206 with a different ETag despite If-Range")
                etag = reply.headers["etag"]
                first, _, rest = reply.headers["content-range"].removeprefix("bytes ").partition("-")
                last, _, total = rest.partition("/")
                assert int(first) == len(buf)
                buf += body
                if len(buf) == int(total):
                    return bytes(buf), received
        except httpx.RemoteProtocolError:
            if status == 200:  # a truncated whole representation restarts the buffer
                buf = bytearray(body)
                etag = reply.headers["etag"]
            else:
                buf += body  # keep the prefix that arrived; resume after it
            continue
    raise AssertionError(f"not complete after {MAX_ATTEMPTS} requests")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schedule=st.lists(actions, max_size=12))
def test_resuming_reader_survives_any_schedule(emulated, schedule):
    emulator, client, headers = emulated
    client.post("/_emulator/reset")
    emulator.faults.schedule(*schedule)
    content, received = resume_download(client, headers)
    current = emulator.store.get("rec")
    assert content == current.path.read_bytes()
    assert client.get("/_emulator/stats").json()["bytes_served"].get("rec", 0) == received
