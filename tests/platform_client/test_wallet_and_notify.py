"""The wallet journal and the notification handler (no network)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from contracts.wechat_dev_keys import merchant_private_key
from platform_client import wallet
from platform_client.checks import check_balances, journal_differences
from platform_client.clock import CST, FixedClock, wechat_day
from platform_client.config import ClientConfig, load_config, parse_duration
from platform_client.context import Context
from platform_client.errors import ConfigError, InsufficientFunds
from platform_client.onboarding import register_user
from platform_client.spending import consume
from platform_client.topups import handle_notification
from tests.platform_client.bank import identity
from tests.platform_client.scenario import notification, record_order


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    c = Context.create(ClientConfig(store_path=str(tmp_path / "p.db")),
                       clock=FixedClock(datetime(2026, 1, 5, 12, 0, tzinfo=CST)))
    register_user(c, "u1", identity(51))
    return c


def test_movements_never_take_a_bucket_below_zero() -> None:
    start = wallet.Balances(in_transit=100)
    after = wallet.apply_moves(start, wallet.movement("disbursed", 100))
    assert after == wallet.Balances(cash_available=100)
    with pytest.raises(InsufficientFunds, match="cash_available"):
        wallet.apply_moves(after, wallet.movement("consume", 101))
    with pytest.raises(ValueError):
        wallet.movement("topup", 0)


def test_opening_identity_reports_a_broken_balance() -> None:
    assert wallet.opening_identity({"topup": 300, "disbursed": 0, "consume": -100}, balance=200) == []
    assert wallet.opening_identity({"topup": 300}, balance=250) == [
        "opening 0 + credits 300 - debits 0 != balance 250"]


def test_a_movement_is_applied_once_and_the_journal_is_append_only(ctx: Context) -> None:
    with ctx.store.transaction():
        assert wallet.post(ctx.store, user_id="u1", kind="topup", ref="T1", amount=500, at=ctx.now_iso())
        assert not wallet.post(ctx.store, user_id="u1", kind="topup", ref="T1", amount=500, at=ctx.now_iso())
    assert wallet.balances(ctx.store, "u1") == wallet.Balances(in_transit=500)
    with pytest.raises(Exception, match="append-only"):
        ctx.store.execute("UPDATE journal SET amount = 1")
    assert journal_differences(ctx) == []


def test_spending_takes_cash_only_and_a_refused_step_changes_nothing(ctx: Context) -> None:
    with ctx.store.transaction():
        wallet.post(ctx.store, user_id="u1", kind="topup", ref="T1", amount=500, at=ctx.now_iso())
    with pytest.raises(InsufficientFunds):
        consume(ctx, "u1", "C1", 100)  # still in transit
    assert ctx.store.scalar("SELECT count(*) FROM consumptions") == 0
    with ctx.store.transaction():
        wallet.post(ctx.store, user_id="u1", kind="disbursed", ref="T1", amount=500, at=ctx.now_iso())
    assert consume(ctx, "u1", "C1", 100) and not consume(ctx, "u1", "C1", 100)
    assert wallet.balances(ctx.store, "u1") == wallet.Balances(cash_available=400)
    assert check_balances(ctx, with_bank=False)["ok"]


def test_notifications_are_verified_idempotent_and_recorded(ctx: Context) -> None:
    record_order(ctx, "u1", "T1", 10000)
    headers, body = notification(ctx, "T1", 10000)
    assert handle_notification(ctx, headers, body) == (200, {"code": "SUCCESS", "message": "成功"})
    assert handle_notification(ctx, headers, body)[0] == 200  # duplicate: same answer, no credit
    assert wallet.balances(ctx.store, "u1") == wallet.Balances(in_transit=10000)

    bad_headers, bad_body = notification(ctx, "T1", 10000, key=merchant_private_key())
    assert handle_notification(ctx, bad_headers, bad_body)[0] == 401
    unknown = notification(ctx, "NOPE", 100)
    assert handle_notification(ctx, *unknown)[0] == 404
    record_order(ctx, "u1", "T2", 200)
    assert handle_notification(ctx, *notification(ctx, "T2", 999))[0] == 400
    assert handle_notification(ctx, headers, body[:-5])[0] == 401  # body altered after signing
    outcomes = [(r["outcome"], r["http_status"])
                for r in ctx.store.all("SELECT * FROM notifications ORDER BY id")]
    assert outcomes == [("credited", 200), ("duplicate", 200), ("bad_signature", 401),
                        ("unknown_order", 404), ("amount_mismatch", 400), ("bad_signature", 401)]
    assert wallet.balances(ctx.store, "u1") == wallet.Balances(in_transit=10000)
    order = ctx.store.one("SELECT bill_date, credited_via FROM orders WHERE out_trade_no = 'T1'")
    assert order is not None and (order["bill_date"], order["credited_via"]) == ("2026-01-04", "notify")


def test_wechat_day_follows_the_cutover() -> None:
    late = datetime(2026, 1, 5, 23, 30, tzinfo=CST)
    assert wechat_day(late, "00:00").isoformat() == "2026-01-05"
    assert wechat_day(late, "23:00").isoformat() == "2026-01-06"


def test_config_from_yaml_and_toml_with_overrides(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("merchant: ACME01\nreturn_deadline: 3h\n", "utf-8")
    (tmp_path / "c.toml").write_text('merchant = "ACME02"\nsftp_port = 2022\n', "utf-8")
    assert load_config(tmp_path / "c.yaml", sftp_port=None).return_deadline_seconds == 10800
    cfg = load_config(tmp_path / "c.toml", merchant="OVR01")
    assert (cfg.merchant, cfg.sftp_port) == ("OVR01", 2022)
    (tmp_path / "bad.yaml").write_text("no_such_setting: 1\n", "utf-8")
    with pytest.raises(ConfigError):
        load_config(tmp_path / "bad.yaml")
    assert parse_duration("1d2h") == 93600
