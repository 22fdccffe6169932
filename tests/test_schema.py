"""`voxpipe schema`: a JSON Schema of pipeline files that accepts what `check` accepts."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from plugin_fixtures import ThirdPartyPlugin
from voxpipe.cli import cli
from voxpipe.config import parse_config
from voxpipe.plugins import get_registry
from voxpipe.schema import config_schema
from wheel_env import ROOT

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def validator(registry=None) -> jsonschema.Draft202012Validator:
    schema = config_schema(registry)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(v, text: str) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(yaml.safe_load(text))]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_shipped_example_validates(path):
    assert EXAMPLES and errors(validator(), path.read_text()) == []


def test_every_complete_pipeline_in_the_docs_validates():
    v = validator()
    checked = 0
    for doc in sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]:
        for block in re.findall(r"```ya?ml\n(.*?)```", doc.read_text(), re.S):
            if "pipelines:" not in block or "..." in block:  # sketches with elisions are not files
                continue
            if block.startswith("# file: examples/plugins/"):  # needs the example plugin: test_example_plugin
                continue
            assert errors(v, block) == [], f"{doc.name}:\n{block}"
            checked += 1
    assert checked >= 3


def test_mistakes_check_rejects_the_schema_rejects_too():
    v = validator()
    good = (ROOT / "examples" / "cxone-archive.yaml").read_text()
    typo = good.replace("chunk_size: 65536", "chunk_sise: 65536")
    assert any("chunk_sise" in e for e in errors(v, typo))
    level = good.replace("      - type: gzip\n", "      - type: gzip\n        level: 11\n")
    assert level != good
    assert any(e.startswith("pipelines.cxone-archive.sinks.0.level") for e in errors(v, level))
    unknown = good.replace("- type: sha256", "- type: sha265")
    assert any("sha265" in e for e in errors(v, unknown))
    no_sink = good[: good.index("    sinks:")]
    assert any("'sinks' is a required property" in e for e in errors(v, no_sink))
    # and the same files through the real loader agree
    env = {"CXONE_API_BASE": "http://x", "CXONE_TOKEN_URL": "http://x/t", "CXONE_CLIENT_ID": "a",
           "CXONE_CLIENT_SECRET": "b"}
    parse_config(good, get_registry(), environ=env)
    for bad in (typo, level, unknown, no_sink):
        with pytest.raises(Exception):
            parse_config(bad, get_registry(), environ=env)


def test_interpolated_values_are_accepted_for_any_type():
    v = validator()
    text = (ROOT / "examples" / "cxone-archive.yaml").read_text().replace("concurrency: 4", "concurrency: ${N:-4}")
    assert errors(v, text) == []
    assert errors(v, text.replace("${N:-4}", "four"))  # a plain string is still not an integer


def test_third_party_plugins_are_in_the_schema(register_plugin):
    with register_plugin(ThirdPartyPlugin(), name="thirdparty") as registry:
        schema = config_schema(registry)
    memory = schema["$defs"]["source.memory"]
    assert memory["properties"]["type"] == {"const": "memory", "description": "Test source: deterministic bytes per id."}
    assert "ids" in memory["required"] and "plugin thirdparty" in memory["description"]
    assert "memory" in schema["$defs"]["source"]["properties"]["type"]["enum"]


def test_schema_command_prints_and_writes_the_schema(tmp_path):
    printed = CliRunner().invoke(cli, ["schema"], catch_exceptions=False)
    assert printed.exit_code == 0 and json.loads(printed.output)["title"] == "voxpipe pipeline file"
    out = tmp_path / "voxpipe.schema.json"
    written = CliRunner().invoke(cli, ["schema", "--out", str(out)], catch_exceptions=False)
    assert written.exit_code == 0 and json.loads(out.read_text()) == json.loads(printed.output)
    assert str(out) in written.output and "yaml-language-server" in written.output


def test_docgen_has_help(capsys):
    from voxpipe.docgen import main

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0 and "docs/configuration.md" in capsys.readouterr().out
