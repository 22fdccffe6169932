"""YAML pipeline files: loading, ``${VAR}`` interpolation and validation with line numbers.

One file may define several named pipelines::

    pipelines:
      nightly:
        concurrency: 4
        source: {type: cxone, api_base: "${CXONE_API}", ...}
        transforms: []
        verifiers: [{type: sha256}]
        sinks: [{type: gzip, dir: ./archive}]

Every problem is reported as ``FILE:LINE: key.path: message`` and all problems are
reported at once (:class:`voxpipe.errors.ConfigError`), so ``voxpipe check`` lists every
mistake in one pass.

Interpolation: ``${NAME}`` is replaced by the environment variable ``NAME`` (a missing
one is an error naming it); ``${NAME:-default}`` uses ``default`` when unset or empty;
``$$`` stands for a literal ``$``. Interpolation applies to scalar values, not keys.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import pydantic
from pydantic import SecretStr, model_validator
import yaml

from .errors import ConfigError
from .plugins import ComponentInfo, Registry
from .settings import ByteSize, Settings, setting
from .yamlsafe import MAX_CONFIG_BYTES  # noqa: F401  (re-exported: callers read the limit here)
from .yamlsafe import NodeBudget, YamlProblem, compose, decode, read_file, scalar_value

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")

Path_ = tuple[str | int, ...]


class PipelineSettings(Settings):
    """Pipeline-level settings (besides its components)."""

    concurrency: int = setting(4, description="Streams (recordings or calls) in flight at once.", ge=1, le=1024)
    audit_log: Path | None = setting(None, description="JSON Lines audit log path; default `<state_dir>/audit.jsonl`.",
                                     example="./archive/audit.jsonl")
    state_dir: Path | None = setting(None, description="Directory for pipeline state (audit log, ledger); default "
                                     "`.voxpipe/<pipeline>` inside the first sink's directory, else under the working directory.",
                                     example="./archive/.voxpipe")
    max_stream_attempts: int = setting(3, description="Attempts per stream when a retryable failure restarts it from byte 0.",
                                       ge=1, le=20)
    ledger: str | None = setting(None, description="Where every recording's state is kept (skips what is stored, "
                                 "retries what failed, resumes partial downloads): a SQLite file path (default "
                                 "`<state_dir>/ledger.sqlite3`), or a `postgresql://` URL shared by several workers "
                                 "(`pip install 'voxpipe[postgres]'`; put the password in a `${VAR}`). See "
                                 "docs/scaling.md.", example="${VOXPIPE_LEDGER_URL}")
    lease_seconds: float = setting(60.0, description="Shared ledger: seconds a worker holds a claimed recording "
                                   "without renewing it; a dead worker's recordings are taken over this long after "
                                   "its last heartbeat.", ge=5, le=3600)
    heartbeat_seconds: float = setting(20.0, description="Shared ledger: seconds between a worker's lease renewals "
                                       "(at most half of `lease_seconds`).", ge=1, le=1800)
    max_attempts_total: int = setting(5, description="Attempts per recording across runs; a recording that failed this "
                                      "often is reported failed without another try.", ge=1, le=1000)
    checkpoint_bytes: ByteSize = setting(2 << 20, description="Bytes between resume checkpoints (data fsynced and recorded in "
                                    "the ledger); a crash re-fetches at most this plus what was in flight.",
                                    ge=64 << 10, le=1 << 30)
    on_overlap: Literal["exit", "wait"] = setting("exit", description="SQLite ledger: what a run does when "
                                                 "another run of this pipeline is still going on this machine: "
                                                 "`exit` at once (exit status 3), or `wait` up to `overlap_wait` "
                                                 "seconds for it to end.")
    overlap_wait: float = setting(3600.0, description="Seconds `on_overlap: wait` waits for the other run before "
                                  "giving up (exit status 3).", ge=0, le=7 * 86400)
    shutdown_grace: float = setting(5.0, description="Seconds in-flight streams get to finish after SIGINT/SIGTERM "
                                    "before they are aborted.", ge=0, le=600)
    phone_numbers: Literal["keep", "hash", "drop"] = setting(
        "keep", description="What happens to the phone numbers (ANI, DNIS) a platform reports about a recording, "
        "before any component, manifest, report or webhook sees them: `keep` them, replace them by a keyed "
        "HMAC-SHA256 hash (`hash`: equal numbers stay joinable, unreadable without the key), or `drop` them.")
    phone_number_key: SecretStr | None = setting(None, description="Secret key for `phone_numbers: hash` "
                                                 "(give it as `${VAR}`).", example="${PHONE_NUMBER_KEY}")

    @model_validator(mode="after")
    def _check_phone_policy(self) -> "PipelineSettings":
        if self.phone_numbers == "hash" and self.phone_number_key is None:
            raise ValueError("phone_numbers: hash needs phone_number_key (a secret, e.g. ${PHONE_NUMBER_KEY})")
        return self

    @pydantic.model_validator(mode="after")
    def _check_lease_terms(self) -> "PipelineSettings":
        from .ledger.leases import check_terms

        check_terms(self.lease_seconds, self.heartbeat_seconds)
        return self


@dataclass(frozen=True)
class ComponentConfig:
    """One component of a pipeline, validated: its registry entry and settings."""

    info: ComponentInfo
    settings: Settings
    where: str  # "file:line" of the component's mapping, for runtime messages

    @property
    def type(self) -> str:
        return self.info.type


@dataclass(frozen=True)
class PipelineConfig:
    """A validated pipeline."""

    name: str
    settings: PipelineSettings
    source: ComponentConfig
    transforms: tuple[ComponentConfig, ...] = ()
    verifiers: tuple[ComponentConfig, ...] = ()
    sinks: tuple[ComponentConfig, ...] = ()


@dataclass
class ConfigFile:
    """A validated pipeline file: pipelines by name, in file order."""

    path: Path
    pipelines: dict[str, PipelineConfig] = field(default_factory=dict)

    def pipeline(self, name: str | None) -> PipelineConfig:
        """The named pipeline, or the only one when ``name`` is None.

        :raises ConfigError: unknown name, or several pipelines and no name given.
        """
        if name is None:
            if len(self.pipelines) == 1:
                return next(iter(self.pipelines.values()))
            raise ConfigError([f"{self.path}: several pipelines ({', '.join(self.pipelines)}); choose one with --pipeline"])
        if name not in self.pipelines:
            raise ConfigError([f"{self.path}: no pipeline named {name!r}; known: {', '.join(self.pipelines) or 'none'}"])
        return self.pipelines[name]


# --------------------------------------------------------------------------- YAML with lines


class _Loader:
    """Turns a composed YAML node tree into plain Python, noting each path's line.

    Aliases are expanded under a :class:`~voxpipe.yamlsafe.NodeBudget` (alias bombs and
    recursive aliases raise :class:`~voxpipe.yamlsafe.YamlProblem`).
    """

    def __init__(self, filename: str, environ: Mapping[str, str]):
        self.filename = filename
        self.environ = environ
        self.lines: dict[Path_, int] = {}
        self.problems: list[str] = []
        #: paths whose value used an unset variable: already reported, not validated again
        self.unset: set[Path_] = set()
        self.budget = NodeBudget()

    def convert(self, node: yaml.Node, path: Path_) -> Any:
        self.budget.enter(node)
        try:
            return self._convert(node, path)
        finally:
            self.budget.leave(node)

    def _convert(self, node: yaml.Node, path: Path_) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise YamlProblem(key_node.start_mark.line + 1, f"{dotted(path) or 'top level'}: "
                                      "a mapping key must be a plain value, not a list or mapping")
                scalar_value(key_node)  # refuses disallowed tags; keys stay as written (`on` is not True)
                key = key_node.value
                child = path + (key,)
                self.lines[child] = key_node.start_mark.line + 1
                if key in out:
                    self.problems.append(f"{self.where(child)}: {dotted(child)}: duplicate key")
                out[key] = self.convert(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, path + (i,)) for i, item in enumerate(node.value)]
        value = scalar_value(node)
        if isinstance(value, str) and "$" in value:
            value = self.interpolate(value, path)
        return value

    def interpolate(self, text: str, path: Path_) -> Any:
        def sub(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            value = self.environ.get(name)
            if value is None or (value == "" and default is not None):
                if default is not None:
                    return default
                self.problems.append(f"{self.where(path)}: {dotted(path)}: environment variable {name} is not set")
                self.unset.add(path)
                return ""
            return value

        return _VAR.sub(sub, text)

    def where(self, path: Path_) -> str:
        while path and path not in self.lines:
            path = path[:-1]
        return f"{self.filename}:{self.lines.get(path, 1)}"


def dotted(path: Path_) -> str:
    """``("pipelines", "a", "sinks", 0, "dir")`` → ``pipelines.a.sinks[0].dir``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --------------------------------------------------------------------------- validation


def load_config(path: str | os.PathLike[str], registry: Registry, environ: Mapping[str, str] | None = None) -> ConfigFile:
    """Load and validate a pipeline file.

    The file must be a regular file of at most :data:`MAX_CONFIG_BYTES` bytes (checked
    before reading it; a FIFO or device is refused without blocking) in UTF-8 (see
    :mod:`voxpipe.yamlsafe` for every bound).

    :raises ConfigError: with every problem found, each as ``file:line: key.path: message``
        (or ``file:line: message`` for problems with the file itself).
    """
    path = Path(path)
    try:
        text = decode(read_file(path))
    except YamlProblem as exc:
        raise ConfigError([f"{path}:{exc.line}: {exc.message}"]) from None
    return parse_config(text, registry, filename=str(path), environ=environ, base=path)


def parse_config(text: str, registry: Registry, *, filename: str = "<string>", environ: Mapping[str, str] | None = None,
                 base: Path | None = None) -> ConfigFile:
    """Validate pipeline YAML given as text (see :func:`load_config`)."""
    loader = _Loader(filename, os.environ if environ is None else environ)
    try:
        node = compose(text)
        doc = loader.convert(node, ()) if node is not None else None
    except YamlProblem as exc:
        raise ConfigError([f"{filename}:{exc.line}: {exc.message}"]) from None
    result = ConfigFile(path=base or Path(filename))
    problems = loader.problems
    if not isinstance(doc, dict) or not isinstance(doc.get("pipelines"), dict) or not doc["pipelines"]:
        problems.append(f"{loader.where(('pipelines',))}: pipelines: expected a mapping of pipeline names to pipelines")
        raise ConfigError(problems)
    for key in doc:
        if key != "pipelines":
            problems.append(f"{loader.where((key,))}: {key}: unknown top-level key (expected 'pipelines')")
    for name, body in doc["pipelines"].items():
        pipeline = _pipeline(loader, registry, name, body, ("pipelines", name))
        if pipeline is not None:
            result.pipelines[name] = pipeline
    if problems:
        raise ConfigError(sorted(problems, key=_line_of))
    return result


def _line_of(problem: str) -> int:
    """The line number in ``FILE:LINE: ...`` (problems are listed in file order)."""
    parts = problem.split(":", 2)
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 0


_COMPONENT_KEYS = {"source": "source", "transforms": "transform", "verifiers": "verifier", "sinks": "sink"}


def _pipeline(loader: _Loader, registry: Registry, name: str, body: Any, path: Path_) -> PipelineConfig | None:
    problems = loader.problems
    before = len(problems)
    if not isinstance(body, dict):
        problems.append(f"{loader.where(path)}: {dotted(path)}: expected a mapping")
        return None
    plain = {k: v for k, v in body.items() if k not in _COMPONENT_KEYS}
    settings = _validate(loader, PipelineSettings, plain, path)
    if "source" not in body:
        problems.append(f"{loader.where(path)}: {dotted(path)}: missing 'source'")
        source = None
    else:
        source = _component(loader, registry, "source", body["source"], path + ("source",))
    lists: dict[str, list[ComponentConfig]] = {}
    for key in ("transforms", "verifiers", "sinks"):
        items = body.get(key, [])
        if items is None:
            items = []
        if not isinstance(items, list):
            problems.append(f"{loader.where(path + (key,))}: {dotted(path + (key,))}: expected a list")
            items = []
        lists[key] = [c for i, item in enumerate(items)
                      if (c := _component(loader, registry, _COMPONENT_KEYS[key], item, path + (key, i))) is not None]
    if not body.get("sinks"):
        problems.append(f"{loader.where(path)}: {dotted(path)}: at least one sink is required")
    if len(problems) > before or settings is None or source is None:
        return None
    return PipelineConfig(name=name, settings=settings, source=source, transforms=tuple(lists["transforms"]),
                          verifiers=tuple(lists["verifiers"]), sinks=tuple(lists["sinks"]))


def _component(loader: _Loader, registry: Registry, kind: str, body: Any, path: Path_) -> ComponentConfig | None:
    problems = loader.problems
    if not isinstance(body, dict):
        problems.append(f"{loader.where(path)}: {dotted(path)}: expected a mapping with a 'type'")
        return None
    type_ = body.get("type")
    if type_ is None:
        problems.append(f"{loader.where(path)}: {dotted(path)}: missing 'type' (known {kind} types: "
                        f"{', '.join(registry.known(kind)) or 'none'})")
        return None
    info = registry.get(kind, str(type_))
    if info is None:
        hint = ""
        failed = [e.name for e in registry.load_errors]
        if failed:
            hint = f"; plugins that failed to load: {', '.join(failed)} (see 'voxpipe plugins')"
        problems.append(f"{loader.where(path + ('type',))}: {dotted(path + ('type',))}: unknown {kind} type "
                        f"{type_!r}; known: {', '.join(registry.known(kind)) or 'none'}{hint}")
        return None
    values = {k: v for k, v in body.items() if k != "type"}
    settings = _validate(loader, info.cls.Settings, values, path)
    if settings is None:
        return None
    return ComponentConfig(info=info, settings=settings, where=loader.where(path))


def _validate(loader: _Loader, model: type[Settings], values: dict[str, Any], path: Path_) -> Settings | None:
    try:
        return model.model_validate(values)
    except pydantic.ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=True):
            loc = path + tuple(err["loc"])
            if any(loc[:len(u)] == u for u in loader.unset):
                continue  # the missing variable was reported; its empty stand-in proves nothing
            if err["type"] == "extra_forbidden":
                msg = "unknown setting"
                known = sorted(model.model_fields)
                close = _closest(str(err["loc"][-1]), known)
                msg += f" (did you mean {close!r}?)" if close else f" (known: {', '.join(known) or 'none'})"
            elif err["type"] == "missing":
                msg = "required setting is missing"
            else:
                msg = type_error_message(model, err)
            loader.problems.append(f"{loader.where(loc)}: {dotted(loc)}: {msg}")
        return None


def local_file_problems(pipeline: PipelineConfig) -> list[str]:
    """Input files a pipeline names that cannot be read, as ``FILE:LINE: key.path: message``.

    An input file is a setting named ``*_file`` holding a path (``recordings_file``,
    ``acd_call_ids_file``, ``conversations_file``...; third-party components follow the
    same convention). Relative paths are taken from the working directory, as at run time.
    Directories a pipeline writes (``dir``, ``state_dir``) are created when missing and are
    checked by ``voxpipe check --connect`` instead.
    """
    problems = []
    named = [(f"pipelines.{pipeline.name}.source", pipeline.source)]
    for key in ("transforms", "verifiers", "sinks"):
        named += [(f"pipelines.{pipeline.name}.{key}[{i}]", c) for i, c in enumerate(getattr(pipeline, key))]
    for prefix, component in named:
        for field in type(component.settings).model_fields:
            value = getattr(component.settings, field)
            if not field.endswith("_file") or not isinstance(value, Path):
                continue
            if not value.exists():
                why = "does not exist"
            elif not value.is_file():
                why = "is not a file"
            elif not os.access(value, os.R_OK):
                why = "cannot be read"
            else:
                continue
            problems.append(f"{component.where}: {prefix}.{field}: {value} {why}"
                            + (f" (relative to the working directory {Path.cwd()})" if not value.is_absolute() else ""))
    return problems


#: Longest value quoted back in an error message (characters).
MAX_QUOTED_VALUE = 60


def type_error_message(model: type[Settings], err: Mapping[str, Any]) -> str:
    """A pydantic error as a person reads it: the value given, the form expected, the unit.

    Values of secret settings are never quoted.
    """
    from .settings import ByteSizeMarker

    field = model.model_fields.get(str(err["loc"][0])) if err.get("loc") else None
    secret = field is not None and "Secret" in repr(field.annotation)
    is_size = field is not None and any(isinstance(m, ByteSizeMarker) for m in field.metadata)
    unit = " bytes" if is_size else ""
    value = "the value" if secret else _quoted(err.get("input"))
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind == "value_error":
        return err["msg"].removeprefix("Value error, ")
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        return f"{value} is below the minimum of {bound}{unit}" + (" (inclusive)" if kind == "greater_than_equal" else "")
    if kind in ("less_than_equal", "less_than"):
        bound = ctx.get("le", ctx.get("lt"))
        return f"{value} is above the maximum of {bound}{unit}" + (" (inclusive)" if kind == "less_than_equal" else "")
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{value} is not a size in bytes; write a whole number (65536) or with a unit (64KiB)" if is_size \
            else f"{value} is not a whole number"
    if kind in ("float_parsing", "float_type"):
        return f"{value} is not a number"
    if kind in ("bool_parsing", "bool_type"):
        return f"{value} is not true or false"
    if kind == "string_type":
        return f"{value} is not text (quote it in YAML)"
    if kind in ("list_type", "tuple_type", "set_type"):
        return f"expected a list, got {value}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping, got {value}"
    if kind == "literal_error":
        return f"{value} is not one of {ctx.get('expected', 'the allowed values')}"
    if kind in ("string_too_short", "string_too_long", "too_short", "too_long", "string_pattern_mismatch"):
        return f"{value}: {err['msg'].replace('Input should', 'should').replace('Value should', 'should')}"
    return err["msg"].removeprefix("Value error, ")


def _quoted(value: Any) -> str:
    """``value`` as YAML-ish text for a message, bounded."""
    import json

    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= MAX_QUOTED_VALUE else text[: MAX_QUOTED_VALUE - 1] + "…"


def _closest(word: str, candidates: list[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(word, candidates, n=1, cutoff=0.75)
    return found[0] if found else None
