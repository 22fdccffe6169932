"""Errors users can take to support: Genesys' `code` and `contextId` in failure messages and
the audit log; OAuth errors in RFC 6749 §5.2 form; never a secret."""

from __future__ import annotations

import re

import httpx

from voxpipe.audit import read_audit
from voxpipe.download.api import error_detail

from genesys_helpers import ALL, emulator, make_recordings, pipeline_yaml, run_yaml


def response(status: int, body) -> httpx.Response:
    return httpx.Response(status, json=body) if not isinstance(body, bytes) else httpx.Response(status, content=body)


def test_error_detail_keeps_code_and_context_id_and_only_known_fields():
    genesys = error_detail(response(404, {"message": "Conversation c1 not found", "code": "not.found", "status": 404,
                                          "contextId": "5f2a0c1e-1111-4222-8333-944455556666", "details": [],
                                          "errors": []}))
    assert genesys.text == "Conversation c1 not found (code not.found, contextId 5f2a0c1e-1111-4222-8333-944455556666)"
    assert (genesys.code, genesys.context_id) == ("not.found", "5f2a0c1e-1111-4222-8333-944455556666")
    oauth = error_detail(response(401, {"error": "invalid_client", "error_description": "client authentication failed"}))
    assert oauth.text == "client authentication failed (code invalid_client)" and oauth.context_id is None
    assert error_detail(response(400, {"error": "invalid_request"})).text == "code invalid_request"
    unknown = error_detail(response(400, {"token": "s3cr3t", "other": 1}))
    assert "s3cr3t" not in unknown.text and unknown.text == "(fields: other, token)"
    assert error_detail(response(502, b"bad gateway")).text == "bad gateway"


def test_failures_and_the_audit_log_carry_code_and_context_id_never_the_secret(tmp_path):
    make_recordings(tmp_path / "rec")
    with emulator(tmp_path / "rec") as (url, _):
        summary, _ = run_yaml(pipeline_yaml(url, tmp_path / "a", source="conversations: [no-such-conversation]"))
        text = pipeline_yaml(url, tmp_path / "b", source=f"interval: {ALL}").replace("emulator-secret", "wrong-secret")
        refused, _ = run_yaml(text)
    [result] = summary.results
    found = re.search(r"Conversation no-such-conversation not found \(code not\.found, contextId ([0-9a-f-]{36})\)",
                      result.message)
    assert found, result.message
    audit = read_audit(tmp_path / "a" / ".state" / "audit.jsonl")
    [api_error] = [e for e in audit if e["event"] == "api-error"]
    assert api_error["status"] == 404 and api_error["code"] == "not.found"
    assert api_error["context_id"] == found.group(1)  # the id support can look up
    [stream] = [e for e in audit if e["event"] == "stream"]
    assert found.group(1) in stream["message"]

    assert "(code invalid_client)" in refused.discovery_error
    audit_b = tmp_path / "b" / ".state" / "audit.jsonl"
    [token_error] = [e for e in read_audit(audit_b) if e["event"] == "api-error"]
    assert token_error["request"] == "token request" and token_error["code"] == "invalid_client"
    assert token_error["reason"] == "auth-failed" and token_error["status"] == 401
    assert "wrong-secret" not in audit_b.read_text() and "wrong-secret" not in refused.discovery_error


def test_emulator_token_errors_use_rfc_6749_field_names(tmp_path):
    make_recordings(tmp_path / "rec")
    with emulator(tmp_path / "rec") as (url, _):
        bad_client = httpx.post(url + "/oauth/token", auth=("voxpipe-emulator", "nope"),
                                data={"grant_type": "client_credentials"})
        bad_grant = httpx.post(url + "/oauth/token", auth=("voxpipe-emulator", "emulator-secret"),
                               data={"grant_type": "password"})
    assert bad_client.status_code == 401 and bad_client.headers["www-authenticate"].startswith("Basic")
    assert bad_client.json() == {"error": "invalid_client", "error_description": "client authentication failed"}
    assert bad_grant.status_code == 400 and set(bad_grant.json()) == {"error", "error_description"}
    assert bad_grant.json()["error"] == "unsupported_grant_type"
