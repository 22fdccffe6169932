"""The ``hmac-sha256`` verifier: the source signed the recording; check the signature.

Two modes (``docs/verification.md``):

- ``whole`` (default): HMAC-SHA256(key, every byte of the recording, in order), compared
  with the MAC the source gives in a metadata field (CXone emulator: ``hmac``) or a
  response header (``X-Recording-HMAC``). Checked once the stream is complete.
- ``segment``: each ranged response carries its own MAC (``X-Segment-HMAC``) over the
  8-byte big-endian offset of the response's first byte followed by the bytes that
  response covers (its ``Content-Range``). The verifier learns each response's range
  and header from :class:`voxpipe.download.responses.ResponseLog` and checks each MAC
  as soon as the stream reaches the end of that range, so a tampered segment aborts the
  download there. A response cut short and resumed is still checked over its whole
  declared range (the resumed bytes are the same representation: the downloader sends
  ``If-Range``); the resumed response's own MAC covers its own range. Bytes no
  verified response covers (the stream was resumed from a local checkpoint, or a server
  ignored ``Range`` mid-download) must be vouched for by the whole-recording MAC, which
  segment mode also computes; without one the stream fails ``hmac-segment-uncovered``.

Comparison is constant-time (:func:`hmac.compare_digest`). MACs are given as hex or
base64 (``encoding``). The key is a secret: it is never logged, put in a verdict or
compared by value anywhere else.

Reason codes: ``hmac-mismatch``, ``hmac-missing``, ``hmac-malformed``,
``hmac-inconsistent`` (responses disagree on the whole-recording MAC),
``hmac-segment-mismatch``, ``hmac-segment-missing``, ``hmac-segment-uncovered``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Literal

from pydantic import SecretStr, model_validator

from voxpipe.components import Verifier, VerifierRun
from voxpipe.download.responses import ResponseInfo, ResponseLog
from voxpipe.errors import VerificationError
from voxpipe.model import Chunk, Stream, Verdict
from voxpipe.settings import Settings, setting

#: Bytes of an HMAC-SHA256 tag.
MAC_BYTES = 32
#: Responses whose segment MAC is being computed at once (a dropped response and the one
#: resuming it overlap; more means a misbehaving source). Past it the stream fails.
MAX_OPEN_SEGMENTS = 64

TYPE = "hmac-sha256"


class HmacSettings(Settings):
    key: SecretStr = setting(description="The shared HMAC key (use `${VAR}`; never logged).",
                             example="${RECORDING_HMAC_KEY}")
    key_encoding: Literal["utf-8", "hex", "base64"] = setting(
        "utf-8", description="How `key` is written: `utf-8` text (its UTF-8 bytes are the key), `hex` or `base64`.")
    mode: Literal["whole", "segment"] = setting(
        "whole", description="`whole`: one MAC over the whole recording; `segment`: each ranged response carries a "
        "MAC over its 8-byte big-endian first offset followed by its bytes (checked as each range completes).")
    expected_from: Literal["metadata", "header"] = setting(
        "metadata", description="Where the whole-recording MAC comes from: the source's metadata field `field`, or "
        "the response header `header`.")
    field: str = setting("hmac", description="Metadata field holding the whole-recording MAC.")
    header: str = setting("X-Recording-HMAC", description="Response header holding the whole-recording MAC "
                          "(with `expected_from: header`).")
    segment_header: str = setting("X-Segment-HMAC", description="Response header holding each response's MAC "
                                  "(`mode: segment`).")
    encoding: Literal["hex", "base64"] = setting("hex", description="How the source writes MACs: `hex` or `base64`.")
    required: bool = setting(True, description="Fail streams that come without a MAC (in segment mode: a response "
                             "without its header). When false such streams pass with `verified: false` recorded.")

    @model_validator(mode="after")
    def _check_key(self) -> "HmacSettings":
        key_bytes(self)  # raises ValueError: a bad key is a configuration error, not a stream error
        return self


def key_bytes(settings: HmacSettings) -> bytes:
    """The key's bytes per ``key_encoding``.

    :raises ValueError: empty, or not valid hex/base64 (the message never shows the key).
    """
    text = settings.key.get_secret_value()
    try:
        if settings.key_encoding == "hex":
            raw = bytes.fromhex(text.strip())
        elif settings.key_encoding == "base64":
            raw = base64.b64decode(text.strip(), validate=True)
        else:
            raw = text.encode("utf-8")
    except (ValueError, binascii.Error):
        raise ValueError(f"key is not valid {settings.key_encoding}") from None
    if not raw:
        raise ValueError("key is empty")
    return raw


def decode_mac(value: str, encoding: str) -> bytes | None:
    """A MAC as written by the source (hex or base64) → 32 bytes, or ``None`` if malformed."""
    value = value.strip()
    try:
        raw = bytes.fromhex(value) if encoding == "hex" else base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        return None
    return raw if len(raw) == MAC_BYTES else None


def encode_mac(mac: bytes, encoding: str) -> str:
    return mac.hex() if encoding == "hex" else base64.b64encode(mac).decode("ascii")


class HmacVerifier(Verifier):
    """HMAC-SHA256 of the recording (whole, or per ranged response) against the source's MAC, constant-time."""

    type = TYPE
    Settings = HmacSettings

    def __init__(self, settings: HmacSettings, context):
        super().__init__(settings, context)
        self._key = key_bytes(settings)

    def begin(self, stream: Stream) -> VerifierRun:
        s = self.settings
        wanted = []
        if s.expected_from == "header":
            wanted.append(s.header)
        if s.mode == "segment":
            wanted.append(s.segment_header)
        log = ResponseLog.attach(stream, wanted) if wanted else None
        return _Run(s, self._key, stream, log)


class _Segment:
    """One response's MAC in progress: HMAC(key, be64(offset) ‖ bytes [offset, end))."""

    __slots__ = ("offset", "end", "expected", "mac", "position")

    def __init__(self, key: bytes, offset: int, end: int | None, expected: bytes):
        self.offset, self.end, self.expected = offset, end, expected
        self.mac = hmac.new(key, offset.to_bytes(8, "big"), hashlib.sha256)
        self.position = offset


class _Run(VerifierRun):
    def __init__(self, settings: HmacSettings, key: bytes, stream: Stream, log: ResponseLog | None):
        self.settings = settings
        self.key = key
        self.stream = stream
        self.log = log
        self.whole: "hmac.HMAC | None" = hmac.new(key, digestmod=hashlib.sha256)
        self.position = 0
        self.header_mac: str | None = None  # whole-recording MAC seen in response headers
        self.open: list[_Segment] = []
        self.covered: list[list[int]] = []  # merged [start, end) ranges verified by segment MACs
        self.segments_ok = 0
        self.segments_unsigned = 0
        self.responses_seen = 0

    # ---------------------------------------------------------------- streaming

    def update(self, chunk: Chunk) -> None:
        if self.log is not None:
            infos = self.log.drain()
            for info in infos:
                self._response(info)
            if infos and self.whole is not None and self.settings.mode == "segment" and self._expected_whole()[0] is None:
                # The source has answered and gives no whole-recording MAC: nothing to check
                # the whole against, so stop paying for a second HMAC pass.
                self.whole = None
        data = chunk.data
        if self.whole is not None:
            self.whole.update(data)
        start, end = chunk.offset, chunk.end
        if self.open:
            view = memoryview(data)
            for seg in list(self.open):
                lo = max(seg.position, start)
                hi = end if seg.end is None else min(seg.end, end)
                if hi > lo:
                    seg.mac.update(view[lo - start:hi - start])
                    seg.position = hi
                if seg.end is not None and seg.position >= seg.end:
                    self._close(seg)
        self.position = end

    def _response(self, info: ResponseInfo) -> None:
        self.responses_seen += 1
        s = self.settings
        rid = self.stream.id
        if s.expected_from == "header":
            value = info.headers.get(s.header.lower())
            if value is not None:
                if self.header_mac is not None and value.strip() != self.header_mac:
                    raise VerificationError(f"recording {rid}: responses disagree on the recording MAC "
                                            f"({s.header}) at byte {info.offset}", reason="hmac-inconsistent")
                self.header_mac = value.strip()
        if s.mode != "segment":
            return
        value = info.headers.get(s.segment_header.lower())
        end = info.offset + info.length if info.length is not None else None
        if value is None:
            if s.required:
                raise VerificationError(f"recording {rid}: response for bytes {info.offset}-"
                                        f"{'' if end is None else end - 1} has no {s.segment_header} header",
                                        reason="hmac-segment-missing")
            self.segments_unsigned += 1
            return
        expected = decode_mac(value, s.encoding)
        if expected is None:
            raise VerificationError(f"recording {rid}: {s.segment_header} of the response at byte {info.offset} is "
                                    f"not a {s.encoding} HMAC-SHA256", reason="hmac-malformed")
        if info.offset < self.position:
            return  # its first bytes went by already; coverage falls back to the whole MAC
        if len(self.open) >= MAX_OPEN_SEGMENTS:
            raise VerificationError(f"recording {rid}: more than {MAX_OPEN_SEGMENTS} responses overlap at byte "
                                    f"{info.offset}", reason="hmac-segment-uncovered")
        seg = _Segment(self.key, info.offset, end, expected)
        self.open.append(seg)
        if end == info.offset:
            self._close(seg)

    def _close(self, seg: _Segment) -> None:
        self.open.remove(seg)
        if not hmac.compare_digest(seg.mac.digest(), seg.expected):
            raise VerificationError(f"recording {self.stream.id}: HMAC-SHA256 of bytes {seg.offset}-{seg.position - 1} "
                                    f"does not match the response's {self.settings.segment_header}",
                                    reason="hmac-segment-mismatch")
        self.segments_ok += 1
        self._cover(seg.offset, seg.position)

    def _cover(self, start: int, end: int) -> None:
        merged: list[list[int]] = []
        for a, b in sorted([*self.covered, [start, end]]):
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self.covered = merged

    # ---------------------------------------------------------------- verdict

    def _expected_whole(self) -> tuple[str | None, str]:
        s = self.settings
        if s.expected_from == "header":
            return self.header_mac, f"response header {s.header}"
        raw = self.stream.metadata.get(s.field)
        return (None if raw is None else str(raw)), f"metadata field {s.field!r}"

    def finish(self) -> Verdict:
        s = self.settings
        rid = self.stream.id
        try:
            if self.log is not None:
                for info in self.log.drain():
                    self._response(info)
            for seg in list(self.open):
                if seg.end is None:
                    self._close(seg)  # a response of unknown length: it ran to the end of the stream
        except VerificationError as exc:
            return Verdict(TYPE, False, exc.reason, str(exc), {"mode": s.mode, "bytes": self.position})
        computed = self.whole.digest() if self.whole is not None else None
        details: dict = {"mode": s.mode, "bytes": self.position}
        if computed is not None:
            details = {TYPE: encode_mac(computed, s.encoding), **details}
        given, where = self._expected_whole()
        whole_ok: bool | None = None  # None: no whole MAC given (or it came too late to be computed)
        if given is not None and computed is not None:
            expected = decode_mac(given, s.encoding)
            if expected is None:
                return Verdict(TYPE, False, "hmac-malformed", f"recording {rid}: the MAC in {where} is not a "
                               f"{s.encoding} HMAC-SHA256", details)
            whole_ok = hmac.compare_digest(computed, expected)
            if not whole_ok:
                return Verdict(TYPE, False, "hmac-mismatch", f"recording {rid}: HMAC-SHA256 of the {self.position} "
                               f"bytes received does not match the MAC in {where}", details)
        if s.mode == "whole":
            if whole_ok is None:
                if s.required:
                    return Verdict(TYPE, False, "hmac-missing", f"recording {rid}: no MAC in {where}", details)
                return Verdict(TYPE, True, details={**details, "verified": False})
            return Verdict(TYPE, True, details={**details, "verified": True})
        covered = sum(b - a for a, b in self.covered)
        details.update(segments=self.segments_ok, covered_bytes=covered)
        if self.covered == [[0, self.position]] or self.position == 0:
            return Verdict(TYPE, True, details={**details, "verified": True})
        if whole_ok:
            return Verdict(TYPE, True, details={**details, "verified": True, "uncovered_verified_by": where})
        if not s.required and self.segments_unsigned:
            return Verdict(TYPE, True, details={**details, "verified": False})
        gap = _first_gap(self.covered, self.position)
        hint = "" if self.responses_seen else (" (the source reported no HTTP responses: segment mode needs a source "
                                                "that passes each response's headers, such as cxone)")
        return Verdict(TYPE, False, "hmac-segment-uncovered",
                       f"recording {rid}: bytes {gap[0]}-{gap[1] - 1} are covered by no verified segment MAC and no "
                       f"whole-recording MAC was given ({where}){hint}", details)


def _first_gap(covered: list[list[int]], total: int) -> tuple[int, int]:
    at = 0
    for a, b in covered:
        if a > at:
            return at, a
        at = max(at, b)
    return at, total
