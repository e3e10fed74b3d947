"""The channel's keys: the merchants' verifying keys and the platform's signing keys.

Two platform keys, as WeChat Pay has them today: the *platform certificate* key (answers
carry the certificate's serial, upper-case hex; platforms fetch the certificate from
``GET /v3/certificates``, encrypted with their APIv3 key) and the *WeChat Pay public key*
(answers carry its ``PUB_KEY_ID_...``; platforms are given the public key file). Where
the private keys come from (``wechat.keys``): the development keys shipped in
``simulator/wechat/dev_keys/`` (``source: dev``, the default: the same everywhere, so
``banksim wechat credentials`` of any install matches), RSA keys generated once under
``<state dir>/wechat-keys/`` (``source: state_dir``; a state dir keeps its keys across
restarts and resets), or PEM given in the profile. The certificate is built from its key
with fixed names, serial and validity, so the same key gives the same certificate bytes
(PKCS#1 v1.5 signatures are deterministic).

Example::

    keys = ChannelKeys(profile.wechat, state_dir=None)
    headers = keys.answer_headers(body, request_serial=None, merchant=merchant)
    keys.certificates_answer(merchant)      # the body of GET /v3/certificates
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from contracts.wechat_dev_keys import merchant_public_key as dev_merchant_public_key
from contracts.wechat_signing import (
    ALGORITHM,
    HEADER_NONCE,
    HEADER_REQUEST_ID,
    HEADER_SERIAL,
    HEADER_SIGNATURE,
    HEADER_SIGNATURE_TYPE,
    HEADER_TIMESTAMP,
    SCHEME,
    PrivateKey,
    PublicKey,
    certificate_serial,
    encrypt_resource,
    load_private_key,
    load_public_key,
    public_pem,
    sign_answer,
)
from simulator.config import WechatMerchant, WechatSettings

DEV_DIR = Path(__file__).resolve().parent / "dev_keys"
STATE_SUBDIR = "wechat-keys"
CERT_KEY_FILE = "platform_cert_key.pem"
PUB_KEY_FILE = "platform_pub_key.pem"
# Fixed certificate content: the same key always gives the same certificate.
_VALID = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2035, 12, 31, tzinfo=UTC),
          0x5B1F0E7A2C3D4E5F60718293A4B5C6D7E8F90123)
_EXPIRED = (datetime(2019, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, tzinfo=UTC),
            0x1E0D0C0B0A09080706050403020100FFEEDDCCBB)
_CERT_NONCE = "bnksimcert01"  # 12 bytes: the GCM nonce of the encrypted certificate
_CERT_AD = "certificate"


def _state_key(directory: Path, name: str) -> PrivateKey:
    """The key in ``directory/name``, generated (0600) on first use."""
    path = directory / name
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        os.replace(tmp, path)  # never a half-written key under the real name
    return load_private_key(path)


def _certificate(key: PrivateKey, not_before: datetime, not_after: datetime,
                 serial: int) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "banksim fake WeChat Pay"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA (banksim)")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(serial)
            .not_valid_before(not_before).not_valid_after(not_after)
            .sign(key, hashes.SHA256()))


@dataclass(frozen=True)
class SigningKey:
    serial: str
    key: PrivateKey


class ChannelKeys:
    """Every key the channel signs or verifies with, loaded once per profile."""

    def __init__(self, settings: WechatSettings, state_dir: Path | None) -> None:
        conf = settings.keys
        self.settings = settings
        if conf.source == "state_dir" and state_dir is not None:
            directory = state_dir / STATE_SUBDIR
            cert_key, pub_key = _state_key(directory, CERT_KEY_FILE), _state_key(directory, PUB_KEY_FILE)
        elif conf.source == "state_dir":  # in memory: fresh keys for this process
            cert_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pub_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            cert_key = load_private_key(DEV_DIR / CERT_KEY_FILE)
            pub_key = load_private_key(DEV_DIR / PUB_KEY_FILE)
        if conf.certificate_key:
            cert_key = load_private_key(conf.certificate_key)
        if conf.public_key_key:
            pub_key = load_private_key(conf.public_key_key)
        start, end, serial = _EXPIRED if conf.platform_certificate == "expired" else _VALID
        self.certificate = _certificate(cert_key, start, end, serial)
        self.certificate_pem = self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
        self.by_certificate = SigningKey(certificate_serial(self.certificate), cert_key)
        self.by_public_key = SigningKey(conf.public_key_id, pub_key)
        self.public_key_pem = public_pem(pub_key)
        self.bad_answers = conf.answer_signature == "bad"
        self._merchant_keys: dict[str, PublicKey] = {}

    # -- merchants -----------------------------------------------------------------------

    def merchant_key(self, merchant: WechatMerchant) -> PublicKey:
        """The merchant's verifying key (cached per mchid and key text)."""
        cache_key = f"{merchant.mchid}|{merchant.merchant_public_key or ''}"
        key = self._merchant_keys.get(cache_key)
        if key is None:
            key = (load_public_key(merchant.merchant_public_key) if merchant.merchant_public_key
                   else dev_merchant_public_key())
            self._merchant_keys[cache_key] = key
        return key

    # -- answers -------------------------------------------------------------------------

    def signer(self, merchant: WechatMerchant | None, request_serial: str | None) -> SigningKey:
        """The key an answer is signed with: the one the request's Wechatpay-Serial names, else
        the merchant's ``answer_key`` (the certificate when the merchant is unknown)."""
        if request_serial:
            if request_serial == self.by_public_key.serial:
                return self.by_public_key
            if request_serial.upper() == self.by_certificate.serial:
                return self.by_certificate
        if merchant is not None and merchant.answer_key == "public_key":
            return self.by_public_key
        return self.by_certificate

    def answer_headers(self, body: bytes, signer: SigningKey, timestamp: int,
                       nonce: str | None = None) -> list[tuple[bytes, bytes]]:
        """The signed headers of an answer or notification (raw ASGI header pairs); the nonce
        is random unless given (notifications: derived from the seed)."""
        nonce = nonce or secrets.token_hex(16)
        signature = sign_answer(signer.key, timestamp, nonce, body)
        if self.bad_answers:  # a signature of other bytes: well-formed, never valid
            signature = sign_answer(signer.key, timestamp, nonce, body + b" ")
        return [(HEADER_REQUEST_ID.lower().encode(), secrets.token_hex(16).encode()),
                (HEADER_TIMESTAMP.lower().encode(), str(timestamp).encode()),
                (HEADER_NONCE.lower().encode(), nonce.encode()),
                (HEADER_SIGNATURE.lower().encode(), signature.encode()),
                (HEADER_SERIAL.lower().encode(), signer.serial.encode()),
                (HEADER_SIGNATURE_TYPE.lower().encode(), SCHEME.encode())]

    def certificates_answer(self, merchant: WechatMerchant) -> dict[str, Any]:
        """The body of ``GET /v3/certificates``: the platform certificate, AEAD-encrypted with
        the merchant's APIv3 key (public-key-mode merchants get it too: it costs nothing)."""
        cert = self.certificate
        return {"data": [{
            "serial_no": self.by_certificate.serial,
            "effective_time": cert.not_valid_before_utc.isoformat(timespec="seconds"),
            "expire_time": cert.not_valid_after_utc.isoformat(timespec="seconds"),
            "encrypt_certificate": {
                "algorithm": ALGORITHM, "nonce": _CERT_NONCE, "associated_data": _CERT_AD,
                "ciphertext": encrypt_resource(merchant.api_v3_key, self.certificate_pem.encode(),
                                               _CERT_AD, _CERT_NONCE)}}]}

