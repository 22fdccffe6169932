"""Throughput of the CXone emulator over loopback, measured with curl.

Serves one generated WAV (``--size-mb``, default 200 MB) and downloads it with
``curl -s -o /dev/null -w '%{speed_download}'`` from:

* the emulator's download endpoint (one 200),
* the emulator's download endpoint in 8 MiB ranged segments (206s, one connection each),
* the emulator's chunked streaming endpoint,
* the baseline: Python's ``http.server`` serving the same file in a subprocess.

Prints MB/s (10^6 bytes/s, median of ``--repeat`` runs) and each figure as a
ratio of the baseline. Run: ``python benchmarks/cxone_emulator_throughput.py``.
Needs curl on PATH. Sends traffic only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import wave
from pathlib import Path

from voxpipe_cxone.emulator import CxoneEmulator, EmulatorSettings, run_in_thread

SEGMENT = 8 << 20


def make_wav(path: Path, size_mb: int) -> int:
    block = os.urandom(4 << 20)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(48000)
        for _ in range(max(1, size_mb * 1_000_000 // len(block))):
            w.writeframes(block)
    return path.stat().st_size


def curl(url: str, headers: dict[str, str]) -> tuple[float, int]:
    args = ["curl", "-s", "-f", "-o", "/dev/null", "-w", "%{speed_download} %{size_download}"]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    out = subprocess.run([*args, url], check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1])


def timed_segments(url: str, headers: dict[str, str], size: int) -> float:
    start = time.perf_counter()
    for first in range(0, size, SEGMENT):
        last = min(size, first + SEGMENT) - 1
        _, got = curl(url, {**headers, "Range": f"bytes={first}-{last}"})
        assert got == last - first + 1
    return size / (time.perf_counter() - start)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    if shutil.which("curl") is None:
        sys.exit("curl is not on PATH")
    with tempfile.TemporaryDirectory(prefix="voxpipe-bench-") as tmp:
        d = Path(tmp)
        size = make_wav(d / "big.wav", opts.size_mb)
        emulator = CxoneEmulator(EmulatorSettings(recordings=d))
        results: dict[str, float] = {}
        with run_in_thread(emulator) as base_url:
            body = urllib.request.urlopen(
                urllib.request.Request(
                    f"{base_url}/oauth/token",
                    data=b"grant_type=client_credentials&client_id=demo-client&client_secret=demo-secret",
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
            ).read()
            auth = {"Authorization": f"Bearer {json.loads(body)['access_token']}"}
            runs = {"download": [], "ranged 8 MiB": [], "stream": []}
            for _ in range(opts.repeat):
                speed, got = curl(f"{base_url}/api/v2/recording/download/big", auth)
                assert got == size
                runs["download"].append(speed)
                runs["ranged 8 MiB"].append(timed_segments(f"{base_url}/api/v2/recording/download/big", auth, size))
                speed, got = curl(f"{base_url}/api/v2/recordings/big/stream?offsets=0", auth)
                assert got == size
                runs["stream"].append(speed)
            served = emulator.stats.bytes_served("big")
        emulator.close()
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(d)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(50):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            runs["baseline http.server"] = [curl(f"http://127.0.0.1:{port}/big.wav", {})[0] for _ in range(opts.repeat)]
        finally:
            server.terminate()
            server.wait(10)
        for name, speeds in runs.items():
            results[name] = statistics.median(speeds)
        baseline = results["baseline http.server"]
        print(f"file: {size} bytes; emulator served {served} recording bytes in total")
        for name, speed in results.items():
            print(f"{name:22s} {speed / 1e6:8.1f} MB/s   ratio to baseline {speed / baseline:5.2f}")


if __name__ == "__main__":
    main()
