"""simulator.domain.wechat_rules: WeChat days, fees, identifiers and notification faults."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest

from simulator.clock import CST
from simulator.config import NotifySettings
from simulator.domain.wechat_rules import (
    NotifyPlan,
    bill_ready_at,
    code_url,
    decide_notify,
    default_openid,
    fee_fen,
    notification_id,
    rate_text,
    refund_id,
    retry_delay,
    settle_at,
    transaction_id,
    wechat_date,
)
from tests.conftest import make_profile

RATE = Decimal("0.0060")


@pytest.mark.parametrize(("total", "fee"), [
    (10000, 60),    # 100.00 -> 0.60 exactly
    (83, 0),        # 0.498 fen rounds down
    (84, 1),        # 0.504 fen rounds up
    (250, 2),       # 1.5 fen: half-up (banker's rounding would agree here)
    (750, 5),       # 4.5 fen: half-up gives 5 where banker's rounding would give 4
    (75_000, 450),
    (1, 0),
])
def test_fee_is_rounded_half_up_to_the_fen(total: int, fee: int) -> None:
    assert fee_fen(total, RATE) == fee


def test_fee_rate_text() -> None:
    assert (rate_text(RATE), rate_text(Decimal("0.0038")), rate_text(Decimal("0"))) == \
        ("0.60%", "0.38%", "0.00%")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=CST)


@pytest.mark.parametrize(("moment", "cutover", "day"), [
    ("2026-01-05T23:59:59", time(0, 0), date(2026, 1, 5)),
    ("2026-01-06T00:00:00", time(0, 0), date(2026, 1, 6)),
    ("2026-01-05T22:59:59", time(23, 0), date(2026, 1, 5)),
    ("2026-01-05T23:00:00", time(23, 0), date(2026, 1, 6)),
    ("2026-01-06T01:59:59", time(2, 0), date(2026, 1, 5)),
    ("2026-01-06T02:00:00", time(2, 0), date(2026, 1, 6)),
])
def test_wechat_date_follows_the_cutover(moment: str, cutover: time, day: date) -> None:
    assert wechat_date(at(moment), cutover) == day


def test_wechat_date_reads_any_offset_as_beijing_time() -> None:
    utc = datetime(2026, 1, 5, 16, 30, tzinfo=UTC)  # 2026-01-06 00:30 in Beijing
    assert wechat_date(utc, time(0, 0)) == date(2026, 1, 6)


def test_bill_and_settlement_times_are_t_plus_one() -> None:
    settings = make_profile().wechat
    assert bill_ready_at(date(2026, 1, 5), settings) == at("2026-01-06T09:00:00")
    assert settle_at(date(2026, 1, 5), settings) == at("2026-01-06T10:00:00")


def test_identifiers_have_the_real_shapes_and_depend_only_on_their_inputs() -> None:
    tx = transaction_id(7, "1900000109", "TOPUP-1")
    assert len(tx) == 28 and tx.isdigit() and tx.startswith("4200")
    assert tx == transaction_id(7, "1900000109", "TOPUP-1")
    assert tx != transaction_id(8, "1900000109", "TOPUP-1") != transaction_id(7, "1900000109", "TOPUP-2")
    openid = default_openid(7, "1900000109", "TOPUP-1")
    assert len(openid) == 28 and openid.startswith("oUpF8")
    assert openid != default_openid(7, "1900000109", "TOPUP-2")
    assert code_url(7, "1900000109", "TOPUP-1").startswith("weixin://wxpay/bizpayurl?pr=")
    rid = refund_id(7, "1900000109", "R-1")
    assert len(rid) == 29 and rid.isdigit() and rid.startswith("50")
    assert notification_id(7, "1", "T", 1) != notification_id(7, "1", "T", 2)


def test_notify_rules_first_match_wins() -> None:
    settings = make_profile().wechat.notify
    assert decide_notify(settings, 1, "m", "A-DROP", 100).drop
    assert decide_notify(settings, 1, "m", "A-DUP", 100).copies == 2
    late = decide_notify(settings, 1, "m", "A-LATE", 100)
    assert late.delay == timedelta(hours=2) and late.copies == 1 and not late.drop
    assert decide_notify(settings, 1, "m", "A-1", 100) == NotifyPlan()
    by_amount = NotifySettings.model_validate({"rules": [
        {"name": "big", "match": {"amount_min": "100.00"}, "action": {"ignore_answer": True}},
        {"name": "all", "action": {"drop": True}}]})
    assert decide_notify(by_amount, 1, "m", "X", 10_000).by == "big"
    assert decide_notify(by_amount, 1, "m", "X", 9_999).by == "all"


def test_notify_rates_are_seeded_per_order_whatever_the_order_of_calls() -> None:
    settings = NotifySettings.model_validate({"rates": {"drop": 0.3, "duplicate": 0.3}})
    names = [f"T-{i}" for i in range(200)]
    forward = {n: decide_notify(settings, 42, "m", n, 100) for n in names}
    backward = {n: decide_notify(settings, 42, "m", n, 100) for n in reversed(names)}
    assert forward == backward
    drops = sum(p.drop for p in forward.values())
    dups = sum(p.copies == 2 for p in forward.values())
    # 30% drop, then 30% of the rest duplicated: about 60 and 42 of 200.
    assert 35 <= drops <= 85 and 20 <= dups <= 65
    other_seed = {n: decide_notify(settings, 43, "m", n, 100) for n in names}
    assert other_seed != forward


def test_retry_delay_walks_the_schedule_then_stops() -> None:
    settings = make_profile().wechat.notify
    assert [retry_delay(settings, n) for n in (1, 2, 3, 4)] == [
        timedelta(seconds=15), timedelta(seconds=15), timedelta(seconds=30), timedelta(minutes=3)]
    assert retry_delay(settings, 15) == timedelta(hours=6)
    assert retry_delay(settings, 16) is None
    total = sum((retry_delay(settings, n) or timedelta(0) for n in range(1, 16)), timedelta(0))
    assert timedelta(hours=24) <= total <= timedelta(hours=25)


@pytest.mark.parametrize(("patch", "where"), [
    ({"merchants": [{"mchid": "1900000109", "appid": "wx1", "app_id": "nobody",
                     "api_key": "k" * 8, "api_v3_key": "x" * 32}]}, "no platform 'nobody'"),
    ({"merchants": [{"mchid": "1900000109", "appid": "wx1", "app_id": "demo-platform",
                     "api_key": "k" * 8, "api_v3_key": "x" * 31}]}, "exactly 32 bytes"),
    ({"merchants": [{"mchid": "1900000109", "appid": "wx1", "app_id": "demo-platform",
                     "api_key": "k" * 8, "api_v3_key": "x" * 32, "fee_rate": 0.006}]}, "not a number"),
    ({"notify": {"retry_schedule": ["15s", "soon"]}}, "not a duration"),
    ({"notify": {"rules": [{"match": {"out_trade_no": "("}, "action": {"drop": True}}]}},
     "not a regular expression"),
])
def test_the_wechat_profile_section_is_validated(patch: dict[str, object], where: str) -> None:
    from simulator.config import ProfileError

    with pytest.raises(ProfileError, match=re.escape(where)):
        make_profile({"wechat": patch})


def test_the_default_profile_has_the_demo_merchant() -> None:
    (merchant,) = make_profile().wechat.merchants
    assert (merchant.mchid, merchant.app_id, merchant.fee_rate) == ("1900000109", "demo-platform",
                                                                    Decimal("0.0060"))
    assert make_profile().as_dict()["wechat"]["merchants"][0]["fee_rate"] == "0.0060"
