"""Signing and encryption of the fake WeChat Pay channel (API v3 style), used by both sides.

Requests (platform -> channel) carry one header::

    Authorization: WECHATPAY2-SHA256-HMAC mchid="1900000109",nonce_str="...",
                   timestamp="1700000000",signature="..."          (one line)

    signature = base64(HMAC-SHA256(api_key, METHOD + "\\n" + URL_PATH_WITH_QUERY + "\\n"
                                            + TIMESTAMP + "\\n" + NONCE + "\\n" + BODY + "\\n"))

Payment notifications (channel -> platform) carry ``Wechatpay-Timestamp``,
``Wechatpay-Nonce``, ``Wechatpay-Signature`` and ``Wechatpay-Serial``; the signature is
``base64(HMAC-SHA256(api_key, TIMESTAMP + "\\n" + NONCE + "\\n" + BODY + "\\n"))`` over the raw
body. The notification's ``resource`` is AES-256-GCM encrypted with the merchant's 32-byte
``api_v3_key``: ``ciphertext`` is base64 of the cipher text followed by the 16-byte tag, as
real WeChat Pay does. Real WeChat Pay signs with RSA; a shared HMAC key keeps the fake free
of certificates while the wire shape (headers, string to sign, encrypted resource) stays.

Example::

    >>> header = sign_request("key", "1900000109", "GET", "/wechat/v3/pay/x?mchid=1", b"",
    ...                       timestamp=1700000000, nonce="n0nce")
    >>> verify_request("key", header, "GET", "/wechat/v3/pay/x?mchid=1", b"")
    True
    >>> parse_authorization(header).mchid
    '1900000109'
    >>> secret = encrypt_resource("0" * 32, b'{"a":1}', "transaction", "123456789012")
    >>> decrypt_resource("0" * 32, secret, "transaction", "123456789012")
    b'{"a":1}'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SCHEME = "WECHATPAY2-SHA256-HMAC"
HEADER_AUTHORIZATION = "Authorization"
HEADER_TIMESTAMP = "Wechatpay-Timestamp"
HEADER_NONCE = "Wechatpay-Nonce"
HEADER_SIGNATURE = "Wechatpay-Signature"
HEADER_SERIAL = "Wechatpay-Serial"
SERIAL = "BANKSIM-FAKE"
ALGORITHM = "AEAD_AES_256_GCM"

_PAIR = re.compile(r'\s*([a-z_]+)="([^"]*)"\s*')
_FIELDS = ("mchid", "nonce_str", "timestamp", "signature")


class SignatureFormatError(ValueError):
    """The Authorization header is missing parts or is not in the scheme's shape."""


class ResourceDecryptError(ValueError):
    """The encrypted resource does not decrypt with this key, nonce and associated data."""


@dataclass(frozen=True)
class Authorization:
    """The parts of a request's ``Authorization`` header."""

    mchid: str
    nonce: str
    timestamp: str
    signature: str


def _hmac_b64(api_key: str, message: bytes) -> str:
    digest = hmac.new(api_key.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def request_message(method: str, path_with_query: str, timestamp: int | str, nonce: str,
                    body: bytes) -> bytes:
    """The bytes a request signature covers."""
    head = f"{method.upper()}\n{path_with_query}\n{timestamp}\n{nonce}\n".encode()
    return head + body + b"\n"


def sign_request(api_key: str, mchid: str, method: str, path_with_query: str, body: bytes,
                 timestamp: int, nonce: str) -> str:
    """The ``Authorization`` header value for one request (the path exactly as sent)."""
    signature = _hmac_b64(api_key, request_message(method, path_with_query, timestamp, nonce, body))
    return (f'{SCHEME} mchid="{mchid}",nonce_str="{nonce}",timestamp="{timestamp}",'
            f'signature="{signature}"')


def parse_authorization(header: str) -> Authorization:
    """Split an ``Authorization`` value; raises :class:`SignatureFormatError` if malformed."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme != SCHEME:
        raise SignatureFormatError(f"the Authorization scheme must be {SCHEME}")
    found: dict[str, str] = {}
    for part in rest.split(","):
        m = _PAIR.fullmatch(part)
        if m is None:
            raise SignatureFormatError(f"malformed Authorization part {part.strip()!r}")
        if m.group(1) in found:
            raise SignatureFormatError(f"{m.group(1)} is given twice")
        found[m.group(1)] = m.group(2)
    missing = [name for name in _FIELDS if not found.get(name)]
    if missing:
        raise SignatureFormatError(f"the Authorization header lacks {', '.join(missing)}")
    if not found["timestamp"].isdigit() or len(found["timestamp"]) > 12:
        raise SignatureFormatError("timestamp must be Unix seconds")
    return Authorization(found["mchid"], found["nonce_str"], found["timestamp"], found["signature"])


def verify_request(api_key: str, authorization: str, method: str, path_with_query: str,
                   body: bytes) -> bool:
    """Whether ``authorization`` is a valid signature of this request under ``api_key``."""
    try:
        auth = parse_authorization(authorization)
    except SignatureFormatError:
        return False
    expected = _hmac_b64(api_key, request_message(method, path_with_query, auth.timestamp,
                                                  auth.nonce, body))
    return hmac.compare_digest(expected, auth.signature)


def notification_message(timestamp: int | str, nonce: str, body: bytes) -> bytes:
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def sign_notification(api_key: str, timestamp: int | str, nonce: str, body: bytes) -> str:
    """``Wechatpay-Signature`` of a notification body."""
    return _hmac_b64(api_key, notification_message(timestamp, nonce, body))


def verify_notification(api_key: str, timestamp: int | str, nonce: str, body: bytes,
                        signature: str) -> bool:
    """Whether ``signature`` is the channel's signature of this notification."""
    return hmac.compare_digest(sign_notification(api_key, timestamp, nonce, body), signature)


def _aead(api_v3_key: str) -> AESGCM:
    key = api_v3_key.encode("utf-8")
    if len(key) != 32:
        raise ValueError(f"api_v3_key must be exactly 32 bytes, got {len(key)}")
    return AESGCM(key)


def encrypt_resource(api_v3_key: str, plaintext: bytes, associated_data: str, nonce: str) -> str:
    """Base64 of AES-256-GCM(plaintext) with the tag appended (the ``ciphertext`` field)."""
    sealed = _aead(api_v3_key).encrypt(nonce.encode("utf-8"), plaintext,
                                       associated_data.encode("utf-8"))
    return base64.b64encode(sealed).decode("ascii")


def decrypt_resource(api_v3_key: str, ciphertext_b64: str, associated_data: str, nonce: str) -> bytes:
    """The plaintext of a notification resource; :class:`ResourceDecryptError` if it fails."""
    try:
        sealed = base64.b64decode(ciphertext_b64, validate=True)
        return _aead(api_v3_key).decrypt(nonce.encode("utf-8"), sealed,
                                         associated_data.encode("utf-8"))
    except (binascii.Error, InvalidTag) as exc:
        raise ResourceDecryptError("the resource does not decrypt with this key, nonce and "
                                   "associated data") from exc
