"""Reconciliation matching (pure) and the reconciliation step against a fake channel."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from contracts.wechat_bill import BillSummary, payment_row, render_bill, summarize
from platform_client import wallet
from platform_client.clock import CST, FixedClock
from platform_client.config import ClientConfig
from platform_client.context import Context
from platform_client.errors import BillError, StepRefused
from platform_client.onboarding import register_user
from platform_client.reconcile import BillRow, PlatformOrder, match_bill
from platform_client.reconciliation import approve, reconcile
from platform_client.store import Store
from platform_client.topups import handle_notification
from platform_client.wechat import WeChatClient
from tests.platform_client.bank import identity
from tests.platform_client.scenario import notification, record_order, signed_answer

DAY = "2026-01-05"


def test_every_kind_of_difference_is_found() -> None:
    rows = [BillRow("A", "1", "SUCCESS", 100), BillRow("B", "2", "SUCCESS", 200),
            BillRow("C", "3", "SUCCESS", 300), BillRow("D", "4", "SUCCESS", 400),
            BillRow("E", "5", "REFUND", 0, refund_amount=50)]
    orders = {"A": PlatformOrder("A", 100, credited=True, bill_date=DAY),
              "B": PlatformOrder("B", 200, credited=False),
              "C": PlatformOrder("C", 999, credited=True, bill_date=DAY),
              "E": PlatformOrder("E", 500, credited=True, bill_date="2026-01-04"),
              "F": PlatformOrder("F", 600, credited=True, bill_date=DAY),
              "G": PlatformOrder("G", 700, credited=True, bill_date="2026-01-04"),
              "H": PlatformOrder("H", 800, credited=False)}
    got = [(i.out_trade_no, i.kind, i.bill_amount, i.platform_amount) for i in match_bill(DAY, rows, orders)]
    assert got == [("A", "MATCHED", 100, 100), ("B", "DROPPED", 200, 200), ("C", "AMOUNT_MISMATCH", 300, 999),
                   ("D", "UNKNOWN_ORDER", 400, None), ("E", "CHANNEL_REFUND", 50, 500),
                   ("F", "PLATFORM_ONLY", None, 600)]


def test_an_order_recovered_by_reconciliation_stays_a_dropped_order() -> None:
    orders = {"B": PlatformOrder("B", 200, credited=True, bill_date=DAY, recovered=True)}
    assert [i.kind for i in match_bill(DAY, [BillRow("B", "2", "SUCCESS", 200)], orders)] == ["DROPPED"]


# -- the step, against a fake channel -------------------------------------------------------------


class FakeChannel:
    """Answers the channel's bill and order-query endpoints from canned data."""

    def __init__(self, bill: bytes, orders: dict[str, dict[str, object]]) -> None:
        self.bill, self.orders, self.queries = bill, orders, 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"].startswith("WECHATPAY2-SHA256-RSA2048 ")
        path = request.url.path
        if path == "/v3/bill/tradebill":
            digest = hashlib.sha1(self.bill).hexdigest()
            return signed_answer(200, json_body={"hash_type": "SHA1", "hash_value": digest,
                                                 "download_url": "/v3/billdownload/file?token=t"})
        if path == "/v3/billdownload/file":
            return httpx.Response(200, content=self.bill)
        otn = path.rsplit("/", 1)[-1]
        self.queries += 1
        if otn in self.orders:
            return signed_answer(200, json_body=self.orders[otn])
        return signed_answer(404, json_body={"code": "ORDER_NOT_EXIST", "message": "no such order"})


def row(otn: str, fen: int) -> object:
    return payment_row(trade_time=datetime(2026, 1, 5, 10, 0), appid="wxd678efh567hg6787", mchid="1900000109",
                       transaction_id=f"4200{otn}", out_trade_no=otn, openid="o-test", total_fen=fen,
                       fee=Decimal(fen) * Decimal("0.006") / 100, rate="0.60%", body="余额充值")


def make_ctx(tmp_path: Path, channel: FakeChannel) -> Context:
    config = ClientConfig(store_path=str(tmp_path / "p.db"))
    ctx = Context.create(config, clock=FixedClock(datetime(2026, 1, 6, 9, 30, tzinfo=CST)))
    ctx.wechat = WeChatClient(config, transport=httpx.MockTransport(channel))
    register_user(ctx, "u1", identity(41))
    return ctx


def paid(otn: str, fen: int) -> dict[str, object]:
    return {"out_trade_no": otn, "transaction_id": f"4200{otn}", "trade_state": "SUCCESS",
            "success_time": "2026-01-05T10:00:00+08:00", "amount": {"total": fen, "payer_total": fen,
                                                                    "currency": "CNY"}}


def test_dropped_order_is_credited_once_and_reruns_give_the_same_result(tmp_path: Path) -> None:
    bill = render_bill([row("T1", 10000), row("T2", 5000), row("T9", 700)])  # type: ignore[list-item]
    channel = FakeChannel(bill, {"T2": paid("T2", 5000)})
    ctx = make_ctx(tmp_path, channel)
    for otn, fen in (("T1", 10000), ("T2", 5000), ("T3", 300)):
        record_order(ctx, "u1", otn, fen)
    for otn, fen in (("T1", 10000), ("T3", 300)):  # T2's notification never came
        headers, body = notification(ctx, otn, fen, success_time="2026-01-05T10:00:00+08:00")
        assert handle_notification(ctx, headers, body)[0] == 200

    first = reconcile(ctx, DAY)
    statuses = {(i["out_trade_no"], i["kind"]): i["status"] for i in first["items"]}
    assert statuses == {("T1", "MATCHED"): "OK", ("T2", "DROPPED"): "RESOLVED",
                        ("T3", "PLATFORM_ONLY"): "HELD", ("T9", "UNKNOWN_ORDER"): "HELD"}
    assert wallet.balances(ctx.store, "u1").in_transit == 15300
    assert (first["bill_gross"], first["bill_fees"]) == (15700, 94)  # 60 + 30 + 4.2 -> 4 fen

    second = reconcile(ctx, DAY)
    assert second["items"] == first["items"]
    assert wallet.balances(ctx.store, "u1").in_transit == 15300
    assert channel.queries == 1  # the recovered order is not queried again
    with pytest.raises(StepRefused):
        approve(ctx, DAY, by=" ")
    assert approve(ctx, DAY, by="ops.li")["approved_by"] == "ops.li"


def test_a_bill_whose_summary_is_wrong_fails_the_run_and_credits_nothing(tmp_path: Path) -> None:
    rows = [row("T1", 10000), row("T2", 5000)]
    right = summarize(rows)  # type: ignore[arg-type]
    wrong = BillSummary(**{**right.__dict__, "settlement_total_fen": right.settlement_total_fen + 100})
    channel = FakeChannel(render_bill(rows, wrong), {"T2": paid("T2", 5000)})  # type: ignore[arg-type]
    ctx = make_ctx(tmp_path, channel)
    record_order(ctx, "u1", "T2", 5000)
    with pytest.raises(BillError, match="nothing credited"):
        reconcile(ctx, DAY)
    run = ctx.store.one("SELECT state, error FROM recon_runs WHERE bill_date = ?", (DAY,))
    assert run is not None and run["state"] == "FAILED" and "bill rejected" in run["error"]
    assert wallet.balances(ctx.store, "u1").total == 0
    assert ctx.store.scalar("SELECT count(*) FROM recon_items") == 0
    with pytest.raises(StepRefused):
        approve(ctx, DAY, by="ops.li")


def test_a_bill_that_does_not_match_its_hash_is_refused(tmp_path: Path) -> None:
    channel = FakeChannel(render_bill([row("T1", 100)]), {})  # type: ignore[list-item]
    ctx = make_ctx(tmp_path, channel)
    original = channel.__call__

    def tampered(request: httpx.Request) -> httpx.Response:
        response = original(request)
        if request.url.path.endswith("/file"):
            return httpx.Response(200, content=response.content.replace(b"1.00", b"9.00"))
        return response

    ctx.wechat = WeChatClient(ctx.config, transport=httpx.MockTransport(tampered))
    with pytest.raises(BillError, match="SHA-1"):
        reconcile(ctx, DAY)


def test_store_is_versioned(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db")
    assert store.schema_version == 1
    store.close()
    again = Store.open(tmp_path / "s.db")
    assert again.schema_version == 1
    assert json.loads(json.dumps(again.scalar("PRAGMA journal_mode"))) == "wal"


class NoTradesChannel(FakeChannel):
    """WeChat's answer for a day without trades: NO_STATEMENT_EXIST."""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v3/bill/tradebill":
            return httpx.Response(400, json={"code": "NO_STATEMENT_EXIST", "message": "账单不存在"})
        return super().__call__(request)


def test_a_past_day_without_trades_is_an_empty_bill_and_credited_orders_are_platform_only(
        tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, NoTradesChannel(b"", {}))
    record_order(ctx, "u1", "T3", 300)
    headers, body = notification(ctx, "T3", 300, success_time="2026-01-05T10:00:00+08:00")
    assert handle_notification(ctx, headers, body)[0] == 200
    run = reconcile(ctx, DAY)
    assert [(i["out_trade_no"], i["kind"], i["status"]) for i in run["items"]] == [
        ("T3", "PLATFORM_ONLY", "HELD")]
    assert run["rows"] == 0


def test_no_bill_for_today_fails_the_run(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, NoTradesChannel(b"", {}))
    with pytest.raises(BillError, match="NO_STATEMENT_EXIST"):
        reconcile(ctx, "2026-01-06")


def test_an_answer_whose_signature_does_not_verify_is_not_believed(tmp_path: Path) -> None:
    from contracts.wechat_dev_keys import merchant_private_key
    from contracts.wechat_signing import sign_answer
    from platform_client.errors import WeChatError

    body = json.dumps(paid("T1", 100)).encode()

    def forged(request: httpx.Request) -> httpx.Response:
        # signed, but by a key that is not WeChat's, under WeChat's public key id
        headers = {"Content-Type": "application/json", "Wechatpay-Timestamp": "1767578400",
                   "Wechatpay-Nonce": "n1", "Wechatpay-Serial": ClientConfig().wechat_public_key_id,
                   "Wechatpay-Signature": sign_answer(merchant_private_key(), 1767578400, "n1", body)}
        return httpx.Response(200, content=body, headers=headers)

    for transport in (httpx.MockTransport(forged),
                      httpx.MockTransport(lambda request: httpx.Response(200, content=body))):
        client = WeChatClient(ClientConfig(store_path=str(tmp_path / "p.db")), transport=transport)
        with pytest.raises(WeChatError) as err:
            client.query_order("T1")
        assert err.value.wechat_code == "ANSWER_SIGNATURE"
    honest = httpx.MockTransport(lambda request: signed_answer(200, json_body=paid("T1", 100)))
    good = WeChatClient(ClientConfig(store_path=str(tmp_path / "p.db")), transport=honest)
    assert good.query_order("T1")["trade_state"] == "SUCCESS"
