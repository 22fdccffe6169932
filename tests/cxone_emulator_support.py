"""Helpers shared by the CXone emulator tests: tiny WAV files, a fake clock, a client."""

from __future__ import annotations

import random
import wave
from pathlib import Path

import httpx

T0 = 1_700_000_000.0


def write_wav(path: Path, seconds: int, *, rate: int = 8000, channels: int = 1, seed: int = 0) -> bytes:
    """Write a 16-bit PCM WAV of pseudo-random samples; return the file's bytes."""
    frames = random.Random(seed).randbytes(seconds * rate * channels * 2)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return path.read_bytes()


class FakeClock:
    """Unix-seconds clock the tests move by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def client_credentials(client: httpx.Client, *, secret: str = "demo-secret", scope: str | None = "recording:download recording:read") -> httpx.Response:
    data = {"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": secret}
    if scope is not None:
        data["scope"] = scope
    return client.post("/oauth/token", data=data)


def bearer(client: httpx.Client) -> dict[str, str]:
    reply = client_credentials(client)
    reply.raise_for_status()
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}
