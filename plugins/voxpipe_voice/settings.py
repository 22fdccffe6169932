"""Settings of the ``websocket-voice`` source (one declaration; docs/configuration.md is
generated from it)."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator, model_validator

from voxpipe import __version__
from voxpipe.settings import ByteSize, Settings, setting

from .httpsig import decode_secret


def _display(url: str) -> str:
    """The URL without query or credentials, for logs and errors."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, host + port, parts.path, "", ""))


class CallTarget(BaseModel):
    """One call to dial in client mode."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    url: str


class VoiceSourceSettings(Settings):
    mode: Literal["client", "server"] = setting("client", description="`client`: dial a URL per call; `server`: "
                                                "listen and treat each incoming connection as a call.")
    url: str | None = setting(None, description="Client mode: one call's WebSocket URL (`ws://` or `wss://`).",
                              example="${VOICE_STREAM_URL}")
    urls: list[str] = setting([], description="Client mode: several calls' URLs; a call's id is the URL's last "
                              "path segment.", example=["wss://voice.example.com/calls/c-1"])
    calls: list[CallTarget] = setting([], description="Client mode: calls as `{id, url}` pairs.",
                                      example=[{"id": "c-1", "url": "wss://voice.example.com/calls/c-1"}])
    host: str = setting("127.0.0.1", description="Server mode: address to listen on.")
    port: int = setting(8765, description="Server mode: TCP port; 0 picks a free one (logged).", ge=0, le=65535)
    codec: Literal["pcm16", "twilio", "audiohook", "cxone"] = setting(
        "pcm16", description="`pcm16`: binary PCM16 little-endian messages; `twilio`: Twilio Media Streams JSON with "
        "base64 μ-law; `audiohook`: Genesys AudioHook v2 (server mode); `cxone`: CXone Agent Assist Hub raw μ-law, "
        "RX and TX connections of a contact joined in stereo (server mode).")
    track: Literal["both", "inbound", "outbound"] = setting(
        "both", description="Twilio: `both` records a `both_tracks` stream in stereo (inbound left, outbound right) "
        "and a one-track stream in mono; `inbound`/`outbound` record that track only, in mono.")
    max_skew_ms: int = setting(1000, description="Stereo (Twilio both tracks, CXone RX+TX): how far (ms) one side "
                               "may run ahead of the other before the lagging side is filled with silence.",
                               ge=0, le=60_000)
    audiohook_api_key: SecretStr | None = setting(None, description="AudioHook: the API key Genesys must send in "
                                                  "`X-API-KEY`; unset accepts any caller.",
                                                  example="${AUDIOHOOK_API_KEY}")
    audiohook_client_secret: SecretStr | None = setting(None, description="AudioHook: the client secret (base64) "
                                                        "of the API key; when set, the upgrade request's HTTP "
                                                        "message signature must verify.",
                                                        example="${AUDIOHOOK_CLIENT_SECRET}")
    stereo: bool = setting(True, description="AudioHook: accept both channels (customer left, agent right) when "
                           "offered; `false` prefers one channel.")
    pause_mode: Literal["silence", "gap"] = setting("silence", description="AudioHook: a paused or discarded "
                                                    "stretch is recorded as `silence` of its length (the recording "
                                                    "keeps the call's timeline) or left out (`gap`); counted either "
                                                    "way.")
    rejoin_window: float = setting(60.0, description="CXone: seconds a contact's call waits, after its last "
                                   "connection ended, for a perspective to reconnect (a drop, or the new "
                                   "connection after a hold) before the call is stored.", ge=0, le=86_400)
    sample_rate: Literal[8000, 16000] = setting(8000, description="PCM16 sample rate in Hz (Twilio: from `start`).")
    frame_ms: int = setting(20, description="Frame length in ms; chunks hold whole frames.", ge=10, le=100)
    token: SecretStr | None = setting(None, description="Bearer token: sent in `Authorization` (client mode), "
                                      "required of callers (server mode). Use `${VAR}`.", example="${VOICE_TOKEN}")
    token_url: str | None = setting(None, description="Client mode: OAuth 2.0 token endpoint; the source then "
                                    "gets its bearer token by the client-credentials grant, caches it, refreshes it "
                                    "30 s before expiry and renews it on every reconnect.",
                                    example="https://auth.example.com/oauth/token")
    client_id: str | None = setting(None, description="Client mode, OAuth: the client id.", example="${VOICE_CLIENT_ID}")
    client_secret: SecretStr | None = setting(None, description="Client mode, OAuth: the client secret.",
                                              example="${VOICE_CLIENT_SECRET}")
    scope: str | None = setting(None, description="Client mode, OAuth: the scope requested, if any.")
    client_auth: Literal["basic", "form"] = setting("basic", description="Client mode, OAuth: send the client "
                                                    "credentials as HTTP Basic (`basic`) or in the form (`form`).")
    headers: dict[str, str] = setting({}, description="Client mode: extra headers sent with each WebSocket "
                                      "upgrade request (not `Authorization`).", example={"X-Tenant": "acme"})
    user_agent: str = setting(f"voxpipe/{__version__}", description="Client mode: the User-Agent of upgrade and "
                              "token requests.")
    token_in_query: bool = setting(False, description="Send the token as `?access_token=` instead, for servers "
                                   "that demand it; URLs are then logged without their query.")
    ping_interval: float = setting(30.0, description="Seconds between WebSocket pings.", gt=0)
    read_timeout: float = setting(60.0, description="Seconds without a message (or a pong) before the connection "
                                  "counts as lost.", gt=0)
    reconnect_window: float = setting(30.0, description="Client mode: seconds after a drop (1006, network error, "
                                      "timeout) during which reconnects are attempted.", ge=0)
    max_reconnects: int = setting(10, description="Client mode: most reconnects per call.", ge=0, le=1000)
    jitter_depth_ms: int = setting(40, description="Twilio: jitter buffer depth in ms (multiple of `frame_ms`); "
                                   "packets up to this far out of order are put back in order.", ge=0, le=1000)
    max_calls: int | None = setting(None, description="Server mode: stop after accepting this many calls "
                                    "(tests, demos); default unlimited.", ge=1)
    pending_calls: int = setting(16, description="Server mode: connected calls waiting for a pipeline slot (besides "
                                 "the one discovery holds); "
                                 "more are closed with 1013 (try again later).", ge=0, le=10_000)
    start_timeout: float = setting(10.0, description="Server mode, Twilio: seconds to wait for the `start` event.",
                                   gt=0)
    message_queue_size: int = setting(64, description="WebSocket messages queued per connection before the "
                                      "connection stops reading (TCP backpressure).", ge=1, le=10_000)
    max_message_bytes: ByteSize = setting(1 << 20, description="Largest WebSocket message accepted (bytes); larger "
                                     "closes the connection with 1009.", ge=1024)
    buffer_ms: int = setting(2000, description="Audio (ms) buffered per call between the connection and the "
                             "pipeline before the connection waits.", ge=20, le=600_000)
    chunk_ms: int = setting(100, description="Audio (ms) gathered per chunk handed to the pipeline (whole frames; "
                            "the last chunk of a call may be shorter). Larger chunks cost less per second of audio.",
                            ge=1, le=10_000)
    degraded_bitrate_bps: float = setting(12_000, description="A call whose payload bitrate stays below this "
                                          "(bits/s; the seed's 12 kbps) for `degraded_after` seconds is flagged "
                                          "`degraded` in its quality (and the call-end event).", ge=0)
    degraded_after: float = setting(10.0, description="Seconds the bitrate must stay below "
                                    "`degraded_bitrate_bps` before a call is flagged degraded.", ge=0, le=86_400)
    backend: Literal["auto", "native", "python"] = setting("auto", description="DSP backend for reassembly and "
                                                           "μ-law decoding (see docs/native.md).")

    @field_validator("max_calls", "token", "audiohook_api_key", "audiohook_client_secret", "token_url", "client_id",
                     "client_secret", "scope", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # ``${VAR:-}`` in YAML gives "" for an unset variable: treat it as not configured.
        return None if value == "" else value

    @model_validator(mode="after")
    def _check(self) -> "VoiceSourceSettings":
        if self.mode == "client" and not (self.url or self.urls or self.calls):
            raise ValueError("client mode needs `url`, `urls` or `calls`")
        if self.mode == "server" and (self.url or self.urls or self.calls):
            raise ValueError("`url`, `urls` and `calls` are for client mode; server mode listens on host:port")
        for url in [self.url or "", *self.urls, *(c.url for c in self.calls)]:
            if url and not url.startswith(("ws://", "wss://")):
                raise ValueError(f"URL {_display(url)} is not ws:// or wss://")
        if self.token_url is not None:
            if self.mode != "client" or self.token is not None:
                raise ValueError("token_url is for client mode, instead of a fixed token")
            if not self.client_id or self.client_secret is None:
                raise ValueError("token_url needs client_id and client_secret")
        if any(k.lower() in ("authorization", "host", "upgrade", "connection") or k.lower().startswith("sec-websocket")
               for k in self.headers):
            raise ValueError("headers may not set Authorization, Host or the WebSocket handshake headers")
        if self.codec in ("audiohook", "cxone") and self.mode != "server":
            raise ValueError(f"codec {self.codec} is server mode only: the platform connects to voxpipe")
        if self.audiohook_client_secret is not None:
            if self.audiohook_api_key is None:
                raise ValueError("audiohook_client_secret needs audiohook_api_key")
            decode_secret(self.audiohook_client_secret.get_secret_value())
        if self.jitter_depth_ms % self.frame_ms:
            raise ValueError(f"jitter_depth_ms={self.jitter_depth_ms} is not a multiple of frame_ms={self.frame_ms}")
        return self


