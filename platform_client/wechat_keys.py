"""The platform's side of WeChat Pay APIv3 keys: its signing key and WeChat's verifying keys.

A platform signs requests with its merchant private key and verifies every answer and
notification against the key the ``Wechatpay-Serial`` names: the WeChat Pay public key
(``PUB_KEY_ID_...``, configured) or a platform certificate, fetched from
``GET /v3/certificates`` when an unknown serial appears, decrypted with the APIv3 key and
kept only while it is valid (an expired certificate never verifies anything). This is what
a real platform does; nothing here knows the simulator.

Example::

    keys = WeChatKeys(config, fetch_certificates)
    keys.verify({"Wechatpay-Serial": ..., ...}, body)      # True / False
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from contracts.wechat_dev_keys import PUBLIC_KEY_ID as DEV_PUBLIC_KEY_ID
from contracts.wechat_dev_keys import merchant_private_key, wechatpay_public_key
from contracts.wechat_signing import (
    HEADER_NONCE,
    HEADER_SERIAL,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    PrivateKey,
    PublicKey,
    ResourceDecryptError,
    certificate_serial,
    decrypt_resource,
    load_private_key,
    load_public_key,
    verify_answer,
)
from platform_client.config import ClientConfig

# GET /v3/certificates, unverified (its answer is verified with what it brings, as SDKs do).
FetchCertificates = Callable[[], bytes]


class WeChatKeys:
    def __init__(self, config: ClientConfig, fetch: FetchCertificates) -> None:
        self.config = config
        self._fetch = fetch
        self.private_key: PrivateKey = (load_private_key(config.wechat_private_key)
                                        if config.wechat_private_key else merchant_private_key())
        self.public_key_id = config.wechat_public_key_id
        self._public_key: PublicKey | None = None
        if config.wechat_public_key:
            self._public_key = load_public_key(config.wechat_public_key)
        elif config.wechat_public_key_id == DEV_PUBLIC_KEY_ID:
            self._public_key = wechatpay_public_key()
        self._certificates: dict[str, x509.Certificate] = {}
        self._lock = threading.Lock()

    def key_for(self, serial: str) -> PublicKey | None:
        """The verifying key an answer's serial names; fetches certificates once if unknown."""
        if self.public_key_id and serial == self.public_key_id:
            return self._public_key
        with self._lock:
            cert = self._certificates.get(serial.upper())
            if cert is None:
                self._refresh()
                cert = self._certificates.get(serial.upper())
        if cert is None or not _valid_now(cert):
            return None
        key = cert.public_key()
        assert isinstance(key, PublicKey)
        return key

    def _refresh(self) -> None:
        try:
            answer: dict[str, Any] = json.loads(self._fetch())
            for item in answer.get("data", []):
                enc = item["encrypt_certificate"]
                pem = decrypt_resource(self.config.wechat_api_v3_key, enc["ciphertext"],
                                       enc.get("associated_data", ""), enc["nonce"])
                cert = x509.load_pem_x509_certificate(pem)
                if certificate_serial(cert) == str(item["serial_no"]).upper() and _valid_now(cert):
                    self._certificates[certificate_serial(cert)] = cert
        except (ValueError, KeyError, TypeError, ResourceDecryptError):
            return  # nothing usable: the answer that asked stays unverified

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Whether an answer or notification carries WeChat's valid signature."""
        h = {k.lower(): v for k, v in headers.items()}
        timestamp, nonce = h.get(HEADER_TIMESTAMP.lower(), ""), h.get(HEADER_NONCE.lower(), "")
        signature, serial = h.get(HEADER_SIGNATURE.lower(), ""), h.get(HEADER_SERIAL.lower(), "")
        if not (timestamp and nonce and signature and serial):
            return False
        key = self.key_for(serial)
        return key is not None and verify_answer(key, timestamp, nonce, body, signature)


def _valid_now(cert: x509.Certificate) -> bool:
    # Validity is WeChat's wall-clock time, not a business clock.
    now = datetime.now(UTC)
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
