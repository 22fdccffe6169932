"""Reading YAML pipeline files from untrusted disks without hanging or crashing.

A pipeline file is small and written by people, but the loader must also survive files
that are hostile or broken: a FIFO or device given as the file, a multi-gigabyte file,
non-UTF-8 bytes, control characters, nesting thousands of levels deep, numbers of a
million digits, unknown or malformed tags, and the "billion laughs" alias bomb (a few
hundred bytes whose aliases expand to billions of nodes). Every such input ends in a
:class:`YamlProblem` carrying the 1-based line it was found on; nothing here raises
anything else for bad input.

- :func:`read_file` opens without blocking (``O_NONBLOCK``: a FIFO with no writer would
  otherwise block ``open`` forever), refuses anything that is not a regular file, and
  checks the size from ``fstat`` before reading (then reads at most the limit + 1 bytes,
  in case the file grows).
- :func:`decode` requires UTF-8 (an optional BOM is dropped) and names the line and
  byte offset of the first invalid byte.
- :func:`compose` composes one document with PyYAML's safe loader, refusing nesting
  deeper than :data:`MAX_DEPTH` while composing (before Python's recursion limit is
  reached) and tags outside :data:`ALLOWED_TAGS`.
- :func:`scalar_value` resolves a scalar (YAML 1.1 safe rules) and turns malformed typed
  scalars (``!!int abc``, ``!!timestamp 2026-13-45``) and out-of-range numbers into problems.
- :class:`NodeBudget` counts nodes visited while a caller expands aliases, so an alias
  bomb is refused after :data:`MAX_NODES` nodes, and a self-referencing alias at once.
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Any

import yaml

#: Largest pipeline file read, in bytes (real ones are a few KiB).
MAX_CONFIG_BYTES = 4 * 1024 * 1024
#: Deepest nesting of mappings and sequences (pipelines use about 6 levels).
MAX_DEPTH = 64
#: Most nodes a document may expand to once aliases are followed (real files have hundreds).
MAX_NODES = 200_000
#: Largest integer magnitude accepted (a signed 64-bit value); bigger ones are typos or attacks.
MAX_INT = 2**63 - 1
#: Tags a pipeline file may use, explicitly or implicitly (YAML 1.1 core types).
ALLOWED_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in
                         ("str", "int", "float", "bool", "null", "map", "seq", "timestamp"))
_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory", stat.S_IFLNK: "a symbolic link"}


class YamlProblem(ValueError):
    """Bad input: ``line`` (1-based) and a message for ``file:line: message``."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


def file_kind(mode: int) -> str:
    """Words for a non-regular file type (``a FIFO (named pipe)``, ``a directory``, ...)."""
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def read_file(path: str | os.PathLike[str], *, limit: int = MAX_CONFIG_BYTES) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them.

    :raises YamlProblem: (line 1) it cannot be opened, is not a regular file (FIFO,
        device, socket, directory), or is larger than ``limit`` bytes.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except IsADirectoryError:
        raise YamlProblem(1, "is a directory, not a pipeline file") from None
    except OSError as exc:
        raise YamlProblem(1, f"cannot read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise YamlProblem(1, f"is {file_kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise YamlProblem(1, f"is {st.st_size} bytes; pipeline files may be at most {limit} bytes")
        os.set_blocking(fd, True)
        chunks, total = [], 0
        while total <= limit:
            block = os.read(fd, min(1 << 20, limit + 1 - total))
            if not block:
                break
            chunks.append(block)
            total += len(block)
    except OSError as exc:
        raise YamlProblem(1, f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if total > limit:
        raise YamlProblem(1, f"grew past {limit} bytes while being read; pipeline files may be at most {limit} bytes")
    return b"".join(chunks)


def decode(raw: bytes) -> str:
    """UTF-8 text of ``raw`` (a leading BOM dropped).

    :raises YamlProblem: an invalid byte, naming its line and byte offset.
    """
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise YamlProblem(line, f"not UTF-8: byte 0x{raw[exc.start]:02x} at byte offset {exc.start}; "
                                "save the file as UTF-8") from None


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses nesting deeper than :data:`MAX_DEPTH` and unknown tags."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):  # type: ignore[override]
        event = self.peek_event()
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            if self._depth >= MAX_DEPTH:
                raise YamlProblem(event.start_mark.line + 1, f"nested more than {MAX_DEPTH} levels deep")
            self._depth += 1
            try:
                node = super().compose_node(parent, index)
            finally:
                self._depth -= 1
        else:
            node = super().compose_node(parent, index)
        if node.tag not in ALLOWED_TAGS:
            raise YamlProblem(node.start_mark.line + 1, f"tag {node.tag!r} is not allowed in a pipeline file "
                                                        f"(only plain strings, numbers, booleans, null, lists and mappings)")
        return node


def compose(text: str) -> yaml.Node | None:
    """The node tree of the single YAML document in ``text`` (``None`` when empty).

    :raises YamlProblem: any YAML error (syntax, control characters, several documents,
        undefined alias), nesting deeper than :data:`MAX_DEPTH`, a disallowed tag.
    """
    loader = None
    try:
        loader = _BoundedLoader(text)  # the reader checks for control characters right here
        return loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or str(exc)
        if exc.context and exc.problem:
            problem = f"{exc.context}, {exc.problem}"
        raise YamlProblem(mark.line + 1 if mark else 1, f"YAML syntax error: {problem}") from None
    except yaml.reader.ReaderError as exc:  # control or non-printable characters; position is a character index
        line = text.count("\n", 0, max(0, exc.position)) + 1
        what = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        raise YamlProblem(line, f"control character {what} is not allowed in YAML "
                                f"(character offset {exc.position})") from None
    except yaml.YAMLError as exc:
        raise YamlProblem(1, f"YAML error: {exc}") from None
    except RecursionError:  # defensive: the depth bound should stop nesting long before this
        raise YamlProblem(1, f"nested too deeply (more than {MAX_DEPTH} levels)") from None
    finally:
        if loader is not None:
            loader.dispose()


_INT_TAG = "tag:yaml.org,2002:int"
_MAX_INT_CHARS = 100  # MAX_INT has 19 digits; allow underscores, signs, 0b/0x forms, stop 4300-digit parsing
_NULL_TAG = "tag:yaml.org,2002:null"
_NULLS = frozenset(("", "~", "null", "Null", "NULL"))
_EXPLICIT_INF = frozenset((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF"))


def scalar_value(node: yaml.ScalarNode) -> Any:
    """The Python value of a scalar under YAML 1.1 safe rules.

    :raises YamlProblem: the tag is not allowed, the scalar does not fit its tag
        (``!!int abc``), an integer beyond :data:`MAX_INT` in magnitude or with too many
        digits, or a float literal too large to represent (``1e999``; ``.inf`` itself is allowed).
    """
    line = node.start_mark.line + 1
    if node.tag not in ALLOWED_TAGS:
        raise YamlProblem(line, f"tag {node.tag!r} is not allowed in a pipeline file")
    loader = yaml.SafeLoader("")
    try:
        if node.tag == _INT_TAG and len(node.value) > _MAX_INT_CHARS:
            raise YamlProblem(line, f"number {_short(node.value)} is too large (at most {MAX_INT})")
        if node.tag == _NULL_TAG and node.value not in _NULLS:
            raise ValueError("only ~, null or nothing is a null")  # PyYAML would quietly drop the text
        value = loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError, LookupError, ArithmeticError) as exc:
        kind = node.tag.rsplit(":", 1)[-1]
        detail = exc.problem if isinstance(exc, yaml.MarkedYAMLError) and exc.problem else str(exc)
        raise YamlProblem(line, f"{_short(node.value)!s} is not a valid {kind}: {detail}") from None
    finally:
        loader.dispose()
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) > MAX_INT:
        raise YamlProblem(line, f"number {_short(node.value)} is too large (at most {MAX_INT})")
    if isinstance(value, float) and math.isinf(value) and node.value.strip() not in _EXPLICIT_INF:
        raise YamlProblem(line, f"number {_short(node.value)} is too large to represent")
    return value


def _short(text: str, limit: int = 40) -> str:
    text = str(text)
    return repr(text if len(text) <= limit else text[:limit] + "…")


class NodeBudget:
    """Counts nodes as a caller walks a composed tree following aliases.

    :meth:`enter` is called for each node visited (an aliased node once per alias) and
    raises :class:`YamlProblem` past :data:`MAX_NODES` nodes, past :data:`MAX_DEPTH`
    levels, or when a node contains itself (a recursive alias); :meth:`leave` after.
    """

    def __init__(self, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH):
        self.max_nodes, self.max_depth = max_nodes, max_depth
        self.nodes = 0
        self._open: list[int] = []
        self._open_set: set[int] = set()

    def enter(self, node: yaml.Node) -> None:
        line = node.start_mark.line + 1
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise YamlProblem(line, f"aliases expand the document to more than {self.max_nodes} nodes "
                                    "(an alias bomb?); refused")
        if id(node) in self._open_set:
            raise YamlProblem(line, "an alias refers to a node that contains it (recursive alias)")
        if len(self._open) >= self.max_depth:
            raise YamlProblem(line, f"aliases nest the document more than {self.max_depth} levels deep")
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            self._open.append(id(node))
            self._open_set.add(id(node))
        else:
            self._open.append(0)

    def leave(self, node: yaml.Node) -> None:
        key = self._open.pop()
        if key:
            self._open_set.discard(key)

