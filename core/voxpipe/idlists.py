"""Lists of ids (recordings, calls, conversations) given in settings or in a file.

A file holds one id per line; blank lines and ``#`` comments are ignored. A malformed
line is reported as ``FILE:LINE`` so the user can fix it, and the list is bounded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .errors import StreamError

#: Longest id accepted (characters).
MAX_ID_LENGTH = 200


def read_ids(given: Iterable[str], path: Path | None, what: str, *, max_ids: int,
             forbidden: str = "") -> list[str]:
    """The ids from ``given`` then from ``path``, each once, in order.

    :param what: the kind of id, for messages (``"recording id"``).
    :param max_ids: most ids accepted.
    :param forbidden: characters an id may not contain (whitespace never is allowed).
    :raises StreamError: reason ``bad-input``: unreadable file, ``FILE:LINE`` of a malformed
        id, or more than ``max_ids`` ids.
    """
    ids = [str(i).strip() for i in given]
    if path is not None:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise StreamError(f"cannot read {what}s file {path}: {exc.strerror}", reason="bad-input") from None
        try:
            text = data.decode("utf-8")
            if "\0" in text:  # valid UTF-8, but no text file holds NUL bytes
                raise UnicodeDecodeError("utf-8", data, data.index(b"\0"), data.index(b"\0") + 1, "NUL byte")
            lines = text.splitlines()
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise StreamError(f"{path}:{line}: not a text file of {what}s (byte {exc.start} is "
                              f"{data[exc.start:exc.start + 1].hex()}); it should hold one {what} per line, UTF-8",
                              reason="bad-input") from None
        for lineno, line in enumerate(lines, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if len(line) > MAX_ID_LENGTH or any(c.isspace() or c in forbidden for c in line):
                raise StreamError(f"{path}:{lineno}: not a {what}: {line[:40]!r}", reason="bad-input")
            ids.append(line)
    unique = list(dict.fromkeys(i for i in ids if i))
    if len(unique) > max_ids:
        raise StreamError(f"{len(unique)} {what}s given; at most {max_ids} per run", reason="bad-input")
    return unique
