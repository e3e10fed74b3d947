"""The order types of WeChat Pay APIv3 this channel takes: NATIVE, JSAPI, APP and H5.

They differ only in how the user reaches the cashier, which is the answer to the create
call: NATIVE a QR-code ``code_url``, JSAPI (official account / mini program) and APP a
``prepay_id`` the client SDK opens, H5 an ``h5_url`` for a mobile browser. The user "pays"
any of them through the control API. The trade type shows in queries, notifications and
the bill's 交易类型 column.

Example::

    >>> ANSWER_KEYS["H5"]
    'h5_url'
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any, TypeAlias

from simulator.domain.wechat_rules import code_url

Row: TypeAlias = sqlite3.Row | Mapping[str, Any]
TRADE_TYPES = ("NATIVE", "JSAPI", "APP", "H5")
ANSWER_KEYS = {"NATIVE": "code_url", "JSAPI": "prepay_id", "APP": "prepay_id", "H5": "h5_url"}


def answer_value(trade_type: str, seed: int, mchid: str, out_trade_no: str) -> str:
    """The create answer's value, derived from the seed like the NATIVE ``code_url``."""
    token = code_url(seed, mchid, out_trade_no).rsplit("=", 1)[1]
    if trade_type == "NATIVE":
        return code_url(seed, mchid, out_trade_no)
    if trade_type == "H5":
        return f"https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=wx{token}&package=banksim"
    return f"wx{token}{mchid[-6:]}banksim"


def _content(row: Row) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(row["fingerprint"])
    return data


def order_trade_type(row: Row) -> str:
    return str(_content(row).get("trade_type", "NATIVE"))


def order_openid(row: Row) -> str | None:
    value = _content(row).get("openid")
    return None if value is None else str(value)
