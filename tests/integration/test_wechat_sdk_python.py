"""The Python SDK ``wechatpayv3`` (PyPI, written by nobody here) against a real ``banksim serve``.

Only its base URL is changed. wechatpayv3 2.x hard-codes ``https://api.mch.weixin.qq.com``
in ``Core._gate_way`` and has no option for it; the smallest override a user applies is
one assignment after construction (docs/wechat.md)::

    wxpay._core._gate_way = "http://127.0.0.1:8600"

In certificate mode the SDK fetches ``/v3/certificates`` from its constructor unless
``cert_dir`` already holds a valid platform certificate, so the recipe gives it the one
``banksim wechat credentials --export`` writes; the SDK refreshes it from banksim itself.
Everything else is the SDK's own code: request signing, answer verification, notification
verification and decryption (``callback``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from wechatpayv3 import WeChatPay, WeChatPayType

from contracts.wechat_dev_keys import APIV3_KEY, APPID, MCHID, MERCHANT_PRIVATE_KEY_FILE, MERCHANT_SERIAL
from simulator.config import load_profile
from simulator.testing.wechat_keys import dev_sign
from simulator.wechat.credentials import credentials, export
from tests.integration.conftest import BankServer
from tests.integration.test_wechat_channel import Receiver, Wechat, receiver

pytestmark = pytest.mark.network
__all__ = ["receiver"]


def _sdk(server: BankServer, receiver: Receiver, tmp_path: Path, mode: str) -> Any:
    creds = credentials(load_profile(None), None)[0]
    options: dict[str, Any] = {}
    if mode == "public_key":
        options = {"public_key": creds["platform_public_key_pem"],
                   "public_key_id": creds["platform_public_key_id"]}
    else:
        folder = tmp_path / "exported"
        export([creds], folder)
        cert_dir = tmp_path / "certs"
        cert_dir.mkdir()
        (cert_dir / "wechatpay_cert.pem").write_text((folder / MCHID / "wechatpay_cert.pem").read_text())
        options = {"cert_dir": str(cert_dir)}
    wxpay = WeChatPay(wechatpay_type=WeChatPayType.NATIVE, mchid=MCHID,
                      private_key=MERCHANT_PRIVATE_KEY_FILE.read_text(), cert_serial_no=MERCHANT_SERIAL,
                      appid=APPID, apiv3_key=APIV3_KEY, notify_url=receiver.url, timeout=(5, 10),
                      **options)
    wxpay._core._gate_way = server.url  # the one override: the base URL
    return wxpay


@pytest.mark.parametrize("mode", ["certificate", "public_key"])
def test_wechatpayv3_top_up_life_cycle(server: BankServer, receiver: Receiver, tmp_path: Path,
                                        mode: str) -> None:
    wxpay = _sdk(server, receiver, tmp_path, mode)
    out_trade_no = f"SDK-PY-{mode[:4].upper()}-1"
    # create: signed by the SDK, answer verified by the SDK (it raises if not)
    code, text = wxpay.pay(description="余额充值", out_trade_no=out_trade_no,
                           amount={"total": 2500, "currency": "CNY"})
    assert code == 200, text
    assert json.loads(text)["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    code, text = wxpay.query(out_trade_no=out_trade_no)
    assert (code, json.loads(text)["trade_state"]) == (200, "NOTPAY")

    # the user pays (control API); the notification is delivered
    control = Wechat(server)
    paid = control.pay(out_trade_no)
    made = control.admin.post("/wechat/notifications/deliver").json()["attempts"]
    assert [m["outcome"] for m in made] == ["SUCCESS"]
    (note,) = receiver.by_order(out_trade_no)
    # verified and decrypted by the SDK's own callback code
    result = wxpay.callback(note.headers, note.body)
    assert result is not None, "the SDK did not verify the notification"
    assert result["event_type"] == "TRANSACTION.SUCCESS"
    resource = result["resource"]
    assert (resource["out_trade_no"], resource["trade_state"], resource["amount"]["total"]) == \
        (out_trade_no, "SUCCESS", 2500)
    assert resource["transaction_id"] == paid["transaction_id"]
    # a tampered notification is refused by the SDK
    assert wxpay.callback(note.headers, note.body.replace(b'"id":"', b'"id":"X')) is None

    # query by out_trade_no and by transaction_id (before any refund)
    code, text = wxpay.query(out_trade_no=out_trade_no)
    assert (code, json.loads(text)["trade_state"]) == (200, "SUCCESS")
    code, text = wxpay.query(transaction_id=paid["transaction_id"])
    assert (code, json.loads(text)["out_trade_no"]) == (200, out_trade_no)

    # refunds: partial, then more than what is left, then the same refund number again
    refund_no = f"{out_trade_no}-R1"
    code, text = wxpay.refund(out_refund_no=refund_no, out_trade_no=out_trade_no,
                              amount={"refund": 1000, "total": 2500, "currency": "CNY"})
    assert code == 200, text
    refund = json.loads(text)
    assert (refund["status"], refund["amount"]["refund"], refund["transaction_id"]) == \
        ("SUCCESS", 1000, paid["transaction_id"])
    code, text = wxpay.refund(out_refund_no=f"{out_trade_no}-R2", transaction_id=paid["transaction_id"],
                              amount={"refund": 1501, "total": 2500, "currency": "CNY"})
    assert (code, json.loads(text)["code"]) == (400, "INVALID_REQUEST"), text
    code, text = wxpay.refund(out_refund_no=refund_no, out_trade_no=out_trade_no,
                              amount={"refund": 1000, "total": 2500, "currency": "CNY"})
    assert (code, json.loads(text)["refund_id"]) == (200, refund["refund_id"])
    code, text = wxpay.query_refund(out_refund_no=refund_no)
    assert (code, json.loads(text)["amount"]["refund"]) == (200, 1000)
    code, text = wxpay.query(out_trade_no=out_trade_no)
    assert json.loads(text)["trade_state"] == "REFUND"

    # T+1: the trade bill through the SDK (tar_type GZIP, its default), hash checked
    if mode == "public_key":
        control.advance("1d")
        code, text = wxpay.trade_bill(bill_date=paid["bill_date"])
        assert code == 200, text
        meta = json.loads(text)
        assert meta["download_url"].startswith(server.url + "/v3/billdownload/file")
        code, packed = wxpay.download_bill(meta["download_url"])
        assert code == 200
        bill = gzip.decompress(packed)
        assert hashlib.sha1(bill).hexdigest() == meta["hash_value"]
        assert out_trade_no.encode() in bill

    if mode == "certificate":  # the SDK's own refresh from GET /v3/certificates
        wxpay._core._update_certificates()
        assert [format(c.serial_number, "X") for c in wxpay._core._certificates] == \
            [credentials(load_profile(None), None)[0]["platform_certificate_serial"]]


def test_wechatpayv3_refuses_answers_when_the_profile_breaks_the_signature(
        server: BankServer, receiver: Receiver, tmp_path: Path) -> None:
    wxpay = _sdk(server, receiver, tmp_path, "public_key")
    answer = server.admin.patch("/profile", json={"wechat": {"keys": {"answer_signature": "bad"}}})
    assert answer.status_code == 200, answer.text
    with pytest.raises(Exception, match="failed to verify the signature"):
        wxpay.pay(description="余额充值", out_trade_no="SDK-PY-BAD-1", amount={"total": 100})


def test_wechatpayv3_refuses_answers_signed_under_an_expired_platform_certificate(
        server: BankServer, receiver: Receiver, tmp_path: Path) -> None:
    wxpay = _sdk(server, receiver, tmp_path, "certificate")
    answer = server.admin.patch("/profile", json={"wechat": {"keys": {"platform_certificate": "expired"}}})
    assert answer.status_code == 200, answer.text
    with pytest.raises(Exception, match="failed to verify the signature"):
        wxpay.pay(description="余额充值", out_trade_no="SDK-PY-OLD-1", amount={"total": 100})
    # the SDK fetched the certificates and dropped the expired one
    assert wxpay._core._certificates == []


def test_wechatpayv3_jsapi_app_and_h5_orders(server: BankServer, receiver: Receiver, tmp_path: Path) -> None:
    wxpay = _sdk(server, receiver, tmp_path, "public_key")
    code, text = wxpay.pay(description="余额充值", out_trade_no="SDK-PY-JSAPI-1", amount={"total": 100},
                           payer={"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}, pay_type=WeChatPayType.JSAPI)
    assert code == 200 and json.loads(text)["prepay_id"].startswith("wx"), text
    code, text = wxpay.pay(description="余额充值", out_trade_no="SDK-PY-APP-1", amount={"total": 100},
                           pay_type=WeChatPayType.APP)
    assert code == 200 and json.loads(text)["prepay_id"].startswith("wx"), text
    code, text = wxpay.pay(description="余额充值", out_trade_no="SDK-PY-H5-1", amount={"total": 100},
                           scene_info={"payer_client_ip": "127.0.0.1", "h5_info": {"type": "Wap"}},
                           pay_type=WeChatPayType.H5)
    assert code == 200 and json.loads(text)["h5_url"].startswith("https://"), text
    # a JSAPI order without its payer (the SDK would not send one) is refused with WeChat's code
    body = json.dumps({"appid": APPID, "mchid": MCHID, "description": "余额充值",
                       "out_trade_no": "SDK-PY-JSAPI-2", "notify_url": receiver.url,
                       "amount": {"total": 100}}).encode()
    refused = httpx.post(server.url + "/v3/pay/transactions/jsapi", content=body, timeout=10,
                         headers={"Content-Type": "application/json",
                                  "Authorization": dev_sign("POST", "/v3/pay/transactions/jsapi", body)})
    assert (refused.status_code, refused.json()["code"]) == (400, "PARAM_ERROR"), refused.text
    Wechat(server).pay("SDK-PY-JSAPI-1")
    code, text = wxpay.query(out_trade_no="SDK-PY-JSAPI-1")
    order = json.loads(text)
    assert (order["trade_type"], order["trade_state"], order["payer"]["openid"]) == \
        ("JSAPI", "SUCCESS", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o")
