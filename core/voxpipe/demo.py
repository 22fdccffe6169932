"""``voxpipe demo``: archive the shipped example recordings end to end.

Starts the CXone emulator in-process on a free loopback port, runs the shipped
``cxone-archive.yaml`` (package data, :mod:`voxpipe.resources`) against it into ``OUT/archive``, then checks every archived
recording byte for byte against its source file (gunzip, SHA-256) and prints a table.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
from pathlib import Path

from rich.console import Console

from .config import load_config
from .errors import ConfigError, PluginError, VoxpipeError
from .plugins import get_registry
from .progress import results_table
from .resources import examples_dir


def run_demo(out: Path) -> int:
    """Run the demo into ``out``; returns the process exit code (0: every recording archived identically)."""
    # the emulator's access log and the server's "Running on" line would drown the table
    quiet = [logging.getLogger(name) for name in ("voxpipe_cxone.emulator", "voxpipe.serving")]
    previous = [log.level for log in quiet]
    for log in quiet:
        log.setLevel(logging.WARNING)
    try:
        return _run_demo(out)
    finally:
        for log, level in zip(quiet, previous):
            log.setLevel(level)


def _run_demo(out: Path) -> int:
    from voxpipe_cxone.emulator.app import CxoneEmulator
    from voxpipe_cxone.emulator.settings import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, EmulatorSettings

    from .cli import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, execute
    from .serving import serve_in_thread

    console = Console()
    try:
        examples = examples_dir()
    except VoxpipeError as exc:
        console.print(f"error: {exc}", style="red")
        return EXIT_CONFIG
    recordings = examples / "recordings"
    archive = out.resolve() / "archive"
    emulator = CxoneEmulator(EmulatorSettings(recordings=recordings, sha256_in_metadata=True))
    with serve_in_thread(emulator) as base_url:
        console.print(f"CXone emulator serving {recordings} at {base_url}", soft_wrap=True)
        environ = {**os.environ, "CXONE_API_BASE": base_url, "CXONE_TOKEN_URL": f"{base_url}/oauth/token",
                   "CXONE_CLIENT_ID": DEMO_CLIENT_ID, "CXONE_CLIENT_SECRET": DEMO_CLIENT_SECRET,
                   "VOXPIPE_ARCHIVE_DIR": str(archive)}
        try:
            config = load_config(examples / "cxone-archive.yaml", get_registry(), environ=environ)
        except ConfigError as exc:
            for problem in exc.problems:
                console.print(problem, style="red")
            return EXIT_CONFIG
        except PluginError as exc:
            console.print(f"error: {exc}", style="red", markup=False)
            return EXIT_CONFIG
        summary = execute(config.pipeline(None))
    identical: dict[str, dict[str, str]] = {}
    all_identical = True
    for result in summary.results:
        source_file = next(iter(recordings.glob(f"{result.id}.*")), None)
        stored = [s["path"] for s in result.stored if s.get("path", "").endswith(".gz")]
        same = False
        if result.ok and source_file is not None and stored:
            with gzip.open(stored[0], "rb") as f:
                same = hashlib.sha256(f.read()).digest() == hashlib.sha256(source_file.read_bytes()).digest()
        identical[result.id] = {"identical": "yes" if same else "NO"}
        all_identical &= same
    console.print(results_table(summary, extra=identical, relative_to=archive))
    ok = summary.ok and all_identical and len(summary.results) > 0
    console.print(f"archive: {archive}  (manifests beside each file)", soft_wrap=True)
    console.print(f"audit log: {summary.state_dir / 'audit.jsonl' if summary.state_dir else '-'}", soft_wrap=True)
    console.print("[green]every recording archived byte-identically[/green]" if ok
                  else "[red]some recordings failed or differ[/red]")
    console.print(next_steps(examples, out), highlight=False, soft_wrap=True)
    return EXIT_OK if ok else EXIT_FAILED


def next_steps(examples: Path, out: Path) -> str:
    """What to try after the demo: real commands, with the installed examples' paths."""
    return "\n".join([
        "",
        "Try next:",
        "  voxpipe emulate cxone --port 8099",
        "      serves the example recordings; export the URLs and credentials it prints",
        f"  cp {examples / 'cxone-archive.yaml'} my-pipeline.yaml",
        "      the pipeline the demo ran; edit it, then:",
        "  voxpipe check my-pipeline.yaml && voxpipe run my-pipeline.yaml",
        "  voxpipe plugins      every source, transform, verifier and sink",
        "  voxpipe --help       every command",
    ])
