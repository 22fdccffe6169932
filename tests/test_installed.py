"""voxpipe installed from its wheel into a fresh venv, run from an empty directory."""

from __future__ import annotations

import gzip
import hashlib
import selectors
import signal
import subprocess
import time

import pytest

from wheel_env import ROOT

pytestmark = pytest.mark.wheel

EXAMPLE_RECORDINGS = sorted(p for p in (ROOT / "examples" / "recordings").iterdir() if p.suffix != ".md")
#: Seconds an emulator gets to print its banner.
BANNER_TIMEOUT = 30


def test_the_installed_package_is_the_wheel_not_the_source_tree(installed_voxpipe, tmp_path):
    done = subprocess.run([str(installed_voxpipe.python), "-c",
                           "import voxpipe, voxpipe.resources as r; print(voxpipe.__file__); print(r.examples_dir())"],
                          cwd=tmp_path, env=installed_voxpipe.env(), capture_output=True, text=True, timeout=60)
    module, examples = done.stdout.split()
    assert module.startswith(str(installed_voxpipe.venv)) and examples.startswith(str(installed_voxpipe.venv))


def test_demo_from_an_empty_directory_archives_every_example_byte_identically(installed_voxpipe, tmp_path):
    run = subprocess.run([str(installed_voxpipe.bin / "voxpipe"), "demo"], cwd=tmp_path, env=installed_voxpipe.env(),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "every recording archived byte-identically" in run.stdout
    assert "Try next" in run.stdout and "voxpipe emulate cxone" in run.stdout
    for src in EXAMPLE_RECORDINGS:
        stored = tmp_path / "voxpipe-demo" / "archive" / f"{src.name}.gz"
        assert hashlib.sha256(gzip.decompress(stored.read_bytes())).digest() == hashlib.sha256(src.read_bytes()).digest()


def _banner(installed_voxpipe, cwd, *args: str, expect: str) -> str:
    """Start ``voxpipe ARGS``, read its output until ``expect`` appears, stop it with SIGINT."""
    proc = subprocess.Popen([str(installed_voxpipe.bin / "voxpipe"), *args], cwd=cwd, env=installed_voxpipe.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = ""
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + BANNER_TIMEOUT
            while expect not in seen and time.monotonic() < deadline and proc.poll() is None:
                if sel.select(timeout=0.5):
                    seen += proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        seen += proc.stdout.read()
    return seen


@pytest.mark.parametrize("platform, expect", [
    ("cxone", f"serving {len(EXAMPLE_RECORDINGS)} recordings"),
    ("genesys", f"{len(EXAMPLE_RECORDINGS)} recordings"),
    ("voice", "100001"),
])
def test_emulators_serve_the_shipped_recordings_by_default(installed_voxpipe, tmp_path, platform, expect):
    out = _banner(installed_voxpipe, tmp_path, "emulate", platform, "--port", "0", expect=expect)
    assert expect in out, out
    assert "Traceback" not in out
