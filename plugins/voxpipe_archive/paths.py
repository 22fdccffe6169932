"""Sans-IO checks for ids taken from requests, and safe resolution inside an archive.

Request paths reach the app percent-decoded once by the ASGI server. Ids are then
checked again here, so that ``..%2f``, a double-encoded ``%252e%252e``, ``%00`` and their
decoded forms are all refused, and so is anything that is not a recording id the
``file``/``gzip`` sinks could have stored (their names only ever contain
``[A-Za-z0-9._@+=-]``, starting with a letter or digit; see
``voxpipe.naming``). File system paths come from manifests, never from the
request, and are resolved with :func:`os.path.realpath` and required to lie inside the
real archive root, outside hidden state (``.voxpipe``) and temporary files (``.*.part``):
a symlink pointing out of the archive therefore resolves outside it and is refused.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from voxpipe.manifest import MANIFEST_SUFFIX
from voxpipe.naming import SAFE_ID

#: Longest id accepted, in characters (the sinks store ids of at most 200).
MAX_ID_LENGTH = 200
#: The ids the storing sinks can store (:data:`voxpipe.naming.SAFE_ID`).
ID_PATTERN = SAFE_ID
#: Directory holding pipeline state inside an archive; never served, never deleted.
STATE_DIR = ".voxpipe"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ENCODED = re.compile(r"%(?:[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4})")


class UnsafeId(ValueError):
    """An id from a request was refused; ``reason`` is a short code, the message names the problem."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class OutsideArchive(ValueError):
    """A path resolves outside the archive root, into its state, or onto a temporary file."""


def check_id(value: str, *, what: str = "recording id") -> str:
    """Return ``value`` if it is a well-formed id, else raise :class:`UnsafeId`.

    ``value`` is the request's value after the ASGI server's single percent-decoding.
    Refused (reason code in brackets): empty [empty], longer than :data:`MAX_ID_LENGTH`
    [too-long], NUL or control characters [control], ``/`` or ``\\`` [separator],
    ``.``/``..`` segments or a leading dot [dot], any remaining percent-encoding such as
    ``%2e``, ``%2f``, ``%00`` (a double-encoded request) [encoded], anything else outside
    :data:`ID_PATTERN` [charset].
    """
    if not value:
        raise UnsafeId(f"{what} is empty", "empty")
    if len(value) > MAX_ID_LENGTH:
        raise UnsafeId(f"{what} is {len(value)} characters long; at most {MAX_ID_LENGTH} are accepted", "too-long")
    if _CONTROL.search(value):
        raise UnsafeId(f"{what} contains a NUL or control character", "control")
    if "/" in value or "\\" in value:
        raise UnsafeId(f"{what} contains a path separator", "separator")
    if value.startswith("."):
        raise UnsafeId(f"{what} starts with '.'", "dot")
    if _ENCODED.search(value):
        raise UnsafeId(f"{what} is still percent-encoded after decoding (double encoding)", "encoded")
    if not ID_PATTERN.match(value):
        raise UnsafeId(f"{what} may only contain letters, digits and . _ @ + = -", "charset")
    return value


def real_root(root: str | os.PathLike[str]) -> Path:
    """The archive root with every symlink resolved (``root`` must be an existing directory).

    :raises NotADirectoryError: ``root`` is not a directory.
    """
    path = Path(os.path.realpath(root))
    if not path.is_dir():
        raise NotADirectoryError(f"archive directory {root} does not exist or is not a directory")
    return path


@dataclass(frozen=True)
class Resolved:
    """A path inside the archive: ``real`` (symlinks resolved) and ``relative`` to the root (POSIX form)."""

    real: Path
    relative: str


def resolve_inside(root: Path, candidate: str | os.PathLike[str]) -> Resolved:
    """Resolve ``candidate`` (absolute, or relative to ``root``) and require it inside ``root``.

    ``root`` must already be real (:func:`real_root`). The resolved path must be below
    ``root`` (not ``root`` itself), must not pass through a dot-directory such as
    :data:`STATE_DIR`, and must not be a temporary ``.*.part`` file.

    :raises OutsideArchive: with a message that names the relative candidate, never the target.
    """
    real = Path(os.path.realpath(root / candidate))
    try:
        rel = real.relative_to(root)
    except ValueError:
        raise OutsideArchive(f"{candidate} resolves outside the archive") from None
    if not rel.parts:
        raise OutsideArchive(f"{candidate} is the archive root itself")
    if any(part.startswith(".") for part in rel.parts):
        raise OutsideArchive(f"{candidate} is hidden state or a temporary file")
    return Resolved(real, rel.as_posix())


def is_hidden(name: str) -> bool:
    """Whether a directory entry is hidden (state, temporary files): never scanned, served or deleted."""
    return name.startswith(".")
