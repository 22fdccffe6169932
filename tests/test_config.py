"""Pipeline files: validation errors name file, line and key path."""

from __future__ import annotations

import textwrap

import pytest

from voxpipe.config import dotted, load_config, parse_config
from voxpipe.errors import ConfigError
from voxpipe.plugins import get_registry

GOOD = """\
pipelines:
  nightly:
    concurrency: 3
    source:
      type: cxone
      api_base: ${API}
      token_url: ${API}/oauth/token
      client_id: demo
      client_secret: ${SECRET}
      recordings: ["1", "2"]
      chunk_size: 1048576
    verifiers:
      - type: sha256
    sinks:
      - type: gzip
        dir: ${OUT:-./archive}
        level: 1
"""

ENV = {"API": "http://127.0.0.1:9", "SECRET": "s3cret"}


def problems(text: str, env=ENV) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), get_registry(), filename="pipeline.yaml", environ=env)
    return info.value.problems


def test_valid_file_interpolates_and_applies_defaults():
    cfg = parse_config(GOOD, get_registry(), filename="p.yaml", environ=ENV)
    p = cfg.pipeline(None)
    assert p.name == "nightly" and p.settings.concurrency == 3
    assert p.source.settings.api_base == "http://127.0.0.1:9"
    assert p.source.settings.token_url == "http://127.0.0.1:9/oauth/token"
    assert p.source.settings.client_secret.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(p.source.settings)
    assert str(p.sinks[0].settings.dir) == "archive"  # ${OUT:-./archive}
    assert p.sinks[0].settings.level == 1 and p.sinks[0].settings.name == "{recording_id}.{format}"


def test_unknown_setting_names_file_line_and_path_and_suggests():
    text = GOOD.replace("      chunk_size: 1048576", "      chunk_sise: 1048576")
    assert problems(text) == [
        "pipeline.yaml:11: pipelines.nightly.source.chunk_sise: unknown setting (did you mean 'chunk_size'?)"]


def test_unknown_type_lists_known_types():
    text = GOOD.replace("      - type: sha256", "      - type: sha265")
    [msg] = problems(text)
    assert msg.startswith("pipeline.yaml:13: pipelines.nightly.verifiers[0].type: unknown verifier type 'sha265'; known:")
    assert "sha256" in msg


def test_missing_variable_is_named_with_its_line():
    env = {"API": "http://127.0.0.1:9"}
    assert problems(GOOD, env) == [
        "pipeline.yaml:9: pipelines.nightly.source.client_secret: environment variable SECRET is not set"]


def test_bad_value_and_missing_required_setting_are_all_reported():
    text = GOOD.replace("        level: 1", "        level: 11").replace("      client_id: demo\n", "")
    found = problems(text)
    assert "pipeline.yaml:4: pipelines.nightly.source.client_id: required setting is missing" in found
    assert any(p.startswith("pipeline.yaml:16: pipelines.nightly.sinks[0].level: 11 is above the maximum of 9")
               for p in found)
    assert len(found) == 2


def test_yaml_syntax_error_has_line():
    [msg] = problems("pipelines:\n  a: [unclosed\n  b: 1\n")
    assert msg.startswith("pipeline.yaml:3: YAML syntax error")


def test_duplicate_key_and_unknown_top_level_key():
    text = GOOD + "extra: 1\n"
    text = text.replace("    concurrency: 3\n", "    concurrency: 3\n    concurrency: 4\n")
    found = problems(text)
    assert "pipeline.yaml:4: pipelines.nightly.concurrency: duplicate key" in found
    assert any("extra: unknown top-level key" in p for p in found)


def test_missing_sinks_and_source():
    found = problems("pipelines:\n  p:\n    concurrency: 2\n")
    assert "pipeline.yaml:2: pipelines.p: missing 'source'" in found
    assert "pipeline.yaml:2: pipelines.p: at least one sink is required" in found


def test_dollar_escape_and_default_for_empty():
    text = GOOD.replace("client_id: demo", "client_id: a$$b${EMPTY:-x}")
    cfg = parse_config(text, get_registry(), environ={**ENV, "EMPTY": ""})
    assert cfg.pipeline("nightly").source.settings.client_id == "a$bx"


def test_several_pipelines_need_a_name(tmp_path):
    text = GOOD + GOOD.split("\n", 1)[1].replace("  nightly:", "  second:")
    path = tmp_path / "two.yaml"
    path.write_text(text)
    cfg = load_config(path, get_registry(), environ=ENV)
    assert list(cfg.pipelines) == ["nightly", "second"]
    with pytest.raises(ConfigError, match="several pipelines"):
        cfg.pipeline(None)
    with pytest.raises(ConfigError, match="no pipeline named 'third'"):
        cfg.pipeline("third")
    assert cfg.pipeline("second").name == "second"


def test_unsafe_name_template_is_rejected():
    text = GOOD.replace("        level: 1", "        name: '../{recording_id}'")
    [msg] = problems(text)
    assert msg == "pipeline.yaml:17: pipelines.nightly.sinks[0].name: name template must be a relative path without '..'"
    text = GOOD.replace("        level: 1", "        name: '{recording}.x'")
    [msg] = problems(text)
    assert "unknown field {recording}" in msg


def test_dotted():
    assert dotted(("pipelines", "a", "sinks", 0, "dir")) == "pipelines.a.sinks[0].dir"


def test_a_missing_variable_is_reported_once_not_also_as_an_invalid_value():
    env = {"SECRET": "x"}  # API unset: api_base and token_url would otherwise also fail their URL pattern
    assert problems(GOOD, env) == [
        "pipeline.yaml:6: pipelines.nightly.source.api_base: environment variable API is not set",
        "pipeline.yaml:7: pipelines.nightly.source.token_url: environment variable API is not set",
    ]
