"""Every JSON body the Genesys emulator returns, checked against the official SDK's models.

The SDK (``PureCloudPlatformClientV2``, in the ``[test]`` extra only, never a runtime
dependency) is read, not imported (importing it loads thousands of modules): each API
method's ``resource_path``, HTTP method and ``response_type`` say which model answers
which route, and each model's ``swagger_types``, ``attribute_map`` and setters'
``allowed_values`` give its JSON field names, nested models and enumerations. A field
the SDK does not know, a value outside an enumeration, or a route the SDK does not have
fails the test. Skipped when the SDK is not installed.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from voxpipe.serving import serve_in_thread
from voxpipe_genesys.emulator import EmulatorConfig, GenesysEmulator, load_catalogue

from genesys_helpers import ALL, make_recordings, pipeline_yaml, run_yaml

SPEC = importlib.util.find_spec("PureCloudPlatformClientV2")
pytestmark = pytest.mark.skipif(SPEC is None, reason="PureCloudPlatformClientV2 (the official SDK) is not installed")
PRIMITIVES = {"str": str, "int": int, "float": (int, float), "bool": bool, "datetime": str, "date": str,
              "object": object}


def sdk_dir() -> Path:
    return Path(list(SPEC.submodule_search_locations)[0])


@functools.cache
def routes() -> list[tuple[str, re.Pattern, str | None]]:
    """(HTTP method, path pattern, response type) of every API method of the SDK."""
    out = []
    call = re.compile(r"resource_path = '([^']+)'.*?call_api\(resource_path, '(\w+)'.*?response_type=(?:'([^']+)'|None)",
                      re.S)
    for path in sorted((sdk_dir() / "apis").glob("*.py")):
        for template, method, response in call.findall(path.read_text("utf-8")):
            pattern = re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)) + "$")
            out.append((method, pattern, response or None))
    return out


def response_type(method: str, path: str) -> str | None:
    found = {r for m, p, r in routes() if m == method and p.match(path)}
    assert found, f"{method} {path}: no such route in the SDK"
    assert len(found) == 1, f"{method} {path}: ambiguous in the SDK: {found}"
    return found.pop()


@functools.cache
def model(name: str) -> tuple[dict[str, str], dict[str, str], dict[str, list[str]]]:
    """(JSON key → swagger type, JSON key → attribute, attribute → allowed values) of a model."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    tree = ast.parse((sdk_dir() / "models" / f"{snake}.py").read_text("utf-8"))
    types = attrs = None
    allowed: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute):
            if node.targets[0].attr == "swagger_types":
                types = ast.literal_eval(node.value)
            elif node.targets[0].attr == "attribute_map":
                attrs = ast.literal_eval(node.value)
        if isinstance(node, ast.FunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Assign) and getattr(inner.targets[0], "id", "") == "allowed_values":
                    allowed[node.name] = ast.literal_eval(inner.value)
    assert types is not None and attrs is not None, name
    return {attrs[a]: types[a] for a in attrs}, {v: k for k, v in attrs.items()}, allowed


def check(value: Any, kind: str, where: str) -> None:
    if value is None:
        return
    if kind.startswith("list["):
        assert isinstance(value, list), f"{where}: not a list"
        for i, item in enumerate(value):
            check(item, kind[5:-1], f"{where}[{i}]")
        return
    if kind.startswith("dict("):
        assert isinstance(value, dict), f"{where}: not an object"
        inner = kind[5:-1].split(",", 1)[1].strip()
        for key, item in value.items():
            check(item, inner, f"{where}.{key}")
        return
    if kind in PRIMITIVES:
        assert isinstance(value, PRIMITIVES[kind]), f"{where}: {value!r} is not a {kind}"
        return
    assert isinstance(value, dict), f"{where}: a {kind} must be an object, got {value!r}"
    types, attribute, allowed = model(kind)
    for key, item in value.items():
        assert key in types, f"{where}: {kind} has no field {key!r} (SDK fields: {sorted(types)})"
        values = allowed.get(attribute[key])
        if values is not None and isinstance(item, str):
            assert item.lower() in map(str.lower, values), f"{where}.{key}: {item!r} not one of {values}"
        check(item, types[key], f"{where}.{key}")


class Recorder:
    """ASGI middleware keeping (method, path, status, JSON body) of every JSON answer."""

    def __init__(self, app):
        self.app, self.seen = app, []

    async def __call__(self, scope, receive, send):
        answer: dict[str, Any] = {"body": b""}

        async def capture(message):
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["json"] = any(k == b"content-type" and v.startswith(b"application/json")
                                     for k, v in message["headers"])
            elif message["type"] == "http.response.body":
                answer["body"] += message.get("body", b"")
            await send(message)

        await self.app(scope, receive, capture)
        if scope["type"] == "http" and answer.get("json"):
            self.seen.append((scope["method"], scope["path"], answer["status"], json.loads(answer["body"])))


def test_every_emulator_json_body_matches_the_sdk_models(tmp_path):
    make_recordings(tmp_path / "rec")
    cat = load_catalogue(tmp_path / "rec")
    app = Recorder(GenesysEmulator(cat, EmulatorConfig(
        not_ready_polls=1, duplicate_results=frozenset({"call-a.wav"}), uploading=frozenset({"call-b.wav"}),
        restoring=frozenset({"call-c.wav"}), archived=frozenset({"call-d.wav"}),
        errored=frozenset({"call-e__agent.wav"}), fail_recordings=frozenset({"call-e__customer.wav"}))))
    with serve_in_thread(app) as url:
        summary, _ = run_yaml(pipeline_yaml(url, tmp_path / "archive", source=f"""
            interval: {ALL}
            transient_wait: 30
            conversations: [{cat.conversations[0].conversation_id}]
        """))
        assert len(summary.results) == 6
        auth = {"Authorization": "Bearer " + httpx.post(
            url + "/oauth/token", auth=("voxpipe-emulator", "emulator-secret"),
            data={"grant_type": "client_credentials"}).json()["access_token"]}
        conv = cat.conversations[0]  # call-a: AVAILABLE
        rec = conv.recordings[0]
        for path, params in ((f"/api/v2/conversations/{conv.conversation_id}/recordings", {}),
                             (f"/api/v2/conversations/{conv.conversation_id}/recordings", {}),
                             (f"/api/v2/conversations/{conv.conversation_id}/recordings/{rec.recording_id}",
                              {"formatId": "WAV"}),
                             (f"/api/v2/conversations/{conv.conversation_id}/recordingmetadata/{rec.recording_id}", {}),
                             (f"/api/v2/analytics/conversations/{conv.conversation_id}/details", {}),
                             ("/api/v2/conversations/nope/recordingmetadata", {})):
            httpx.get(url + path, headers=auth, params=params)
        httpx.post(url + "/api/v2/analytics/conversations/details/query", headers=auth,
                   json={"interval": ALL, "paging": {"pageSize": 100, "pageNumber": 1001}})
    checked = set()
    for method, path, status, body in app.seen:
        if path == "/oauth/token":  # OAuth (RFC 6749), not a Platform API model
            continue
        kind = "ErrorBody" if status >= 400 else response_type(method, path)
        check(body, kind, f"{method} {path} ({status})")
        checked.add(kind)
    assert checked >= {"AnalyticsConversationQueryResponse", "AnalyticsConversationWithoutAttributesMultiGetResponse",
                       "AnalyticsConversationWithoutAttributes", "list[RecordingMetadata]", "RecordingMetadata",
                       "list[Recording]", "Recording", "BatchDownloadJobSubmissionResult",
                       "BatchDownloadJobStatusResult", "ErrorBody"}, checked


def test_the_checker_catches_unknown_fields_and_values():
    check({"id": "j", "status": "Completed", "results": [{"recordingId": "r", "resultUrl": "u"}]},
          "BatchDownloadJobStatusResult", "ok")
    with pytest.raises(AssertionError, match="has no field 'checksum'"):
        check({"id": "r", "checksum": "ab"}, "RecordingMetadata", "x")
    with pytest.raises(AssertionError, match="'Done' not one of"):
        check({"status": "Done"}, "BatchDownloadJobStatusResult", "x")
    with pytest.raises(AssertionError, match=r"results\[0\]: BatchDownloadJobResult has no field 'id'"):
        check({"results": [{"id": "r"}]}, "BatchDownloadJobStatusResult", "x")
    assert response_type("GET", "/api/v2/recording/batchrequests/j1") == "BatchDownloadJobStatusResult"
