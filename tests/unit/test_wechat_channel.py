"""The WeChat Pay channel in process: orders, bill dates by cutover, bills, T+1 settlement,
and the dispatcher's deliveries against an in-memory platform (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest

from contracts.wechat_bill import parse_bill
from contracts.wechat_signing import decrypt_resource
from simulator.bank import Bank
from simulator.clock import CST, parse_datetime
from simulator.testing.wechat_keys import channel_signed
from simulator.wechat.dispatcher import Dispatcher
from simulator.wechat.errors import (
    NoStatementExist,
    OrderClosed,
    OrderNotExist,
    OrderPaid,
    OutTradeNoUsed,
    ParamError,
    StatementCreating,
)
from tests.conftest import make_profile

MCHID, APPID = "1900000109", "wxd678efh567hg6787"
V3_KEY = "banksimdevapiv3key0123456789abcd"
SUPERVISION = "98010078801000001"
NOTIFY_URL = "http://platform.test/wechat/notify"


def order(out_trade_no: str, total: int = 10000, **changes: Any) -> dict[str, Any]:
    body = {"appid": APPID, "mchid": MCHID, "description": "余额充值", "out_trade_no": out_trade_no,
            "notify_url": NOTIFY_URL, "amount": {"total": total, "currency": "CNY"}}
    body.update(changes)
    return body


def make_bank(patch: dict[str, Any] | None = None) -> Bank:
    return Bank(make_profile({"bank": {"open_active": True}, **(patch or {})}), None)


@pytest.fixture
def wx() -> Iterator[Bank]:
    b = make_bank()
    yield b
    violations = b.invariants()
    b.close()
    assert not violations, violations


def advance_to(bank: Bank, when: str) -> None:
    bank.advance_to(parse_datetime(when))


# -- orders ----------------------------------------------------------------------------------


def test_create_is_idempotent_by_content_and_refuses_a_reused_number(wx: Bank) -> None:
    first = wx.wechat.create_order(MCHID, order("TOPUP-0001"))
    assert first["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert wx.wechat.create_order(MCHID, order("TOPUP-0001")) == first
    with pytest.raises(OutTradeNoUsed):
        wx.wechat.create_order(MCHID, order("TOPUP-0001", total=10001))
    with pytest.raises(ParamError, match="not the merchant that signed"):
        wx.wechat.create_order(MCHID, order("TOPUP-0002", mchid="1900000999"))
    with pytest.raises(ParamError, match="appid"):
        wx.wechat.create_order(MCHID, order("TOPUP-0002", appid="wx0000000000000000"))
    assert [o["out_trade_no"] for o in wx.wechat.orders()] == ["TOPUP-0001"]


def test_order_states_pay_close_and_their_errors(wx: Bank) -> None:
    wx.wechat.create_order(MCHID, order("TOPUP-0001", attach="user=7"))
    unpaid = wx.wechat.query_order(MCHID, "TOPUP-0001")
    assert (unpaid["trade_state"], unpaid["payer"], unpaid["amount"]["payer_total"]) == ("NOTPAY", {}, 0)
    assert "transaction_id" not in unpaid and unpaid["attach"] == "user=7"
    paid = wx.wechat.pay("TOPUP-0001", openid="oUpF8-given")
    assert paid["trade_state"] == "SUCCESS" and paid["payer"] == {"openid": "oUpF8-given"}
    assert paid["success_time"] == "2026-01-05T09:00:00+08:00" and len(paid["transaction_id"]) == 28
    assert paid["fee"] == "0.60" and paid["bill_date"] == "2026-01-05"
    with pytest.raises(OrderPaid):
        wx.wechat.pay("TOPUP-0001")
    with pytest.raises(OrderPaid):
        wx.wechat.close_order(MCHID, "TOPUP-0001")
    wx.wechat.create_order(MCHID, order("TOPUP-0002"))
    wx.wechat.close_order(MCHID, "TOPUP-0002")
    wx.wechat.close_order(MCHID, "TOPUP-0002")  # closing again is harmless
    assert wx.wechat.query_order(MCHID, "TOPUP-0002")["trade_state"] == "CLOSED"
    with pytest.raises(OrderClosed):
        wx.wechat.pay("TOPUP-0002")
    with pytest.raises(OrderNotExist):
        wx.wechat.query_order(MCHID, "TOPUP-9999")
    with pytest.raises(OrderNotExist):
        wx.wechat.pay("TOPUP-9999")


def test_same_seed_same_identifiers(wx: Bank) -> None:
    other = make_bank()
    try:
        for b in (wx, other):
            b.wechat.create_order(MCHID, order("TOPUP-0001"))
            b.wechat.pay("TOPUP-0001")
        assert wx.wechat.query_order(MCHID, "TOPUP-0001") == other.wechat.query_order(MCHID, "TOPUP-0001")
    finally:
        other.close()


def test_refunds_partial_then_full_and_refusals(wx: Bank) -> None:
    wx.wechat.create_order(MCHID, order("TOPUP-0001"))
    with pytest.raises(ParamError, match="only a paid order"):
        wx.wechat.refund("TOPUP-0001", "1.00")
    wx.wechat.pay("TOPUP-0001")
    first = wx.wechat.refund("TOPUP-0001", "30.00")
    assert (first["out_refund_no"], first["amount"], first["order"]["trade_state"]) == \
        ("TOPUP-0001-R1", "30.00", "REFUND")
    assert wx.wechat.refund("TOPUP-0001", "30.00", out_refund_no="TOPUP-0001-R1") == first
    with pytest.raises(ParamError, match="another refund"):
        wx.wechat.refund("TOPUP-0001", "31.00", out_refund_no="TOPUP-0001-R1")
    with pytest.raises(ParamError, match=re.escape("would reach 100.01")):
        wx.wechat.refund("TOPUP-0001", "70.01")
    for bad in ("0.00", "1", "-1.00", "abc"):
        with pytest.raises(ParamError):
            wx.wechat.refund("TOPUP-0001", bad)
    assert wx.wechat.refund("TOPUP-0001", "70.00")["out_refund_no"] == "TOPUP-0001-R2"


# -- bill dates and bills ----------------------------------------------------------------------


def test_wechat_cutover_and_bank_cutover_differ() -> None:
    """Bank day rolls at 23:00, WeChat's at 00:00: an order paid at 23:30 is on the bank's next
    business date but on WeChat's bill of the same calendar day."""
    bank = make_bank({"clock": {"cutover": "23:00", "start": "2026-01-05T22:00:00+08:00"}})
    try:
        for n in (1, 2, 3, 4):
            bank.wechat.create_order(MCHID, order(f"TOPUP-000{n}", total=1000 * n))
        advance_to(bank, "2026-01-05T22:59:59")
        bank.wechat.pay("TOPUP-0001")
        advance_to(bank, "2026-01-05T23:30:00")
        assert bank.clock.business_date() == date(2026, 1, 6)
        assert bank.wechat.pay("TOPUP-0002")["bill_date"] == "2026-01-05"
        advance_to(bank, "2026-01-05T23:59:59")
        bank.wechat.pay("TOPUP-0003")
        advance_to(bank, "2026-01-06T00:00:00")
        assert bank.wechat.pay("TOPUP-0004")["bill_date"] == "2026-01-06"
        assert [o["out_trade_no"] for o in bank.wechat.orders(date(2026, 1, 5))] == \
            ["TOPUP-0001", "TOPUP-0002", "TOPUP-0003"]
        advance_to(bank, "2026-01-06T09:00:00")
        bill = parse_bill(bank.wechat.bill(MCHID, date(2026, 1, 5), "ALL"))
        assert [r.out_trade_no for r in bill.rows] == ["TOPUP-0001", "TOPUP-0002", "TOPUP-0003"]
        assert [r.trade_time for r in bill.rows] == [
            datetime(2026, 1, 5, 22, 59, 59), datetime(2026, 1, 5, 23, 30), datetime(2026, 1, 5, 23, 59, 59)]
        assert bill.summary.order_total_fen == 6000
        # The settlement posts on the bank's business date of its own moment (10:00 on the 6th).
        advance_to(bank, "2026-01-06T10:00:00")
        (settled,) = bank.wechat.settlements()
        assert (settled["bill_date"], settled["gross"], settled["net"]) == ("2026-01-05", "60.00", "59.64")
        assert not bank.invariants()
    finally:
        bank.close()


def test_a_wechat_cutover_of_23_00_moves_late_payments_to_the_next_bill() -> None:
    bank = make_bank({"wechat": {"cutover": "23:00"}, "clock": {"start": "2026-01-05T22:59:00+08:00"}})
    try:
        bank.wechat.create_order(MCHID, order("TOPUP-0001"))
        bank.wechat.create_order(MCHID, order("TOPUP-0002"))
        assert bank.wechat.pay("TOPUP-0001")["bill_date"] == "2026-01-05"
        advance_to(bank, "2026-01-05T23:00:00")
        assert bank.clock.business_date() == date(2026, 1, 5)
        assert bank.wechat.pay("TOPUP-0002")["bill_date"] == "2026-01-06"
    finally:
        bank.close()


def test_bill_availability_and_types(wx: Bank) -> None:
    wx.wechat.create_order(MCHID, order("TOPUP-0002", total=5000))
    wx.wechat.create_order(MCHID, order("TOPUP-0001"))
    advance_to(wx, "2026-01-05T10:00:00")
    wx.wechat.pay("TOPUP-0002")
    wx.wechat.pay("TOPUP-0001")
    wx.wechat.refund("TOPUP-0002", "20.00")
    day = date(2026, 1, 5)
    with pytest.raises(StatementCreating):
        wx.wechat.bill(MCHID, day, "ALL")
    with pytest.raises(NoStatementExist, match="future"):
        wx.wechat.bill(MCHID, date(2026, 1, 6), "ALL")
    advance_to(wx, "2026-01-06T08:59:59")
    with pytest.raises(StatementCreating, match="2026-01-06T09:00:00"):
        wx.wechat.bill(MCHID, day, "ALL")
    advance_to(wx, "2026-01-06T09:00:00")
    everything = parse_bill(wx.wechat.bill(MCHID, day, "ALL"))
    assert [(r.out_trade_no, r.trade_state) for r in everything.rows] == [
        ("TOPUP-0001", "SUCCESS"), ("TOPUP-0002", "SUCCESS"), ("TOPUP-0002", "REFUND")]
    assert [r.trade_state for r in parse_bill(wx.wechat.bill(MCHID, day, "SUCCESS")).rows] == \
        ["SUCCESS", "SUCCESS"]
    refunds = parse_bill(wx.wechat.bill(MCHID, day, "REFUND"))
    assert [(r.out_refund_no, r.refund_fen) for r in refunds.rows] == [("TOPUP-0002-R1", 2000)]
    with pytest.raises(NoStatementExist, match="no ALL transactions"):
        wx.wechat.bill(MCHID, date(2026, 1, 4), "ALL")
    # The same bytes on every request: the download's hash matches the one announced.
    assert wx.wechat.bill(MCHID, day, "ALL") == wx.wechat.bill(MCHID, day, "ALL")


def test_bill_tokens_are_bound_to_their_merchant(wx: Bank) -> None:
    merchant = wx.wechat.merchant(MCHID)
    assert merchant is not None
    token = wx.wechat.bill_token(merchant, date(2026, 1, 5), "SUCCESS")
    assert wx.wechat.read_bill_token(merchant, token) == (date(2026, 1, 5), "SUCCESS")
    other = merchant.model_copy(update={"api_v3_key": "another-merchant-v3-key-012345678"})
    for bad_merchant, bad_token in ((other, token), (merchant, token[:-1] + "0"),
                                    (merchant, "garbage"), (merchant, "20260105-ALL-x-y")):
        with pytest.raises(ParamError):
            wx.wechat.read_bill_token(bad_merchant, bad_token)


# -- T+1 settlement --------------------------------------------------------------------------------


def test_settlement_posts_net_of_fees_and_refunds_into_the_98_account(wx: Bank) -> None:
    for name, total in (("TOPUP-0001", 10000), ("TOPUP-0002", 750), ("TOPUP-0003", 2000)):
        wx.wechat.create_order(MCHID, order(name, total=total))
        wx.wechat.pay(name)
    wx.wechat.refund("TOPUP-0003", "5.00")
    wx.wechat.create_order(MCHID, order("TOPUP-0004"))  # never paid: not settled
    before = wx.ledger.balance(SUPERVISION)
    advance_to(wx, "2026-01-06T09:59:59")
    assert wx.wechat.settlements() == [] and wx.ledger.balance(SUPERVISION) == before
    advance_to(wx, "2026-01-06T10:00:00")
    (s,) = wx.wechat.settlements()
    # fees: 60 + 5 (4.5 half-up) + 12 = 77 fen; net = 12750 - 77 - 500.
    assert (s["orders"], s["gross"], s["fees"], s["refunds"], s["net"]) == \
        (3, "127.50", "0.77", "5.00", "121.73")
    assert s["account_no"] == SUPERVISION and s["settled_at"] == "2026-01-06T10:00:00+08:00"
    assert wx.ledger.balance(SUPERVISION) == before + 12173
    posting = wx.ledger.postings(SUPERVISION)[0]
    assert (posting["kind"], posting["amount_fen"], posting["txn_id"]) == \
        ("wechat_settlement", 12173, s["posting_id"])
    # Exactly once: a later advance settles nothing again.
    advance_to(wx, "2026-01-08T10:00:00")
    assert len(wx.wechat.settlements()) == 1 and wx.ledger.balance(SUPERVISION) == before + 12173


def test_a_day_with_only_refunds_is_settled_without_a_posting(wx: Bank) -> None:
    wx.wechat.create_order(MCHID, order("TOPUP-0001"))
    wx.wechat.pay("TOPUP-0001")
    advance_to(wx, "2026-01-06T12:00:00")
    wx.wechat.refund("TOPUP-0001", "10.00")
    advance_to(wx, "2026-01-07T10:00:00")
    first, second = wx.wechat.settlements()
    assert (first["bill_date"], first["net"]) == ("2026-01-05", "99.40")
    assert (second["bill_date"], second["net"], second["posting_id"]) == ("2026-01-06", "-10.00", None)


# -- notifications through the dispatcher -----------------------------------------------------------


class Platform:
    """An in-memory notify_url: records every request, answers with ``answer(n)``."""

    def __init__(self, answer: Callable[[int], int] = lambda n: 200) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.answer(len(self.requests)), json={"code": "SUCCESS"})


def dispatcher(bank: Bank, platform: Platform) -> Dispatcher:
    return Dispatcher(bank, wall=lambda: 1_767_574_800.0, transport=httpx.MockTransport(platform))


def advance(d: Dispatcher, when: str) -> None:
    asyncio.run(d.advance_to(parse_datetime(when)))


def test_a_notification_is_signed_and_its_resource_is_the_order(wx: Bank) -> None:
    platform = Platform()
    d = dispatcher(wx, platform)
    wx.wechat.create_order(MCHID, order("TOPUP-0001", attach="u=1"))
    paid = wx.wechat.pay("TOPUP-0001")
    made = asyncio.run(d.deliver_due())
    assert [(m["attempt"], m["outcome"], m["http_status"]) for m in made] == [(1, "SUCCESS", 200)]
    (request,) = platform.requests
    assert str(request.url) == NOTIFY_URL
    h = request.headers
    assert h["Wechatpay-Serial"] == wx.wechat.keys.by_certificate.serial
    assert h["Wechatpay-Timestamp"] == "1767574800"
    assert channel_signed(h, request.content)
    body = json.loads(request.content)
    assert (body["event_type"], body["resource_type"], body["summary"]) == \
        ("TRANSACTION.SUCCESS", "encrypt-resource", "支付成功")
    r = body["resource"]
    resource = json.loads(decrypt_resource(V3_KEY, r["ciphertext"], r["associated_data"], r["nonce"]))
    assert resource == wx.wechat.query_order(MCHID, "TOPUP-0001")
    assert resource["transaction_id"] == paid["transaction_id"]
    assert asyncio.run(d.deliver_due()) == []  # delivered: never sent again


def test_failures_are_retried_on_the_schedule_until_a_success(wx: Bank) -> None:
    platform = Platform(lambda n: 500 if n <= 3 else 204)
    d = dispatcher(wx, platform)
    wx.wechat.create_order(MCHID, order("TOPUP-0001"))
    wx.wechat.pay("TOPUP-0001")
    advance(d, "2026-01-05T10:00:00")
    attempts = wx.wechat.notifications.listing("TOPUP-0001")
    assert [(a["attempt"], a["outcome"], a["http_status"], a["sent_at"][11:19]) for a in attempts] == [
        (1, "FAILED", 500, "09:00:00"), (2, "FAILED", 500, "09:00:15"),
        (3, "FAILED", 500, "09:00:30"), (4, "SUCCESS", 204, "09:01:00")]
    assert len(platform.requests) == 4 and len({r.content for r in platform.requests}) == 1


def test_ignore_answer_runs_the_whole_schedule_then_gives_up() -> None:
    bank = make_bank({"wechat": {"notify": {"rules": [
        {"name": "ignore", "match": {"out_trade_no": ".*-IGN"}, "action": {"ignore_answer": True}}]}}})
    try:
        platform = Platform()
        d = dispatcher(bank, platform)
        bank.wechat.create_order(MCHID, order("TOPUP-1-IGN"))
        bank.wechat.pay("TOPUP-1-IGN")
        advance(d, "2026-01-05T09:00:20")
        outcomes = [a["outcome"] for a in bank.wechat.notifications.listing()]
        assert outcomes == ["IGNORED", "IGNORED", "PENDING"]
        advance(d, "2026-01-07T09:00:00")
        attempts = bank.wechat.notifications.listing()
        assert len(attempts) == 16 and {a["outcome"] for a in attempts} == {"IGNORED"}
        assert attempts[-1]["delivery_state"] == "exhausted"
        start = datetime(2026, 1, 5, 9, tzinfo=CST)
        offsets = [datetime.fromisoformat(a["sent_at"]) - start for a in attempts]
        assert offsets[:5] == [timedelta(0), timedelta(seconds=15), timedelta(seconds=30),
                               timedelta(minutes=1), timedelta(minutes=4)]
        assert offsets[-1] == timedelta(hours=24, minutes=4)
    finally:
        bank.close()


def test_drop_duplicate_and_delay_faults(wx: Bank) -> None:
    platform = Platform()
    d = dispatcher(wx, platform)
    for name in ("T-0001-DROP", "T-0002-DUP", "T-0003-LATE"):
        wx.wechat.create_order(MCHID, order(name))
        wx.wechat.pay(name)
    asyncio.run(d.deliver_due())
    sent = [json.loads(r.content)["id"] for r in platform.requests]
    assert len(sent) == 2 and len(set(sent)) == 2  # the duplicate is a second notification
    listing = {(a["out_trade_no"], a["copy"]): a for a in wx.wechat.notifications.listing()}
    assert listing[("T-0001-DROP", 1)]["outcome"] == "DROPPED"
    assert listing[("T-0003-LATE", 1)]["outcome"] == "PENDING"
    assert listing[("T-0003-LATE", 1)]["due"] == "2026-01-05T11:00:00+08:00"
    advance(d, "2026-01-05T10:59:59")
    assert len(platform.requests) == 2
    advance(d, "2026-01-05T11:00:00")
    assert len(platform.requests) == 3
    advance(d, "2026-01-07T00:00:00")
    assert len(platform.requests) == 3  # the dropped one never goes out
    assert wx.wechat.query_order(MCHID, "T-0001-DROP")["trade_state"] == "SUCCESS"
