"""A voxpipe wheel built from this source tree and installed into a fresh virtualenv.

Used by the tests that must see voxpipe as a user does after ``pip install``: no source
tree on ``sys.path``, no editable finder, only what the wheel ships. To stay honest the
wheel is built from a copy of the tracked (and new, not ignored) files, never from the
working tree, whose ``build/`` directory could carry stale files the wheel would otherwise
miss; and dependencies are really installed (from pip's cache or the configured indexes),
so a dependency missing from pyproject.toml fails here too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Seconds any one step (copy, wheel build, install) may take.
STEP_TIMEOUT = 600
#: Files of the source tree never copied into the build (when it is not a git checkout).
_IGNORED = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                  ".hypothesis", "voxpipe-demo", "*.so", "*.o")


@dataclass(frozen=True)
class InstalledVoxpipe:
    """A virtualenv holding the wheel: ``bin`` is its scripts directory."""

    venv: Path
    wheel: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    def env(self) -> dict[str, str]:
        """The environment a user has: no PYTHONPATH pointing into the source tree."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return env

    def pip_install(self, *args: str) -> None:
        """``pip install ARGS`` into this venv (with the test process's pip, as the venv has none)."""
        _run([sys.executable, "-m", "pip", "--python", str(self.python), "install", "-q", *args])


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=STEP_TIMEOUT, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def copy_source_tree(dest: Path) -> Path:
    """Copy the files a fresh clone would have (git's tracked and untracked-not-ignored ones)."""
    try:
        listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT).stdout
    except (RuntimeError, OSError):
        shutil.copytree(ROOT, dest, ignore=_IGNORED)
        return dest
    for name in filter(None, listed.split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def build_and_install(workdir: Path) -> InstalledVoxpipe:
    """Build the wheel from a copy of the tree and install it (with its dependencies) into a new venv."""
    source = copy_source_tree(workdir / "src")
    dist = workdir / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(source)])
    wheel = next(dist.glob("voxpipe-*.whl"))
    venv = workdir / "venv"
    # --without-pip: creating a venv with pip costs seconds; the test process's pip installs into it
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    installed = InstalledVoxpipe(venv=venv, wheel=wheel)
    installed.pip_install(str(wheel))
    return installed
