"""An outsider against the channel's APIv3 request authentication and answer signatures.

Every forged, stale, replayed or tampered request gets WeChat's own code (401 SIGN_ERROR)
and creates nothing; every answer, errors included, is signed with the platform's key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from contracts.wechat_dev_keys import APPID, MCHID
from simulator.bank import Bank
from simulator.http.app import create_app
from simulator.testing.wechat_keys import channel_signed, dev_sign, stranger_key
from tests.conftest import make_profile

NATIVE = "/v3/pay/transactions/native"


def _order(out_trade_no: str) -> bytes:
    return json.dumps({"appid": APPID, "mchid": MCHID, "description": "余额充值",
                       "out_trade_no": out_trade_no, "notify_url": "http://127.0.0.1:9/notify",
                       "amount": {"total": 100, "currency": "CNY"}}).encode()


@pytest.fixture
def client() -> Iterator[tuple[Bank, httpx.Client]]:
    bank = Bank(make_profile(), None)
    with httpx.Client(transport=httpx.WSGITransport(app=_Sync(create_app(bank))),
                      base_url="http://bank") as c:
        yield bank, c
    bank.close()


class _Sync:
    """Drives the ASGI app from a sync client (one event loop per request)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        import asyncio

        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bank") as c:
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = environ["wsgi.input"].read(length) if length else b""
                headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items()
                           if k.startswith("HTTP_")}
                if environ.get("CONTENT_TYPE"):
                    headers["content-type"] = environ["CONTENT_TYPE"]
                path = environ["RAW_URI"] if "RAW_URI" in environ else environ["PATH_INFO"]
                query = environ.get("QUERY_STRING")
                return await c.request(environ["REQUEST_METHOD"], path + (f"?{query}" if query else ""),
                                       content=body, headers=headers)

        answer = asyncio.run(run())
        start_response(f"{answer.status_code} X", list(answer.headers.items()))
        return [answer.content]


def _post(c: httpx.Client, body: bytes, auth: str, path: str = NATIVE) -> httpx.Response:
    return c.post(path, content=body, headers={"Content-Type": "application/json", "Authorization": auth})


def _refused(answer: httpx.Response, status: int, code: str, text: str) -> None:
    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
    assert text in answer.json()["message"]
    assert channel_signed(answer.headers, answer.content), "error answers are signed too"


def _orders(bank: Bank) -> int:
    return int(bank.store.scalar("SELECT COUNT(*) FROM wechat_orders"))


def test_a_good_request_passes_and_its_answer_verifies(client: tuple[Bank, httpx.Client]) -> None:
    _bank, c = client
    answer = _post(c, _order("ADV-0001"), dev_sign("POST", NATIVE, _order("ADV-0001")))
    assert answer.status_code == 200 and "code_url" in answer.json()
    assert channel_signed(answer.headers, answer.content)
    assert answer.headers["Request-ID"] and answer.headers["Wechatpay-Signature-Type"] == \
        "WECHATPAY2-SHA256-RSA2048"


def test_forged_stale_and_tampered_requests_get_sign_error_and_create_nothing(
        client: tuple[Bank, httpx.Client]) -> None:
    bank, c = client
    body = _order("ADV-0002")
    _refused(_post(c, body, dev_sign("POST", NATIVE, body, key=stranger_key())), 401, "SIGN_ERROR",
             "签名验证不通过")
    _refused(_post(c, body, dev_sign("POST", NATIVE, body, serial="ABCDEF0123")), 401, "SIGN_ERROR",
             "证书序列号")
    _refused(_post(c, body, dev_sign("POST", NATIVE, body, timestamp=int(time.time()) - 3600)), 401,
             "SIGN_ERROR", "签名过期")
    _refused(_post(c, body, dev_sign("POST", NATIVE, _order("ADV-0003"))), 401, "SIGN_ERROR",
             "签名验证不通过")
    _refused(_post(c, body, dev_sign("POST", "/v3/pay/transactions/jsapi", body)), 401, "SIGN_ERROR",
             "签名验证不通过")
    _refused(_post(c, body, dev_sign("POST", NATIVE, body).replace("RSA2048", "HMAC")), 401,
             "SIGN_ERROR", "Authorization")
    _refused(_post(c, body, dev_sign("POST", NATIVE, body, mchid="1900000999")), 401, "SIGN_ERROR",
             "1900000999")
    assert _orders(bank) == 0


def test_a_replayed_request_is_refused_while_its_timestamp_could_still_be_valid(
        client: tuple[Bank, httpx.Client]) -> None:
    bank, c = client
    window = bank.profile.security.signature_window_seconds
    # Stamped as far in the future as the window allows: valid for twice the window.
    auth = dev_sign("POST", NATIVE, _order("ADV-0004"), timestamp=int(time.time()) + window - 5)
    assert _post(c, _order("ADV-0004"), auth).status_code == 200
    _refused(_post(c, _order("ADV-0004"), auth), 401, "SIGN_ERROR", "请求重放")
    # The channel's nonce memory keeps it until timestamp + window, not arrival + window.
    entry = bank.wechat.nonces._until[(MCHID, auth.split('nonce_str="')[1].split('"')[0])]
    assert entry == int(auth.split('timestamp="')[1].split('"')[0]) + window
    bank.wechat.close_order(MCHID, "ADV-0004")
    assert _orders(bank) == 1


def test_answer_signature_switch_produces_answers_that_do_not_verify() -> None:
    bank = Bank(make_profile({"wechat": {"keys": {"answer_signature": "bad"}}}), None)
    try:
        transport = httpx.WSGITransport(app=_Sync(create_app(bank)))
        with httpx.Client(transport=transport, base_url="http://bank") as c:
            answer = _post(c, _order("ADV-0005"), dev_sign("POST", NATIVE, _order("ADV-0005")))
            assert answer.status_code == 200
            assert not channel_signed(answer.headers, answer.content)
    finally:
        bank.close()
