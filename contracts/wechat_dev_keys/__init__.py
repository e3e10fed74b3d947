"""The published development credentials of the default profile's WeChat Pay merchant.

These keys are public on purpose (they are in the source tree): they let a developer point
a WeChat Pay SDK at ``banksim serve`` at once, with no key ceremony. Never use them for
anything real. ``banksim wechat credentials`` prints the same values (and, for a profile
with keys of its own, those instead).

    apiclient_key.pem          the merchant's private key (the SDK's ``private_key``)
    apiclient_public_key.pem   its public key, which the default profile holds
    pub_key.pem                the WeChat Pay public key (public-key mode), id PUBLIC_KEY_ID

Example::

    >>> MERCHANT_SERIAL
    '3D6F2E0B5A7C4E19B8A1D2C3E4F5061728394A5B'
    >>> merchant_private_key().key_size
    2048
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from contracts.wechat_signing import PrivateKey, PublicKey, load_private_key, load_public_key

HERE = Path(__file__).resolve().parent
MCHID = "1900000109"
APPID = "wxd678efh567hg6787"
APIV3_KEY = "banksimdevapiv3key0123456789abcd"
MERCHANT_SERIAL = "3D6F2E0B5A7C4E19B8A1D2C3E4F5061728394A5B"
PUBLIC_KEY_ID = "PUB_KEY_ID_0119000001092026120300000001"
MERCHANT_PRIVATE_KEY_FILE = HERE / "apiclient_key.pem"
MERCHANT_PUBLIC_KEY_FILE = HERE / "apiclient_public_key.pem"
PUBLIC_KEY_FILE = HERE / "pub_key.pem"


@cache
def merchant_private_key() -> PrivateKey:
    return load_private_key(MERCHANT_PRIVATE_KEY_FILE)


@cache
def merchant_public_key() -> PublicKey:
    return load_public_key(MERCHANT_PUBLIC_KEY_FILE)


@cache
def wechatpay_public_key() -> PublicKey:
    """The WeChat Pay public key of the development platform keys (id :data:`PUBLIC_KEY_ID`)."""
    return load_public_key(PUBLIC_KEY_FILE)
