"""Archive into object storage: voxpipe's s3 sink against boto3's own ``upload_file``.

Generates WAV recordings (PCM16 noise: audio-like to a compressor, cached under the temp
directory), serves them with the CXone emulator in a subprocess, runs a loopback S3
server (moto, ``python -m moto.server``) in another subprocess, and times, in the same
run and on the same bytes:

* ``voxpipe``: pipeline cxone -> sha256 verifier -> s3 sink (multipart upload, SHA-256
  per part, conditional completion, read-back HeadObject, sidecar), ``concurrency``
  streams; in a child process, so its peak RSS is its own;
* ``boto3 upload_file``: what a user would script instead, the same files from local
  disk, one after another, with boto3's default transfer manager (8 MiB parts, 10
  threads per file); in a child process too.

Before each run the S3 server is reset (it keeps objects in memory). After the voxpipe
run every object is read back and its SHA-256 compared with the source file's: a fast
run that stores a wrong byte fails the benchmark.

Memory: a second voxpipe run with recordings ``--memory-factor`` times larger (same
total) shows the peak RSS does not grow with recording size (one part buffer per
stream, nothing spooled).

Prints MB/s (10^6 bytes/s), the ratio voxpipe / boto3 (goal >= 0.8) and peak RSS. Note:
moto parses, checksums and stores every request in one Python process; on a 2-core
machine it competes with both clients for CPU and is then the bottleneck for both sides.

Run: ``python benchmarks/s3_archive.py [--files 20 --file-mb 25 --concurrency 4]``.
Sends traffic only to 127.0.0.1; credentials are dummies in the children's environment.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
import wave
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from archive_throughput import EmulatorProcess  # noqa: E402  (the shared emulator runner)

BUCKET = "bench-archive"
RATE = 8000
ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
       "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
#: Seconds to wait for the S3 server to answer.
S3_START_TIMEOUT = 30.0

PIPELINE = """
pipelines:
  s3bench:
    concurrency: {concurrency}
    state_dir: {state}
    source:
      type: cxone
      api_base: {base}
      token_url: {base}/oauth/token
      client_id: demo-client
      client_secret: ${{CXONE_SECRET}}
      recordings_file: {ids}
      chunk_size: 4194304
      max_connections: {concurrency}
    verifiers:
      - type: sha256
    sinks:
      - type: s3
        bucket: {bucket}
        endpoint_url: {endpoint}
        addressing_style: path
        key: "{{recording_id}}.{{format}}"
        part_size: {part_size}
        max_connections: {connections}
"""


def make_recordings(directory: Path, files: int, file_mb: float) -> dict[str, str]:
    """Create (or reuse) ``files`` WAVs of ``file_mb`` MB; returns {id: SHA-256 hex}."""
    marker = directory / "digests.json"
    if marker.exists():
        return json.loads(marker.read_text())
    directory.mkdir(parents=True, exist_ok=True)
    digests = {}
    frames = int(file_mb * 1_000_000 / 2)
    for i in range(files):
        rid = f"rec-{i:04d}"
        path = directory / f"{rid}.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(random.Random(i).randbytes(frames * 2))
        digests[rid] = hashlib.sha256(path.read_bytes()).hexdigest()
    marker.write_text(json.dumps(digests))
    return digests


class MotoProcess:
    """``python -m moto.server`` on a free loopback port."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + S3_START_TIMEOUT
        while True:
            try:
                self.reset()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.2)

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST"), timeout=10)

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=ENV["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=ENV["AWS_SECRET_ACCESS_KEY"],
                            config=Config(s3={"addressing_style": "path"}))

    def fresh_bucket(self) -> None:
        """Empty server, the bucket created, and a multipart upload done once (so moto's
        lazily imported code is loaded before anything is timed)."""
        self.reset()
        client = self.client()
        client.create_bucket(Bucket=BUCKET)
        upload = client.create_multipart_upload(Bucket=BUCKET, Key="warm-up")
        etag = client.upload_part(Bucket=BUCKET, Key="warm-up", UploadId=upload["UploadId"], PartNumber=1,
                                  Body=b"w" * 1024)["ETag"]
        client.complete_multipart_upload(Bucket=BUCKET, Key="warm-up", UploadId=upload["UploadId"],
                                         MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
        client.delete_object(Bucket=BUCKET, Key="warm-up")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM: reset at exec, unlike a child's ru_maxrss,
    which keeps the parent's high-water mark from before the fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(argv: list[str]) -> tuple[float, float]:
    """Run this script's ``--child`` mode in a subprocess; returns (seconds, peak RSS MiB)."""
    proc = subprocess.run([sys.executable, __file__, "--child", *argv], env={**os.environ, **ENV},
                          stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child {argv[0]} failed ({proc.returncode}): {proc.stdout}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(result["seconds"]), float(result["peak_rss_mib"])


def child_voxpipe(args: argparse.Namespace) -> None:
    import trio

    from voxpipe.config import parse_config
    from voxpipe.engine import Runner
    from voxpipe.plugins import get_registry

    work = Path(args.work)
    ids = work / "ids.txt"
    ids.write_text("\n".join(sorted(p.stem for p in Path(args.recordings).glob("*.wav"))) + "\n")
    text = PIPELINE.format(concurrency=args.concurrency, state=work / f"state-{time.time_ns()}", base=args.base,
                           ids=ids, bucket=BUCKET, endpoint=args.endpoint, part_size=args.part_size,
                           connections=max(8, args.concurrency * 2))
    cfg = parse_config(textwrap.dedent(text), get_registry(), environ={**os.environ, "CXONE_SECRET": "demo-secret"})
    t0 = time.perf_counter()
    summary = trio.run(Runner(cfg.pipeline(None)).run)
    seconds = time.perf_counter() - t0
    if not summary.ok:
        raise SystemExit(f"voxpipe run failed: {[(r.id, r.message) for r in summary.failed]}")
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak_rss_mib()}))


def child_boto3(args: argparse.Namespace) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=args.endpoint, region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}))
    files = sorted(Path(args.recordings).glob("*.wav"))
    t0 = time.perf_counter()
    for path in files:
        client.upload_file(str(path), BUCKET, path.name)
    print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mib": peak_rss_mib()}))


def check_objects(moto: MotoProcess, digests: dict[str, str]) -> None:
    """Every object read back whole; its SHA-256 must be the source file's."""
    client = moto.client()
    for rid, want in digests.items():
        h = hashlib.sha256()
        for block in client.get_object(Bucket=BUCKET, Key=f"{rid}.wav")["Body"].iter_chunks(1 << 20):
            h.update(block)
        if h.hexdigest() != want:
            raise SystemExit(f"CORRUPT: s3://{BUCKET}/{rid}.wav has sha256 {h.hexdigest()}, source is {want}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--file-mb", type=float, default=25.0, help="MB (10^6 bytes) per recording")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--part-size", type=int, default=16 << 20)
    parser.add_argument("--memory-factor", type=int, default=4,
                        help="the memory run uses recordings this many times larger (same total)")
    parser.add_argument("--child", choices=["voxpipe", "boto3"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--recordings", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "voxpipe":
        return child_voxpipe(args)
    if args.child == "boto3":
        return child_boto3(args)

    cache = Path(tempfile.gettempdir()) / "voxpipe-bench-s3"
    small = cache / f"{args.files}x{args.file_mb}"
    large_files = max(1, args.files // args.memory_factor)
    large = cache / f"{large_files}x{args.file_mb * args.memory_factor}"
    digests = make_recordings(small, args.files, args.file_mb)
    large_digests = make_recordings(large, large_files, args.file_mb * args.memory_factor)
    total = sum((small / f"{rid}.wav").stat().st_size for rid in digests)
    common = ["--concurrency", str(args.concurrency), "--part-size", str(args.part_size)]
    moto = MotoProcess()
    rows = []

    def archive(recordings: Path, want: dict[str, str], work: str) -> tuple[float, float]:
        """A voxpipe run from the emulator serving ``recordings`` into a fresh bucket, checked."""
        emu = EmulatorProcess(recordings)
        try:
            moto.fresh_bucket()
            measured = child(["voxpipe", "--work", work, "--recordings", str(recordings), "--base", emu.base,
                              "--endpoint", moto.endpoint, *common])
            check_objects(moto, want)
            return measured
        finally:
            emu.close()

    try:
        with tempfile.TemporaryDirectory() as work:
            v_seconds, v_rss = archive(small, digests, work)
            moto.fresh_bucket()
            b_seconds, b_rss = child(["boto3", "--recordings", str(small), "--endpoint", moto.endpoint])
            l_seconds, l_rss = archive(large, large_digests, work)
    finally:
        moto.close()
    large_total = sum((large / f"{rid}.wav").stat().st_size for rid in large_digests)
    rows.append((f"voxpipe s3 sink ({args.files} x {args.file_mb:g} MB)", total / v_seconds / 1e6, v_rss))
    rows.append((f"boto3 upload_file ({args.files} x {args.file_mb:g} MB)", total / b_seconds / 1e6, b_rss))
    rows.append((f"voxpipe s3 sink ({large_files} x {args.file_mb * args.memory_factor:g} MB)",
                 large_total / l_seconds / 1e6, l_rss))
    print(f"{total / 1e6:.0f} MB, concurrency {args.concurrency}, part size {args.part_size >> 20} MiB, "
          f"{os.cpu_count()} CPUs (moto shares them)")
    for name, mbps, rss in rows:
        print(f"  {name:<42} {mbps:8.1f} MB/s   peak RSS {rss:7.1f} MiB")
    ratio = rows[0][1] / rows[1][1]
    print(f"ratio voxpipe / boto3 upload_file: {ratio:.2f}x (goal >= 0.8)")
    print(f"peak RSS, recordings {args.memory_factor}x larger: {l_rss:.1f} MiB vs {v_rss:.1f} MiB "
          f"({l_rss / v_rss:.2f}x; flat means ~1)")


if __name__ == "__main__":
    main()
