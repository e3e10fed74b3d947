"""Signing and encryption of WeChat Pay APIv3, as WeChat Pay does it; used by both sides.

Requests (platform -> channel) carry one header (one line)::

    Authorization: WECHATPAY2-SHA256-RSA2048 mchid="1900000109",nonce_str="...",
                   timestamp="1700000000",serial_no="<merchant certificate serial>",
                   signature="..."

    signature = base64(SHA256withRSA(merchant private key, METHOD + "\\n" + URL + "\\n"
                                     + TIMESTAMP + "\\n" + NONCE + "\\n" + BODY + "\\n"))

where ``URL`` is the path and query exactly as sent and SHA256withRSA is RSASSA-PKCS1-v1_5
with SHA-256. Answers (channel -> platform) and payment notifications carry
``Wechatpay-Timestamp``, ``Wechatpay-Nonce``, ``Wechatpay-Serial``, ``Wechatpay-Signature``
(and ``Wechatpay-Signature-Type: WECHATPAY2-SHA256-RSA2048``): SHA256withRSA with the
platform's private key over ``TIMESTAMP + "\\n" + NONCE + "\\n" + BODY + "\\n"``, verified with
the platform certificate whose serial (upper-case hex) is ``Wechatpay-Serial``, or with the
WeChat Pay public key when the serial is its ``PUB_KEY_ID_...``. Resources (notifications,
platform certificates) are AEAD_AES_256_GCM with the merchant's 32-byte APIv3 key:
``ciphertext`` is base64 of the cipher text followed by the 16-byte tag.

Example::

    >>> from contracts.wechat_dev_keys import merchant_private_key, merchant_public_key
    >>> header = sign_request(merchant_private_key(), "1900000109", "SERIAL1", "GET",
    ...                       "/v3/pay/x?mchid=1", b"", timestamp=1700000000, nonce="n0nce")
    >>> auth = parse_authorization(header)
    >>> auth.mchid, auth.serial_no
    ('1900000109', 'SERIAL1')
    >>> verify_request(merchant_public_key(), auth, "GET", "/v3/pay/x?mchid=1", b"")
    True
    >>> secret = encrypt_resource("0" * 32, b'{"a":1}', "transaction", "123456789012")
    >>> decrypt_resource("0" * 32, secret, "transaction", "123456789012")
    b'{"a":1}'
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SCHEME = "WECHATPAY2-SHA256-RSA2048"
HEADER_AUTHORIZATION = "Authorization"
HEADER_TIMESTAMP = "Wechatpay-Timestamp"
HEADER_NONCE = "Wechatpay-Nonce"
HEADER_SIGNATURE = "Wechatpay-Signature"
HEADER_SERIAL = "Wechatpay-Serial"
HEADER_SIGNATURE_TYPE = "Wechatpay-Signature-Type"
HEADER_REQUEST_ID = "Request-ID"
ALGORITHM = "AEAD_AES_256_GCM"
PUBLIC_KEY_ID_PREFIX = "PUB_KEY_ID_"

PrivateKey: TypeAlias = rsa.RSAPrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey

_PAIR = re.compile(r'\s*([a-z_]+)="([^"]*)"\s*')
_FIELDS = ("mchid", "nonce_str", "timestamp", "serial_no", "signature")
_NONCE = re.compile(r"^[0-9A-Za-z_-]{1,32}$")
_SERIAL = re.compile(r"^[0-9A-Za-z_]{1,64}$")


class SignatureFormatError(ValueError):
    """The Authorization header is missing parts or is not in the scheme's shape."""


class ResourceDecryptError(ValueError):
    """The encrypted resource does not decrypt with this key, nonce and associated data."""


class KeyFormatError(ValueError):
    """A PEM text that is not an RSA key or certificate of the expected kind."""


@dataclass(frozen=True)
class Authorization:
    """The parts of a request's ``Authorization`` header."""

    mchid: str
    nonce: str
    timestamp: str
    serial_no: str
    signature: str


# -- keys ---------------------------------------------------------------------------------------


def _pem(source: str | bytes | Path) -> bytes:
    """PEM bytes from PEM text or a file path (what a profile or config may hold)."""
    if isinstance(source, Path):
        return source.read_bytes()
    data = source.encode() if isinstance(source, str) else source
    if b"-----BEGIN" in data:
        return data
    return Path(data.decode()).expanduser().read_bytes()


def load_private_key(source: str | bytes | Path) -> PrivateKey:
    """An RSA private key from PEM text (PKCS#8 or PKCS#1) or a PEM file's path."""
    try:
        key = serialization.load_pem_private_key(_pem(source), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm, OSError) as exc:
        raise KeyFormatError(f"not an RSA private key: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyFormatError("not an RSA private key")
    return key


def load_public_key(source: str | bytes | Path) -> PublicKey:
    """An RSA public key from a PEM public key or an X.509 certificate (text or file path)."""
    data = _pem(source)
    key: object
    try:
        if b"CERTIFICATE" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFormatError(f"not an RSA public key or certificate: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyFormatError("not an RSA public key")
    return key


def public_pem(key: PrivateKey | PublicKey) -> str:
    """The SubjectPublicKeyInfo PEM of a key (what a WeChat Pay public key file holds)."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def certificate_serial(cert: x509.Certificate) -> str:
    """A certificate's serial as WeChat Pay writes it: upper-case hex without leading zeros."""
    return format(cert.serial_number, "X")


# -- SHA256withRSA ------------------------------------------------------------------------------


def rsa_sign(key: PrivateKey, message: bytes) -> str:
    """base64 of RSASSA-PKCS1-v1_5 with SHA-256 of ``message``."""
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def rsa_verify(key: PublicKey, message: bytes, signature: str) -> bool:
    """Whether ``signature`` (base64) is ``key``'s SHA256withRSA signature of ``message``."""
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True


# -- requests -----------------------------------------------------------------------------------


def request_message(method: str, url: str, timestamp: int | str, nonce: str, body: bytes) -> bytes:
    """The bytes a request signature covers (``url``: path and query exactly as sent)."""
    head = f"{method.upper()}\n{url}\n{timestamp}\n{nonce}\n".encode()
    return head + body + b"\n"


def sign_request(key: PrivateKey, mchid: str, serial_no: str, method: str, url: str, body: bytes,
                 timestamp: int, nonce: str) -> str:
    """The ``Authorization`` header value for one request."""
    signature = rsa_sign(key, request_message(method, url, timestamp, nonce, body))
    return (f'{SCHEME} mchid="{mchid}",nonce_str="{nonce}",timestamp="{timestamp}",'
            f'serial_no="{serial_no}",signature="{signature}"')


def parse_authorization(header: str) -> Authorization:
    """Split an ``Authorization`` value; raises :class:`SignatureFormatError` if malformed.

    The parts may come in any order (WeChat's SDKs differ), each exactly once.
    """
    scheme, _, rest = header.strip().partition(" ")
    if scheme != SCHEME:
        raise SignatureFormatError(f"the Authorization scheme must be {SCHEME}")
    found: dict[str, str] = {}
    for part in rest.split(","):
        m = _PAIR.fullmatch(part)
        if m is None:
            raise SignatureFormatError(f"malformed Authorization part {part.strip()[:40]!r}")
        if m.group(1) in found:
            raise SignatureFormatError(f"{m.group(1)} is given twice")
        found[m.group(1)] = m.group(2)
    missing = [name for name in _FIELDS if not found.get(name)]
    if missing:
        raise SignatureFormatError(f"the Authorization header lacks {', '.join(missing)}")
    if not found["timestamp"].isdigit() or len(found["timestamp"]) > 12:
        raise SignatureFormatError("timestamp must be Unix seconds")
    if not _NONCE.fullmatch(found["nonce_str"]):
        raise SignatureFormatError("nonce_str must be 1 to 32 letters, digits, '-' or '_'")
    if not _SERIAL.fullmatch(found["serial_no"]):
        raise SignatureFormatError("serial_no must be a certificate serial (hex)")
    return Authorization(found["mchid"], found["nonce_str"], found["timestamp"],
                         found["serial_no"], found["signature"])


def verify_request(key: PublicKey, auth: Authorization, method: str, url: str, body: bytes) -> bool:
    """Whether ``auth`` is the merchant's valid signature of this request."""
    return rsa_verify(key, request_message(method, url, auth.timestamp, auth.nonce, body),
                      auth.signature)


# -- answers and notifications ------------------------------------------------------------------


def answer_message(timestamp: int | str, nonce: str, body: bytes) -> bytes:
    """The bytes an answer's or a notification's ``Wechatpay-Signature`` covers."""
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def sign_answer(key: PrivateKey, timestamp: int | str, nonce: str, body: bytes) -> str:
    """``Wechatpay-Signature`` of an answer or notification body."""
    return rsa_sign(key, answer_message(timestamp, nonce, body))


def verify_answer(key: PublicKey, timestamp: int | str, nonce: str, body: bytes,
                  signature: str) -> bool:
    """Whether ``signature`` is the platform's signature of this answer or notification."""
    return rsa_verify(key, answer_message(timestamp, nonce, body), signature)


# -- AEAD_AES_256_GCM ---------------------------------------------------------------------------


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
    """The plaintext of a resource; :class:`ResourceDecryptError` if it does not decrypt."""
    try:
        sealed = base64.b64decode(ciphertext_b64, validate=True)
        return _aead(api_v3_key).decrypt(nonce.encode("utf-8"), sealed,
                                         associated_data.encode("utf-8"))
    except (binascii.Error, InvalidTag, ValueError) as exc:
        raise ResourceDecryptError("the resource does not decrypt with this key, nonce and "
                                   "associated data") from exc
