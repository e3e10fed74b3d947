"""contracts.wechat_signing: SHA256withRSA request and answer signatures, resource encryption."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.wechat_dev_keys import MERCHANT_SERIAL, merchant_private_key, merchant_public_key
from contracts.wechat_signing import (
    SCHEME,
    ResourceDecryptError,
    SignatureFormatError,
    decrypt_resource,
    encrypt_resource,
    parse_authorization,
    sign_answer,
    sign_request,
    verify_answer,
    verify_request,
)
from simulator.testing.wechat_keys import stranger_key

V3_KEY = "banksimdevapiv3key0123456789abcd"
PATH = "/v3/pay/transactions/out-trade-no/TOPUP-0001?mchid=1900000109"


def test_request_signature_is_sha256_with_rsa_over_the_documented_string() -> None:
    header = sign_request(merchant_private_key(), "1900000109", MERCHANT_SERIAL, "post",
                          "/v3/pay/transactions/native", b'{"a":1}', 1700000000, "n0nce")
    message = b'POST\n/v3/pay/transactions/native\n1700000000\nn0nce\n{"a":1}\n'
    auth = parse_authorization(header)
    # PKCS#1 v1.5 is deterministic: the one valid signature of this message under this key.
    expected = merchant_private_key().sign(message, padding.PKCS1v15(), hashes.SHA256())
    assert base64.b64decode(auth.signature) == expected
    assert header == (f'{SCHEME} mchid="1900000109",nonce_str="n0nce",timestamp="1700000000",'
                      f'serial_no="{MERCHANT_SERIAL}",signature="{auth.signature}"')


@settings(max_examples=15, deadline=None)
@given(body=st.binary(max_size=200), nonce=st.text("abcXYZ0129_-", min_size=1, max_size=32),
       timestamp=st.integers(min_value=0, max_value=10**11))
def test_a_signed_request_verifies_and_any_change_breaks_it(body: bytes, nonce: str,
                                                            timestamp: int) -> None:
    auth = parse_authorization(sign_request(merchant_private_key(), "1900000109", MERCHANT_SERIAL,
                                            "GET", PATH, body, timestamp, nonce))
    key = merchant_public_key()
    assert verify_request(key, auth, "GET", PATH, body)
    assert not verify_request(key, auth, "POST", PATH, body)
    assert not verify_request(key, auth, "GET", PATH + "0", body)
    assert not verify_request(key, auth, "GET", PATH, body + b"x")
    assert not verify_request(stranger_key().public_key(), auth, "GET", PATH, body)


def test_authorization_parts_in_any_order_and_malformed_headers_refused() -> None:
    header = sign_request(merchant_private_key(), "1900000109", MERCHANT_SERIAL, "GET", PATH, b"",
                          1700000000, "abc")
    auth = parse_authorization(header)
    assert (auth.mchid, auth.nonce, auth.timestamp, auth.serial_no) == \
        ("1900000109", "abc", "1700000000", MERCHANT_SERIAL)
    # wechatpayv3 writes signature before timestamp and serial_no: the order is free.
    reordered = (f'{SCHEME} mchid="1900000109",nonce_str="abc",signature="{auth.signature}",'
                 f'timestamp="1700000000",serial_no="{MERCHANT_SERIAL}"')
    assert parse_authorization(reordered) == auth
    for bad in ("", "Bearer x", f'{SCHEME} mchid="1"', f'{SCHEME} mchid=1,nonce_str="a"',
                header.replace('timestamp="1700000000"', 'timestamp="soon"'),
                header.replace(f'serial_no="{MERCHANT_SERIAL}"', 'serial_no=""'),
                header.replace('nonce_str="abc"', 'nonce_str="a b"'),
                header.replace("WECHATPAY2-SHA256-RSA2048", "WECHATPAY2-SHA256-HMAC"),
                header + ',mchid="2"'):
        with pytest.raises(SignatureFormatError):
            parse_authorization(bad)


def test_answer_signature_round_trip() -> None:
    body = '{"id":"x","summary":"支付成功"}'.encode()
    signature = sign_answer(merchant_private_key(), 1700000000, "nonce", body)
    key = merchant_public_key()
    assert verify_answer(key, "1700000000", "nonce", body, signature)
    assert not verify_answer(key, "1700000001", "nonce", body, signature)
    assert not verify_answer(key, "1700000000", "nonce", body + b" ", signature)
    assert not verify_answer(key, "1700000000", "nonce", body, "not base64!")


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
