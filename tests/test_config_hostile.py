"""Hostile and broken pipeline files end in ``file:line: message`` (exit 2), never a hang or a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from voxpipe.config import load_config, parse_config
from voxpipe.errors import ConfigError
from voxpipe.plugins import get_registry
from voxpipe.yamlsafe import MAX_CONFIG_BYTES, MAX_DEPTH, MAX_NODES

HEAD = "pipelines:\n  p:\n    source: {type: cxone}\n"


def problem(text: str) -> str:
    """The single problem of ``text``; the call must be quick."""
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        parse_config(text, get_registry(), filename="bad.yaml", environ={})
    assert time.monotonic() - start < 5
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        refs = ",".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    lines.append(f"pipelines: *a{levels}")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_quickly_with_its_line():
    text = billion_laughs()
    assert len(text) < 1000  # a few hundred bytes that expand to 10**10 nodes
    msg = problem(text)
    assert msg.startswith("bad.yaml:") and f"more than {MAX_NODES} nodes" in msg


def test_recursive_alias_is_refused():
    assert "recursive alias" in problem("pipelines: &p\n  p: *p\n")


@pytest.mark.parametrize("text", [
    "pipelines: " + "[" * 5000 + "]" * 5000 + "\n",
    "pipelines:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(200)) + "  " * 201 + "x: 1\n",
    "pipelines: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
])
def test_deep_nesting_is_refused(text):
    msg = problem(text)
    assert msg.startswith("bad.yaml:") and f"more than {MAX_DEPTH} levels" in msg


@pytest.mark.parametrize("snippet, words", [
    ("!!python/object/apply:os.system [echo hi]", "tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed"),
    ("!custom 4", "tag '!custom' is not allowed"),
    ("!!binary aGVsbG8=", "is not allowed"),
    ("!!set {a, b}", "is not allowed"),
    ("!!int abc", "'abc' is not a valid int"),
    ("!!float fast", "'fast' is not a valid float"),
    ("!!timestamp 2026-13-45", "is not a valid timestamp"),
    ("!!bool perhaps", "is not a valid bool"),
    ("!!null something", "is not a valid null"),
    ("9" * 5000, "is too large"),
    (str(2**70), "is too large"),
    ("-" + str(2**64), "is too large"),
    ("1.0e+99999", "too large to represent"),
])
def test_tags_typed_scalars_and_huge_numbers_name_their_line(snippet, words):
    msg = problem(HEAD + f"    concurrency: {snippet}\n")
    assert msg.startswith("bad.yaml:4: "), msg
    assert words in msg


def test_explicit_infinity_is_still_a_value():
    with pytest.raises(ConfigError) as info:
        parse_config(HEAD + "    concurrency: .inf\n", get_registry(), filename="bad.yaml", environ={})
    # validation, not the loader, judges it
    assert "bad.yaml:4: pipelines.p.concurrency: Input should be a finite number" in info.value.problems


def test_control_character_is_named_with_its_line():
    msg = problem(HEAD + "    concurrency: 4\x01\n")
    assert msg.startswith("bad.yaml:4: control character #x0001")


def test_yaml_syntax_errors_have_lines():
    assert problem(HEAD + "    concurrency: [1, 2\n").startswith("bad.yaml:")
    assert "undefined alias" in problem(HEAD + "    concurrency: *nope\n")
    assert "single document" in problem(HEAD + "---\nb: 1\n")
    assert problem("pipelines:\n  ? [a, b]\n  : x\n").startswith("bad.yaml:2: ")


def test_non_utf8_file_names_line_and_offset(tmp_path):
    path = tmp_path / "p.yaml"
    raw = (HEAD + "    concurrency: 4 # caf").encode() + b"\xe9\n"
    path.write_bytes(raw)
    with pytest.raises(ConfigError) as info:
        load_config(path, get_registry(), environ={})
    assert info.value.problems == [f"{path}:4: not UTF-8: byte 0xe9 at byte offset {len(raw) - 2}; save the file as UTF-8"]


def test_size_limit_is_checked_before_reading(tmp_path):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as f:
        f.truncate(64 << 30)  # sparse: reading it whole would take minutes and 64 GiB
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(path, get_registry(), environ={})
    assert time.monotonic() - start < 2
    assert info.value.problems == [f"{path}:1: is {64 << 30} bytes; pipeline files may be at most {MAX_CONFIG_BYTES} bytes"]


def test_directory_and_device_are_refused(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, get_registry(), environ={})
    assert info.value.problems[0].startswith(f"{tmp_path}:1: ") and "directory" in info.value.problems[0]
    with pytest.raises(ConfigError) as info:
        load_config("/dev/zero", get_registry(), environ={})
    assert info.value.problems == ["/dev/zero:1: is a character device, not a regular file"]


def run_cli(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "voxpipe", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("command", ["check", "run"])
def test_fifo_is_refused_without_blocking(tmp_path, command):
    fifo = tmp_path / "pipeline.yaml"
    os.mkfifo(fifo)  # nobody ever writes: opening it for reading in blocking mode would hang forever
    proc = run_cli(command, str(fifo))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"{fifo}:1: is a FIFO (named pipe), not a regular file"


def test_cli_exit_2_and_no_traceback_for_a_bomb_and_a_missing_file(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(billion_laughs())
    proc = run_cli("check", str(path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"{path}:") and "alias bomb" in proc.stderr
    proc = run_cli("check", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"{tmp_path / 'missing.yaml'}:1: cannot read: No such file or directory"
