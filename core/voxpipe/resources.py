"""The shipped examples (pipelines and recordings), found through :mod:`importlib.resources`.

The top-level ``examples/`` directory of the source tree is installed as the package data of
``voxpipe.examples`` (see ``setup.py``), so the same lookup works from a clone, an editable
install and a wheel installed anywhere: ``voxpipe demo`` and ``voxpipe emulate cxone|genesys|voice``
need no working directory and no clone.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from .errors import VoxpipeError

__all__ = ["examples_dir", "example_recordings", "example_pipeline", "EXAMPLE_PIPELINES"]

_PACKAGE = "voxpipe.examples"
#: The example pipeline files that ship with voxpipe.
EXAMPLE_PIPELINES = ("cxone-archive.yaml", "genesys-archive.yaml", "live-voice.yaml")


def examples_dir() -> Path:
    """The directory holding the shipped examples (``*.yaml`` and ``recordings/``).

    :raises VoxpipeError: the package data is missing or not on a file system (e.g. voxpipe
        imported from a zip archive), with what to do about it.
    """
    try:
        root = importlib.resources.files(_PACKAGE)
    except ModuleNotFoundError:
        raise VoxpipeError(f"the shipped examples ({_PACKAGE}) are not installed; reinstall voxpipe "
                           "(pip install --force-reinstall voxpipe)") from None
    path = Path(str(root))
    if not (path / "recordings").is_dir():
        raise VoxpipeError(f"the shipped examples are not readable as files at {root}; install voxpipe "
                           "into a virtualenv (not a zip archive), or pass the recordings directory explicitly")
    return path


def example_recordings() -> Path:
    """The directory of the shipped example recordings (``100001.wav`` ... ``100006.ogg``)."""
    return examples_dir() / "recordings"


def example_pipeline(name: str) -> Path:
    """The path of a shipped example pipeline, e.g. ``example_pipeline("cxone-archive.yaml")``.

    :raises VoxpipeError: no such example (the message lists the shipped ones).
    """
    path = examples_dir() / name
    if name not in EXAMPLE_PIPELINES or not path.is_file():
        raise VoxpipeError(f"no shipped example pipeline {name!r}; shipped: {', '.join(EXAMPLE_PIPELINES)}")
    return path


def recordings_or_examples(ctx, param, value: Path | None) -> Path:
    """A click option callback: the given directory, else the shipped example recordings.

    Used by ``voxpipe emulate cxone|genesys --recordings``, so an emulator started from any
    directory after ``pip install voxpipe`` serves the examples.
    """
    import click

    if value is not None:
        return value
    try:
        return example_recordings()
    except VoxpipeError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
