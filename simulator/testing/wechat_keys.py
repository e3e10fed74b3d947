"""Test helpers for WeChat Pay APIv3 signatures with the published development keys.

Example::

    header = dev_sign("GET", "/v3/pay/transactions/out-trade-no/T1?mchid=1900000109", b"")
    assert channel_signed(response.headers, response.content)
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from functools import cache

from cryptography.hazmat.primitives.asymmetric import rsa

from contracts.wechat_dev_keys import MCHID, MERCHANT_SERIAL, merchant_private_key
from contracts.wechat_signing import PrivateKey, load_private_key, sign_request, verify_answer
from simulator.config import WechatSettings
from simulator.wechat.keys import ChannelKeys


@cache
def stranger_key() -> PrivateKey:
    """An RSA key that is nobody's: signatures made with it never verify."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def dev_sign(method: str, path: str, body: bytes, timestamp: int | None = None, nonce: str | None = None,
             *, mchid: str = MCHID, key: PrivateKey | None = None, serial: str = MERCHANT_SERIAL) -> str:
    """The Authorization header of the default profile's merchant (or the given key)."""
    return sign_request(key or merchant_private_key(), mchid, serial, method, path, body,
                        int(time.time()) if timestamp is None else timestamp,
                        nonce or secrets.token_hex(16))


@cache
def dev_channel_keys() -> ChannelKeys:
    return ChannelKeys(WechatSettings(), state_dir=None)


def channel_signed(headers: Mapping[str, str], body: bytes, keys: ChannelKeys | None = None) -> bool:
    """Whether an answer or notification carries the channel's valid signature (dev keys)."""
    keys = keys or dev_channel_keys()
    h = {k.lower(): v for k, v in headers.items()}
    serial = h.get("wechatpay-serial", "")
    signer = {keys.by_certificate.serial: keys.by_certificate,
              keys.by_public_key.serial: keys.by_public_key}.get(serial)
    return signer is not None and verify_answer(
        signer.key.public_key(), h.get("wechatpay-timestamp", ""), h.get("wechatpay-nonce", ""), body,
        h.get("wechatpay-signature", ""))


__all__ = ["channel_signed", "dev_channel_keys", "dev_sign", "load_private_key", "stranger_key"]
