"""The WeChat Pay channel (APIv3) as the platform calls it: orders, queries, bills.

Requests are signed SHA256withRSA with the merchant's private key
(``contracts.wechat_signing.sign_request``) over the exact path and body sent, to WeChat's
own paths (``/v3/...``). Every successful answer's ``Wechatpay-Signature`` is verified
(:mod:`platform_client.wechat_keys`) before it is believed: one that does not verify is
``WeChatError("ANSWER_SIGNATURE")``. Errors come back as :class:`WeChatError` with the
channel's code (``ORDER_NOT_EXIST``, ``STATEMENT_CREATING`` ...), or ``NETWORK`` when the
channel could not be reached. A downloaded bill is checked against the SHA-1 the channel
announced.

Example::

    wx = WeChatClient(config)
    wx.create_native_order("TOPUP-u1-1", 10000, "余额充值", config.notify_endpoint)
    wx.query_order("TOPUP-u1-1")["trade_state"]        # 'NOTPAY' until the user pays
    data = wx.trade_bill("2026-01-05")                  # the ALL bill's bytes
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from contracts.wechat_signing import HEADER_SERIAL, sign_request
from platform_client.config import ClientConfig
from platform_client.errors import BillError, WeChatError
from platform_client.wechat_keys import WeChatKeys

CERTIFICATES_PATH = "/v3/certificates"


class WeChatClient:
    def __init__(self, config: ClientConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self.http = httpx.Client(base_url=config.wechat_base_url, timeout=config.http_timeout_s,
                                 transport=transport)
        self._base = config.wechat_base_url.rstrip("/")
        self._timeout = httpx.Timeout(config.http_timeout_s).as_dict()
        self.keys = WeChatKeys(config, lambda: self._request("GET", CERTIFICATES_PATH, verify=False).content)

    def close(self) -> None:
        self.http.close()

    def verify_notification(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Whether a notification carries WeChat's valid signature (platform key by serial)."""
        return self.keys.verify(headers, body)

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None, *,
                 verify: bool = True) -> httpx.Response:
        data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        # The signature's timestamp is wall-clock Unix time, as the channel checks it.
        auth = sign_request(self.keys.private_key, self.config.wechat_mchid, self.config.wechat_serial,
                            method, path, data, int(time.time()), secrets.token_hex(16))
        headers = {"Authorization": auth, "Accept": "application/json"}
        if self.keys.public_key_id:  # answers signed with the WeChat Pay public key
            headers[HEADER_SERIAL] = self.keys.public_key_id
        if data:
            headers["Content-Type"] = "application/json"
        # A request built here and sent by the client (its transport, proxies, pool): what
        # client.request() would send, less its per-call merging of base URL, headers and
        # cookies (none here), a tenth of a top-up's cost on the platform's side.
        request = httpx.Request(method, self._base + path, content=data, headers=headers,
                                extensions={"timeout": self._timeout})
        try:
            response = self.http.send(request)
        except httpx.HTTPError as exc:
            raise WeChatError("NETWORK", f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            try:
                err = response.json()
                code, message = str(err.get("code")), str(err.get("message"))
            except ValueError:
                code, message = f"HTTP_{response.status_code}", response.text[:200]
            raise WeChatError(code, message, response.status_code)
        if verify and not self.keys.verify(response.headers, response.content):
            raise WeChatError("ANSWER_SIGNATURE", f"{method} {path}: the answer's Wechatpay-Signature "
                              "does not verify with WeChat's key", response.status_code)
        return response

    def create_native_order(self, out_trade_no: str, amount: int, description: str,
                            notify_url: str, attach: str | None = None) -> str:
        """A NATIVE (QR code) order of ``amount`` fen; its ``code_url``. Idempotent by out_trade_no."""
        body: dict[str, Any] = {
            "appid": self.config.wechat_appid, "mchid": self.config.wechat_mchid,
            "description": description, "out_trade_no": out_trade_no, "notify_url": notify_url,
            "amount": {"total": amount, "currency": "CNY"}}
        if attach:
            body["attach"] = attach
        answer: dict[str, Any] = self._request("POST", "/v3/pay/transactions/native", body).json()
        return str(answer["code_url"])

    def query_order(self, out_trade_no: str) -> dict[str, Any]:
        path = (f"/v3/pay/transactions/out-trade-no/{out_trade_no}"
                f"?mchid={self.config.wechat_mchid}")
        answer: dict[str, Any] = self._request("GET", path).json()
        return answer

    def close_order(self, out_trade_no: str) -> None:
        self._request("POST", f"/v3/pay/transactions/out-trade-no/{out_trade_no}/close",
                      {"mchid": self.config.wechat_mchid})

    def trade_bill(self, bill_date: str, bill_type: str = "ALL") -> bytes:
        """The bill's bytes, checked against the announced SHA-1 (``BillError`` if it differs)."""
        meta = self._request("GET", f"/v3/bill/tradebill?bill_date={bill_date}"
                                    f"&bill_type={bill_type}").json()
        url = urlsplit(str(meta["download_url"]))
        path = url.path + (f"?{url.query}" if url.query else "")
        # The file itself is not signed by WeChat (SDKs skip it too): its SHA-1 is the check.
        data = self._request("GET", path, verify=False).content
        digest = hashlib.sha1(data).hexdigest()
        if str(meta.get("hash_value", "")).lower() != digest:
            raise BillError(f"bill {bill_date} download does not match its SHA-1 "
                            f"({digest} != {meta.get('hash_value')})")
        return data
