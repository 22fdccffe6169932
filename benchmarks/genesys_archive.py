"""Throughput of a Genesys archive run against the emulator, as a ratio of a plain download.

Generates ``--count`` WAV-sized files of ``--size-mb`` MB of random bytes, serves them with
``voxpipe emulate genesys`` in a subprocess (its own interpreter, as a real API would be),
then measures, ``--repeat`` times each:

* baseline: every result URL fetched with one plain ``httpx`` GET each, ``--concurrency``
  at a time, bytes discarded (the transport's ceiling);
* archive: the whole ``genesys`` pipeline (token, analytics query, metadata, batch job,
  ranged 8 MiB segments, SHA-256 verifier, ``file`` sink with fsync and rename).

Prints MB/s (10^6 bytes/s, median) and archive/baseline. Sends traffic only to 127.0.0.1.
Run: ``python benchmarks/genesys_archive.py``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import trio

from voxpipe.config import parse_config
from voxpipe.engine import Runner
from voxpipe.plugins import get_registry

CLIENT = ("voxpipe-emulator", "emulator-secret")
INTERVAL = "2026-10-01T00:00:00Z/2026-12-31T00:00:00Z"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def result_urls(url: str) -> list[str]:
    async with httpx.AsyncClient(timeout=60) as c:
        token = (await c.post(url + "/oauth/token", auth=CLIENT, data={"grant_type": "client_credentials"})).json()
        h = {"Authorization": "Bearer " + token["access_token"]}
        convs = (await c.post(url + "/api/v2/analytics/conversations/details/query", headers=h,
                              json={"interval": INTERVAL, "paging": {"pageSize": 100, "pageNumber": 1}})).json()
        items = [{"conversationId": c["conversationId"]} for c in convs["conversations"]]
        job = (await c.post(url + "/api/v2/recording/batchrequests", headers=h,
                            json={"batchDownloadRequestList": items})).json()["id"]
        status = (await c.get(f"{url}/api/v2/recording/batchrequests/{job}", headers=h)).json()
        return [r["resultUrl"] for r in status["results"]]


async def baseline(url: str, concurrency: int) -> int:
    urls = await result_urls(url)
    total = 0
    limit = trio.Semaphore(concurrency)

    async def fetch(client: httpx.AsyncClient, u: str) -> None:
        nonlocal total
        async with limit, client.stream("GET", u) as response:
            async for data in response.aiter_raw(1 << 20):
                total += len(data)

    async with httpx.AsyncClient(timeout=60) as client, trio.open_nursery() as nursery:
        for u in urls:
            nursery.start_soon(fetch, client, u)
    return total


def archive(url: str, out: Path, concurrency: int) -> int:
    text = textwrap.dedent(f"""
        pipelines:
          bench:
            concurrency: {concurrency}
            source: {{type: genesys, api_base: "{url}", login_base: "{url}", client_id: {CLIENT[0]},
                      client_secret: {CLIENT[1]}, interval: "{INTERVAL}", poll_interval: 0.01}}
            verifiers: [{{type: sha256}}]
            sinks: [{{type: file, dir: "{out}"}}]
    """)
    summary = trio.run(Runner(parse_config(text, get_registry()).pipeline(None)).run)
    assert summary.ok, [r.message for r in summary.failed]
    return summary.bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rec = Path(tmp) / "rec"
        rec.mkdir()
        for i in range(args.count):
            (rec / f"call{i}.wav").write_bytes(os.urandom(args.size_mb * 1_000_000))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([sys.executable, "-c", "from voxpipe.cli import main; main()", "-q", "emulate", "genesys", "--recordings",
                                   str(rec), "--port", str(port), "--not-ready-polls", "0", "--rate-limit", "100000"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(150):
                try:
                    httpx.get(url + "/")
                    break
                except httpx.TransportError:
                    if server.poll() is not None:
                        raise SystemExit(f"the emulator exited with status {server.returncode}")
                    time.sleep(0.1)
            else:
                raise SystemExit("the emulator did not start within 15 s")
            figures: dict[str, list[float]] = {"baseline": [], "archive": []}
            for i in range(args.repeat):
                t0 = time.perf_counter()
                n = trio.run(baseline, url, args.concurrency)
                figures["baseline"].append(n / (time.perf_counter() - t0) / 1e6)
                t0 = time.perf_counter()
                n = archive(url, Path(tmp) / f"out{i}", args.concurrency)
                figures["archive"].append(n / (time.perf_counter() - t0) / 1e6)
        finally:
            server.terminate()
            server.wait(10)
    base = statistics.median(figures["baseline"])
    for name, values in figures.items():
        mbps = statistics.median(values)
        print(f"{name:9s} {mbps:8.1f} MB/s  ratio {mbps / base:5.2f}")


if __name__ == "__main__":
    main()
