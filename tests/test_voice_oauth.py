"""Client mode with OAuth client credentials: a real token endpoint (ASGI over loopback), the
token cached across calls, renewed on every reconnect, custom headers and User-Agent."""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import parse_qs

import trio

from voxpipe.serving import serve_asgi
from voxpipe_voice.emulator import StreamOptions, VoiceEmulatorServer
from test_voice_e2e import FILES, expected_for
from voice_support import pipeline_yaml, read_wav, runner_for

SECRET = "voice-client-secret-9"


class TokenEndpoint:
    """``POST /oauth/token``: client credentials in HTTP Basic; tokens tok-1, tok-2, ..."""

    def __init__(self):
        self.issued = 0
        self.requests: list[dict] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        self.requests.append({"headers": headers, "form": form})
        expected = "Basic " + base64.b64encode(f"voice-app:{SECRET}".encode()).decode()
        if headers.get("authorization") != expected or form.get("grant_type") != "client_credentials":
            status, doc = 401, {"error": "invalid_client"}
        else:
            self.issued += 1
            status, doc = 200, {"access_token": f"tok-{self.issued}", "token_type": "bearer", "expires_in": 3600}
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(doc).encode()})


def run_client_mode(tmp_path, endpoint: TokenEndpoint, server: VoiceEmulatorServer, lines) -> object:
    """Serve the token endpoint and the emulator, run a client-mode pipeline whose source
    has ``lines(server_url, token_url)``; returns the run summary."""
    async def main():
        async with trio.open_nursery() as nursery:
            base = await nursery.start(serve_asgi, endpoint)
            await nursery.start(server.serve)
            source = "\n".join(["mode: client", "codec: pcm16", *lines(server.url, f"{base}/oauth/token")])
            summary = await runner_for(pipeline_yaml(source, tmp_path / "out")).run()
            nursery.cancel_scope.cancel()
        return summary

    return trio.run(main)


def test_oauth_token_cached_renewed_on_reconnect_with_custom_headers(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    endpoint = TokenEndpoint()
    options = StreamOptions(codec="pcm16", speed=0, seed=2, min_bytes=1, max_bytes=500, abort_after=40)
    server = VoiceEmulatorServer(FILES, options)
    summary = run_client_mode(tmp_path, endpoint, server, lambda url, token_url: [
        "urls:", f"  - {url}/calls/100001", f"  - {url}/calls/100002", f"token_url: {token_url}",
        "client_id: voice-app", f"client_secret: {SECRET}", "user_agent: acme-recorder/2.1",
        "headers: {X-Tenant: acme}"])
    assert summary.ok, [r.message for r in summary.failed]
    # one token for both calls' first connections; the reconnects renew it once between them
    tokens = [h["authorization"] for _, h in server.requests]
    assert len(tokens) == 4 and tokens[:2] == ["Bearer tok-1", "Bearer tok-1"]
    assert set(tokens[2:]) == {"Bearer tok-2"} and endpoint.issued == 2
    assert all(h["user-agent"] == "acme-recorder/2.1" and h["x-tenant"] == "acme" for _, h in server.requests)
    assert endpoint.requests[0]["headers"]["user-agent"] == "acme-recorder/2.1"
    for call_id in ("100001", "100002"):
        pcm, _ = read_wav(tmp_path / "out" / f"{call_id}.wav")
        assert pcm == expected_for(server.audio_for(call_id), options, call_id)
    for record in caplog.records:
        assert SECRET not in record.getMessage() and "tok-1" not in record.getMessage()


def test_refused_client_credentials_fail_the_call_without_the_secret(tmp_path):
    endpoint = TokenEndpoint()
    server = VoiceEmulatorServer(FILES, StreamOptions(codec="pcm16", speed=0))
    summary = run_client_mode(tmp_path, endpoint, server, lambda url, token_url: [
        f"url: {url}/calls/100001", f"token_url: {token_url}", "client_id: voice-app",
        "client_secret: wrong-secret"])
    result = summary.results[0]
    assert not summary.ok and result.reason == "auth-failed" and "voice-app" in result.message
    assert "wrong-secret" not in result.message and not server.requests
