"""Errors that say what to do: values, expected forms and units; clean plugin conflicts;
quiet broken pipes; a binary ids file named."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from cxone_env import emulator, ids_of, pipeline_yaml, recordings_dir
from voxpipe import hookimpl
from voxpipe.cli import cli
from voxpipe.config import parse_config
from voxpipe.errors import ConfigError
from voxpipe.filestore import FileStoreSink
from voxpipe.plugins import get_plugin_manager, get_registry
from voxpipe.settings import parse_byte_size
from voxpipe_cxone.emulator.settings import DEMO_CLIENT_SECRET

BASE = """
pipelines:
  p:
    concurrency: {concurrency}
    checkpoint_bytes: {checkpoint}
    source:
      type: cxone
      api_base: http://127.0.0.1:9
      token_url: http://127.0.0.1:9/t
      client_id: a
      client_secret: {secret}
      recordings: ["1"]
      chunk_size: {chunk}
    sinks:
      - {{type: gzip, dir: ./a, on_failure: {on_failure}}}
"""


def problems(**values) -> list[str]:
    fields = {"concurrency": 4, "checkpoint": "2MiB", "secret": "s", "chunk": 65536, "on_failure": "delete", **values}
    try:
        parse_config(BASE.format(**fields), get_registry(), filename="p.yaml")
    except ConfigError as exc:
        return exc.problems
    return []


def test_sizes_accept_units_and_refuse_ambiguous_shorthands():
    assert parse_byte_size("64KiB") == 65536 and parse_byte_size("8 MiB") == 8 << 20 and parse_byte_size("1GB") == 10**9
    assert parse_byte_size(65536) == 65536 and parse_byte_size("65536") == 65536
    cfg = parse_config(BASE.format(concurrency=4, checkpoint="2MiB", secret="s", chunk="64KiB", on_failure="delete"),
                       get_registry())
    assert cfg.pipeline(None).source.settings.chunk_size == 65536
    assert cfg.pipeline(None).settings.checkpoint_bytes == 2 << 20
    assert problems(chunk='"64k"') == ['p.yaml:13: pipelines.p.source.chunk_size: "64k" is not a size in bytes; '
                                       'write 65536 or 64KiB']
    assert problems(chunk="lots")[0].endswith('"lots" is not a size in bytes; write a whole number of bytes (65536) '
                                              'or a number with a unit: B, KiB, MiB, GiB, TiB, kB, MB, GB, TB (64KiB, 8MiB)')
    assert problems(chunk=1024) == ["p.yaml:13: pipelines.p.source.chunk_size: 1024 is below the minimum of 65536 "
                                    "bytes (inclusive)"]


def test_type_errors_name_the_value_and_the_expected_form():
    assert problems(concurrency="four") == ['p.yaml:4: pipelines.p.concurrency: "four" is not a whole number']
    assert problems(concurrency=0) == ["p.yaml:4: pipelines.p.concurrency: 0 is below the minimum of 1 (inclusive)"]
    assert problems(on_failure="keep") == ["p.yaml:15: pipelines.p.sinks[0].on_failure: \"keep\" is not one of "
                                           "'delete' or 'quarantine'"]


def test_a_secret_given_with_the_wrong_type_is_not_quoted_back():
    [problem] = problems(secret="[hunter2, x]")
    assert "hunter2" not in problem and "the value is not text" in problem


class Clash(FileStoreSink):
    """A third-party sink that claims the first-party type name."""

    type = "gzip"


class ClashPlugin:
    @hookimpl
    def register_sinks(self, register):
        register(Clash)


def test_two_plugins_with_one_type_name_give_a_clean_error(tmp_path):
    config = tmp_path / "p.yaml"
    config.write_text(BASE.format(concurrency=4, checkpoint=1 << 21, secret="s", chunk=65536, on_failure="delete"))
    pm = get_plugin_manager()
    plugin = ClashPlugin()
    pm.register(plugin, name="clashing")  # not the register_plugin fixture: it builds the registry itself
    try:
        for args in (["check", str(config)], ["run", str(config)], ["schema"]):
            result = CliRunner().invoke(cli, args)
            assert result.exit_code == 2, (args, result.output)
            assert result.exception is None or isinstance(result.exception, SystemExit)
            assert "sink type 'gzip' is registered by both plugin 'files' (voxpipe_files" in result.output
            assert "plugin 'clashing' (test_errors_that_help.Clash)" in result.output
    finally:
        pm.unregister(plugin)


def test_run_json_into_head_exits_quietly(tmp_path):
    recs = recordings_dir(tmp_path)
    with emulator(recs) as (_, base):
        config = tmp_path / "p.yaml"
        config.write_text(pipeline_yaml(base, ids_of(recs), tmp_path / "out", tmp_path / "state", concurrency=1))
        done = subprocess.run(f"{sys.executable} -m voxpipe run --json --no-progress {config} | head -n 1; "
                              "echo status=${PIPESTATUS[0]} >&2", shell=True, executable="/bin/bash",
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "CXONE_SECRET": DEMO_CLIENT_SECRET})
    assert len(done.stdout.splitlines()) == 1 and done.stdout.startswith('{"id":')
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    assert "status=0" in done.stderr or "status=1" in done.stderr


def test_a_binary_ids_file_is_named_in_its_error(tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"100001\n100002\n\x89PNG\r\n\x1a\n\x00\x00")
    config = tmp_path / "p.yaml"
    config.write_text(pipeline_yaml("http://127.0.0.1:9", ["1"], tmp_path / "out", tmp_path / "state")
                      .replace("recordings: ['1']", f"recordings_file: {ids}"))
    done = subprocess.run([sys.executable, "-m", "voxpipe", "run", "--no-progress", str(config)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "CXONE_SECRET": "x"})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{ids}:3: not a text file of recording ids (byte 14 is 89)" in done.stderr
