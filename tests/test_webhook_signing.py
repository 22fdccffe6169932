"""Standard Webhooks signing: our implementation against the reference ``standardwebhooks`` package."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from hypothesis import given, settings as hsettings, strategies as st
from standardwebhooks import Webhook, WebhookVerificationError

from voxpipe_webhook.signing import (Secret, SignatureError, generate_secret, parse_secret, sign, signature,
                                     signed_content, verify)

KEY1 = bytes(range(32))
KEY2 = bytes(range(100, 140))
S1 = "whsec_" + base64.b64encode(KEY1).decode()
S2 = "whsec_" + base64.b64encode(KEY2).decode()


def test_signature_matches_the_spec_formula_and_reference_library():
    body = b'{"recording_id":"r1","success":true}'
    headers = sign("msg_abc", 1_700_000_000, body, [parse_secret(S1)])
    assert headers["webhook-id"] == "msg_abc" and headers["webhook-timestamp"] == "1700000000"
    expected = base64.b64encode(hmac.new(KEY1, b"msg_abc.1700000000." + body, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == "v1," + expected
    # the reference implementation's own signer agrees byte for byte
    from datetime import datetime, timezone
    ref = Webhook(S1).sign("msg_abc", datetime.fromtimestamp(1_700_000_000, tz=timezone.utc), body.decode())
    assert ref == headers["webhook-signature"]


def test_reference_library_verifies_fresh_signature():
    body = b'{"a":1}'
    headers = sign("msg_1", int(time.time()), body, [parse_secret(S1)])
    assert Webhook(S1).verify(body, headers) == {"a": 1}
    with pytest.raises(WebhookVerificationError):
        Webhook(S1).verify(b'{"a":2}', headers)  # tampered body
    with pytest.raises(WebhookVerificationError):
        Webhook(S2).verify(body, headers)  # other key


def test_rotation_two_secrets_two_signatures_each_verifiable():
    body = b'{"event":"x"}'
    headers = sign("msg_rot", int(time.time()), body, [parse_secret(S1), parse_secret(S2)])
    sigs = headers["webhook-signature"].split(" ")
    assert len(sigs) == 2 and all(s.startswith("v1,") for s in sigs) and sigs[0] != sigs[1]
    for secret in (S1, S2):
        Webhook(secret).verify(body, headers)  # a receiver holding either key accepts
        assert verify(body, headers, [parse_secret(secret)]) == "msg_rot"


@hsettings(max_examples=60, deadline=None)
@given(body=st.binary(max_size=300).map(lambda b: b.decode("latin-1").encode("utf-8")),
       msg_id=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=40),
       key=st.binary(min_size=24, max_size=64))
def test_cross_check_any_body_id_and_key(body, msg_id, key):
    secret = "whsec_" + base64.b64encode(key).decode()
    now = int(time.time())
    headers = sign(msg_id, now, body, [parse_secret(secret)])
    Webhook(secret).verify(body, headers, json_parse=False)
    assert verify(body, headers, [parse_secret(secret)], now=now) == msg_id


def test_verify_rejects_tampering_missing_headers_and_stale_timestamps():
    key = parse_secret(S1)
    body = b"{}"
    now = 1_700_000_000
    headers = sign("msg_x", now, body, [key])
    assert verify(body, headers, [key], now=now + 299) == "msg_x"
    with pytest.raises(SignatureError, match="in the past"):
        verify(body, headers, [key], now=now + 301)
    with pytest.raises(SignatureError, match="in the future"):
        verify(body, headers, [key], now=now - 301)
    with pytest.raises(SignatureError, match="no matching signature"):
        verify(b"{ }", headers, [key], now=now)
    with pytest.raises(SignatureError, match="no matching signature"):
        verify(body, {**headers, "webhook-id": "msg_y"}, [key], now=now)
    with pytest.raises(SignatureError, match="missing header"):
        verify(body, {k: v for k, v in headers.items() if k != "webhook-signature"}, [key], now=now)
    with pytest.raises(SignatureError, match="integer"):
        verify(body, {**headers, "webhook-timestamp": "12.5"}, [key], now=now)
    # signatures of other schemes are skipped, ours still counts; header names are case-insensitive
    mixed = {k.upper(): v for k, v in headers.items()}
    mixed["WEBHOOK-SIGNATURE"] = "v1a,AAAA " + headers["webhook-signature"]
    assert verify(body, mixed, [key], now=now) == "msg_x"


def test_parse_secret_errors_never_echo_the_value():
    short = "whsec_" + base64.b64encode(b"tooshort-secret-value").decode()
    for bad, why in [("hunter2-not-prefixed-AAAAAAAAAAAAAAAAAAAAAAAAAA", "not a Standard Webhooks secret"),
                     ("whsec_!!!notbase64***", "not valid base64"), (short, "21 bytes")]:
        with pytest.raises(ValueError) as info:
            parse_secret(bad)
        assert why in str(info.value)
        assert bad not in str(info.value) and bad[6:] not in str(info.value)
    secret = parse_secret(S1)
    assert KEY1.hex() not in repr(secret) and S1[6:] not in repr(secret) and S1[6:] not in str(secret)
    unpadded = S1.rstrip("=")
    assert parse_secret(unpadded) == secret  # unpadded base64 accepted, as by the reference library


def test_generated_secret_round_trips_through_both_implementations():
    text = generate_secret()
    assert text.startswith("whsec_") and len(parse_secret(text).key) == 32
    body = b"[]"
    headers = sign("msg_gen", int(time.time()), body, [parse_secret(text)])
    Webhook(text).verify(body, headers)


def test_sign_requires_a_secret_and_a_clean_id():
    with pytest.raises(ValueError, match="at least one"):
        sign("msg", 1, b"", [])
    with pytest.raises(ValueError, match="whitespace"):
        sign("msg 1", 1, b"", [parse_secret(S1)])
    assert signed_content("i", 5, b"b") == b"i.5.b"
    assert signature(Secret(KEY1), "i", 5, b"b").startswith("v1,")


def test_receiver_examples_in_the_docs_verify_real_deliveries(tmp_path):
    """docs/webhooks.md's receiver code, run as written (with our secret) on a signed delivery."""
    import re
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "webhooks.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert len(blocks) == 2
    body = b'{"recording_id":"r1","type":"stream.stored","location":"/a/r1.wav.gz","sha256":"00"}'
    headers = sign("msg_doc", int(time.time()), body, [parse_secret(S2), parse_secret(S1)])
    library, plain = ({}, {})
    exec(blocks[0].replace('"whsec_..."', repr(S1)), library)
    exec(blocks[1].replace('"whsec_..."', repr(S1)), plain)
    assert library["handle_delivery"](body, headers) == 204 and library["seen_ids"] == {"msg_doc"}
    assert library["handle_delivery"](body + b" ", headers) == 400
    assert plain["verify_delivery"](body, headers)["recording_id"] == "r1"
    with pytest.raises(ValueError):
        plain["verify_delivery"](body.replace(b"r1", b"r2"), headers)
