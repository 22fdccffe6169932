"""How many concurrent live calls one core sustains in real time.

The pipeline (websocket-voice in server mode → gain → noise-gate → wav sink) runs in
this process, pinned to CPU 0. The voice emulator runs in a separate process, pinned to
CPU 1, and pushes N concurrent calls (examples/recordings/*.wav played 3 times: about
30 s each, starts spread over 10 s) at real-time pace, as PCM16 in randomly sized
messages (80..1200 bytes) or as Twilio events (one 20 ms μ-law frame per message). For N
in an increasing sequence it measures:

* lag: per call, wall time since its first chunk minus the audio seconds received,
  at every chunk (max over calls, less the first chunk's own delay); a pipeline that
  keeps up stays within a few frames, one that falls behind grows towards the call's
  length;
* sender lateness: the emulator's worst delay behind its schedule (TCP backpressure
  from a pipeline that cannot keep up shows here);
* drops: failed calls and concealed frames; CPU: pipeline process CPU seconds / wall
  seconds (the ratio against one core, the baseline).

N is sustained when every call is stored, nothing is concealed, max lag < MAX_LAG (0.5 s)
and the sender was never more than MAX_LAG late. Prints one row per N and the largest N sustained.

Capacity: audio seconds processed per pipeline CPU second (threads included), i.e. how
many concurrent calls one core sustains at 100 % busy: the figure that holds when other
processes share the machine (the real-time verdict needs an idle one; "load" is the
1-minute load average at the end of each run).

Protocols (``--protocol``): ``pcm16``, ``twilio`` (one 20 ms μ-law event per message),
``audiohook`` (Genesys AudioHook: open/opened, 20 ms PCMU binary frames, pings, close) and
``cxone`` (CXone Agent Assist: initial JSON then raw μ-law in random 80..480-byte
messages). ``--stereo``: both sides of each call (Twilio both tracks in one connection,
AudioHook interleaved stereo, CXone TX + RX on two connections), stored as stereo WAVs;
capacity then counts call seconds (a stereo second is one call second of two channels).

Usage: python benchmarks/voice_concurrency.py [--protocol pcm16|twilio|audiohook|cxone] [--stereo]
       [--calls 50,100,200,300] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
#: Lag (s) a call may show and still count as keeping up: chunk batching (0.1 s), the
#: jitter buffer (0.04 s), the emulator's own lateness (it is part of the wall clock) and
#: scheduling. A pipeline that cannot keep up shows lag growing without bound instead
#: (seconds, then tens of seconds, over a 30 s call).
MAX_LAG = 0.5


class LagObserver:
    """Per-call lag from the engine's stream_bytes events (RunObserver protocol)."""

    def __init__(self, bytes_per_second: int):
        self.rate = bytes_per_second
        self.first: dict[str, float] = {}
        self.received: dict[str, int] = {}
        self.max_lag = 0.0
        self.results = []

    def run_started(self, pipeline): ...
    def stream_discovered(self, spec): ...
    def discovery_finished(self, count): ...
    def stream_started(self, stream): ...
    def stream_event(self, stream, event, fields): ...
    def run_finished(self, summary): ...

    def stream_bytes(self, stream, n):
        now = time.perf_counter()
        got = self.received.get(stream.id, 0)
        if got == 0:
            self.first[stream.id] = now - n / self.rate  # the first chunk's audio began before it arrived
        got += n
        self.received[stream.id] = got
        lag = (now - self.first[stream.id]) - got / self.rate
        if lag > self.max_lag:
            self.max_lag = lag

    def stream_finished(self, result):
        self.results.append(result)


def pipeline_yaml(calls: int, codec: str, out: Path, buffer_ms: int = 2000, chunk_ms: int = 100) -> str:
    # CXone: a call is stored rejoin_window after its connections end; short here
    extra = "rejoin_window: 0.5" if codec == "cxone" else ""
    return textwrap.dedent(f"""
        pipelines:
          bench:
            concurrency: {calls}
            source:
              type: websocket-voice
              mode: server
              port: 0
              codec: {codec}
              max_calls: {calls}
              pending_calls: {calls}
              buffer_ms: {buffer_ms}
              chunk_ms: {chunk_ms}
              {extra}
            transforms:
              - type: gain
                db: 6
              - type: noise-gate
                threshold_db: -45
            sinks:
              - type: wav
                dir: {out}
        """)


def run_once(calls: int, codec: str, stagger: float, repeat: int = 1, buffer_ms: int = 2000,
             tmp_dir: str | None = None, chunk_ms: int = 100, stereo: bool = False) -> dict:
    from voxpipe.config import parse_config
    from voxpipe.engine import Runner
    from voxpipe.plugins import get_registry

    with tempfile.TemporaryDirectory(dir=tmp_dir) as tmp:
        text = pipeline_yaml(calls, codec, Path(tmp) / "out", buffer_ms, chunk_ms)
        config = parse_config(text, get_registry(), environ={})
        channels = 2 if stereo else 1
        observer = LagObserver(16000 * channels)
        runner = Runner(config.pipeline(None), observer=observer)
        out: dict = {}

        async def main():
            listening = trio.Event()
            urls = []
            runner.services["voice_listening"] = lambda url: (urls.append(url), listening.set())
            async with trio.open_nursery() as nursery:
                async def run():
                    out["summary"] = await runner.run()
                nursery.start_soon(run)
                await listening.wait()
                cmd = [sys.executable, "-m", "voxpipe", "emulate", "voice", "--mode", "client", "--url", urls[0],
                       "--calls", str(calls), "--codec", codec, "--speed", "1", "--stagger", str(stagger),
                       "--repeat", str(repeat)] + (["--stereo"] if stereo else [])
                child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu0, wall0 = time.process_time(), time.perf_counter()
                proc = await trio.run_process(cmd, capture_stdout=True, capture_stderr=True, check=False,
                                              preexec_fn=lambda: os.sched_setaffinity(0, {1}))
                wall = time.perf_counter() - wall0
                out["cpu"] = (time.process_time() - cpu0) / wall
                out["cpu_seconds"] = time.process_time() - cpu0
                child = resource.getrusage(resource.RUSAGE_CHILDREN)
                out["emulator_cpu"] = (child.ru_utime + child.ru_stime - child0.ru_utime - child0.ru_stime) / wall
                out["emulator"] = proc.stdout.decode()
                if proc.returncode:
                    out["emulator_error"] = proc.stderr.decode()[-2000:]

        trio.run(main)
    summary = out["summary"]
    late = [float(m) for m in re.findall(r"max late ([0-9.]+) ms", out["emulator"])]
    concealed = sum(r.metadata.get("quality", {}).get("frames_concealed", 0) for r in summary.results)
    failed = [r for r in summary.results if not r.ok]
    audio_seconds = sum(r.bytes for r in summary.results) / (16000 * channels)
    stored = len(summary.results) - len(failed)
    return {"calls": calls, "stored": stored, "failed": len(failed), "concealed": concealed,
            "max_lag": observer.max_lag, "sender_late": max(late, default=float("nan")) / 1000,
            "cpu": out["cpu"], "capacity": audio_seconds / out["cpu_seconds"], "load": os.getloadavg()[0],
            "emulator_cpu": out["emulator_cpu"], "emulator_error": out.get("emulator_error"),
            "ok": stored == calls and not concealed and observer.max_lag < MAX_LAG
            and len(late) == calls and max(late) / 1000 < MAX_LAG}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", "--codec", dest="codec", choices=["pcm16", "twilio", "audiohook", "cxone"],
                        default="pcm16")
    parser.add_argument("--stereo", action="store_true", help="both sides of each call, stored in stereo")
    parser.add_argument("--calls", default="50,100,150,200,250,300")
    parser.add_argument("--repeat", type=int, default=3, help="play each recording this many times per call "
                        "(3: ~30 s calls, so per-call setup is amortised as over real calls of minutes)")
    parser.add_argument("--stagger", type=float, default=None, help="seconds between call starts "
                        "(default: spread the starts over 10 s, so all N calls overlap for ~20 s with calls "
                        "starting and ending around them)")
    parser.add_argument("--buffer-ms", type=int, default=2000, help="websocket-voice buffer_ms")
    parser.add_argument("--chunk-ms", type=int, default=100, help="websocket-voice chunk_ms")
    parser.add_argument("--tmp-dir", default=None, help="where the WAVs and the ledger go (default: $TMPDIR)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    print(f"voice concurrency, {args.codec}{' stereo' if args.stereo else ''}, calls of ~{10 * args.repeat} s: pipeline pinned to CPU 0, "
          f"emulator to CPU 1; sustained = all stored, 0 concealed, lag < {MAX_LAG}s, sender late < {MAX_LAG}s")
    print(f"{'calls':>6} {'stored':>6} {'concealed':>9} {'max lag s':>9} {'sender late s':>13} "
          f"{'cpu/core':>8} {'emulator cpu':>12} {'capacity':>8} {'load':>5}  sustained")
    best = n_prev = 0
    for n in [int(x) for x in args.calls.split(",")]:
        stagger = args.stagger if args.stagger is not None else 10.0 / n
        r = last = run_once(n, args.codec, stagger, args.repeat, args.buffer_ms, args.tmp_dir, args.chunk_ms,
                            args.stereo)
        print(f"{n:>6} {r['stored']:>6} {r['concealed']:>9} {r['max_lag']:>9.3f} {r['sender_late']:>13.3f} "
              f"{r['cpu']:>8.2f} {r['emulator_cpu']:>12.2f} {r['capacity']:>8.0f} {r['load']:>5.1f}  "
              f"{'yes' if r['ok'] else 'NO'}", flush=True)
        if r["emulator_error"]:
            print("  emulator:", r["emulator_error"].strip().splitlines()[-1])
        if r["ok"] and best == n_prev:
            best = n
        n_prev = n
    goal = 250 if args.stereo else 500
    print(f"largest N sustained: {best} calls ({args.codec}{' stereo' if args.stereo else ''}); goal >= {goal} "
          "per core on a quiet machine")
    print(f"CPU capacity (calls one core sustains = audio seconds / pipeline CPU seconds, at the largest N "
          f"run): {last['capacity']:.0f}")


if __name__ == "__main__":
    main()
