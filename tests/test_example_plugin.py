"""The example plugin package (examples/plugins/voxpipe-example), installed as a user would:
into a venv holding voxpipe's wheel, then run from YAML against the CXone emulator."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from voxpipe.testing import cxone_emulator
from wheel_env import ROOT

pytestmark = pytest.mark.wheel

PLUGIN = ROOT / "examples" / "plugins" / "voxpipe-example"
RECORDINGS = sorted(p for p in (ROOT / "examples" / "recordings").iterdir() if p.suffix != ".md")


@pytest.fixture(scope="module")
def with_plugin(installed_voxpipe):
    installed_voxpipe.pip_install(f"{PLUGIN}[test]")
    return installed_voxpipe


def voxpipe(venv, *args, cwd, env=None):
    return subprocess.run([str(venv.bin / "voxpipe"), *args], cwd=cwd, env=env or venv.env(), capture_output=True,
                          text=True, timeout=300)


def test_its_components_are_listed_and_in_the_schema(with_plugin, tmp_path):
    listed = json.loads(voxpipe(with_plugin, "plugins", "--json", cwd=tmp_path).stdout)
    mine = {(c["kind"], c["type"]) for c in listed["components"] if c["plugin"] == "example"}
    assert mine == {("verifier", "min-size"), ("sink", "dated"), ("sink", "jsonl-log")}
    assert listed["load_errors"] == []
    schema = json.loads(voxpipe(with_plugin, "schema", cwd=tmp_path).stdout)
    assert {"verifier.min-size", "sink.dated", "sink.jsonl-log"} <= set(schema["$defs"])
    import jsonschema
    import yaml

    pipeline = yaml.safe_load((PLUGIN / "pipeline.yaml").read_text())
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(pipeline)) == []
    pipeline["pipelines"]["by-day"]["verifiers"][1]["min_bytes"] = "4k"
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(pipeline))


def test_its_pipeline_runs_from_yaml_against_the_emulator(with_plugin, tmp_path):
    with cxone_emulator() as emulator:
        env = {**with_plugin.env(), **{k: v for k, v in emulator.environ().items() if k.startswith("CXONE_")}}
        checked = voxpipe(with_plugin, "check", "--connect", str(PLUGIN / "pipeline.yaml"), cwd=tmp_path, env=env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert re.search(r"ok   by-day: sink dated: destination: .*example-out/by-day .*writable", checked.stdout)
        run = voxpipe(with_plugin, "run", "--no-progress", str(PLUGIN / "pipeline.yaml"), cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    for source in RECORDINGS:
        [stored] = (tmp_path / "example-out" / "by-day").glob(f"*/{source.name}")
        assert stored.read_bytes() == source.read_bytes()
    outcomes = [json.loads(line) for line in (tmp_path / "example-out" / "outcomes.jsonl").read_text().splitlines()]
    assert sorted(o["id"] for o in outcomes) == [p.stem for p in RECORDINGS]
    assert all(o["status"] == "ok" and o["sha256"] for o in outcomes)


def test_its_own_tests_pass_with_the_installed_voxpipe_testing_helpers(with_plugin, tmp_path):
    done = subprocess.run([str(with_plugin.python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(PLUGIN / "tests")], cwd=tmp_path, env=with_plugin.env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
