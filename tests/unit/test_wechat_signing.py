"""contracts.wechat_signing: request and notification signatures, resource encryption."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.wechat_signing import (
    SCHEME,
    ResourceDecryptError,
    SignatureFormatError,
    decrypt_resource,
    encrypt_resource,
    parse_authorization,
    sign_notification,
    sign_request,
    verify_notification,
    verify_request,
)

KEY = "banksim-dev-wechat-key"
V3_KEY = "banksimdevapiv3key0123456789abcd"
PATH = "/wechat/v3/pay/transactions/out-trade-no/TOPUP-0001?mchid=1900000109"


def test_request_signature_matches_the_documented_string_to_sign() -> None:
    import hashlib
    import hmac

    header = sign_request(KEY, "1900000109", "post", "/wechat/v3/pay/transactions/native",
                          b'{"a":1}', 1700000000, "n0nce")
    message = b'POST\n/wechat/v3/pay/transactions/native\n1700000000\nn0nce\n{"a":1}\n'
    expected = base64.b64encode(hmac.new(KEY.encode(), message, hashlib.sha256).digest()).decode()
    assert header == (f'{SCHEME} mchid="1900000109",nonce_str="n0nce",timestamp="1700000000",'
                      f'signature="{expected}"')


@settings(max_examples=50, deadline=None)
@given(body=st.binary(max_size=200), nonce=st.text("abcXYZ0129_-", min_size=1, max_size=32),
       timestamp=st.integers(min_value=0, max_value=10**11))
def test_a_signed_request_verifies_and_any_change_breaks_it(body: bytes, nonce: str,
                                                            timestamp: int) -> None:
    header = sign_request(KEY, "1900000109", "GET", PATH, body, timestamp, nonce)
    assert verify_request(KEY, header, "GET", PATH, body)
    assert not verify_request(KEY, header, "POST", PATH, body)
    assert not verify_request(KEY, header, "GET", PATH + "0", body)
    assert not verify_request(KEY, header, "GET", PATH, body + b"x")
    assert not verify_request("another-key", header, "GET", PATH, body)


def test_authorization_parts_are_parsed_and_malformed_headers_refused() -> None:
    header = sign_request(KEY, "1900000109", "GET", PATH, b"", 1700000000, "abc")
    auth = parse_authorization(header)
    assert (auth.mchid, auth.nonce, auth.timestamp) == ("1900000109", "abc", "1700000000")
    for bad in ("", "Bearer x", f'{SCHEME} mchid="1"', f'{SCHEME} mchid=1,nonce_str="a"',
                header.replace('timestamp="1700000000"', 'timestamp="soon"'),
                header + ',mchid="2"'):
        with pytest.raises(SignatureFormatError):
            parse_authorization(bad)
        assert not verify_request(KEY, bad, "GET", PATH, b"")


def test_notification_signature_round_trip() -> None:
    body = '{"id":"x","summary":"支付成功"}'.encode()
    signature = sign_notification(KEY, 1700000000, "nonce", body)
    assert verify_notification(KEY, "1700000000", "nonce", body, signature)
    assert not verify_notification(KEY, "1700000001", "nonce", body, signature)
    assert not verify_notification(KEY, "1700000000", "nonce", body + b" ", signature)


@settings(max_examples=50, deadline=None)
@given(plaintext=st.binary(max_size=500), nonce=st.text("abcdefXYZ0123", min_size=12, max_size=12))
def test_resource_encryption_round_trip(plaintext: bytes, nonce: str) -> None:
    sealed = encrypt_resource(V3_KEY, plaintext, "transaction", nonce)
    # Cipher text followed by the 16-byte GCM tag, as real WeChat Pay sends it.
    assert len(base64.b64decode(sealed)) == len(plaintext) + 16
    assert decrypt_resource(V3_KEY, sealed, "transaction", nonce) == plaintext


def test_resource_decryption_fails_loudly_with_anything_wrong() -> None:
    sealed = encrypt_resource(V3_KEY, b'{"trade_state":"SUCCESS"}', "transaction", "123456789012")
    for key, ad, nonce, text in ((V3_KEY[::-1], "transaction", "123456789012", sealed),
                                 (V3_KEY, "refund", "123456789012", sealed),
                                 (V3_KEY, "transaction", "123456789013", sealed),
                                 (V3_KEY, "transaction", "123456789012", "not base64!")):
        with pytest.raises(ResourceDecryptError):
            decrypt_resource(key, text, ad, nonce)
    with pytest.raises(ValueError, match="32 bytes"):
        encrypt_resource("short", b"", "transaction", "123456789012")
