"""The whole T+1 flow through the WeChat channel: top-up, dropped notification, reconciliation,
approval, disbursement, Class III account funded."""

from __future__ import annotations

import socket

import pytest

from platform_client import wallet
from platform_client.checks import check_balances
from platform_client.notify import NotifyServer
from platform_client.onboarding import open_account, register_user, upload_images
from platform_client.payouts import disburse, poll_returns
from platform_client.reconciliation import approve, reconcile
from platform_client.topups import create_order
from tests.platform_client.bank import Bank, identity
from tests.platform_client.conftest import ContextFactory

pytestmark = pytest.mark.network

SUPERVISION = "98010078801000001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_topup_with_a_dropped_notification_is_credited_by_reconciliation_and_disbursed(
        bank: Bank, make_ctx: ContextFactory) -> None:
    ctx = make_ctx(notify_port=free_port())
    register_user(ctx, "eve", identity(31))
    account_no = open_account(ctx, "eve")
    upload_images(ctx, "eve")
    with NotifyServer(ctx):
        create_order(ctx, "eve", "TOPUP-EVE-1", 10000)
        create_order(ctx, "eve", "TOPUP-EVE-2-DROP", 5000)  # magic suffix: never notified
        bank.call("POST", "/wechat/orders/TOPUP-EVE-1/pay", {})
        bank.call("POST", "/wechat/orders/TOPUP-EVE-2-DROP/pay", {})
        bank.advance("30m")  # deliveries due now are attempted; images reviewed
        assert wallet.balances(ctx.store, "eve") == wallet.Balances(in_transit=10000)

        bank.next_business_day("09:30")  # the bill of 2026-01-05 is ready from 09:00
        run = reconcile(ctx, "2026-01-05")
        kinds = {i["out_trade_no"]: (i["kind"], i["status"]) for i in run["items"]}
        assert kinds == {"TOPUP-EVE-1": ("MATCHED", "OK"), "TOPUP-EVE-2-DROP": ("DROPPED", "RESOLVED")}
        assert wallet.balances(ctx.store, "eve") == wallet.Balances(in_transit=15000)
        assert reconcile(ctx, "2026-01-05")["items"] == run["items"]  # same result, no double credit
        assert wallet.balances(ctx.store, "eve") == wallet.Balances(in_transit=15000)

        approve(ctx, "2026-01-05", by="ops.li")
        bank.advance("1h")  # 10:30: WeChat settled 150.00 less fees into the 98 account
        bank.deposit(SUPERVISION, "1.00")  # the platform covers the channel's fees
        batch_no = disburse(ctx, "2026-01-05")
        assert batch_no is not None
        bank.advance("25m")
        assert poll_returns(ctx).files_applied == [f"DF_DEMO01_20260106_{batch_no}_RET.txt"]

    assert wallet.balances(ctx.store, "eve") == wallet.Balances(cash_available=15000)
    account = ctx.bank.query_account(account_no)
    assert account["balance"] == "150.00"
    check = check_balances(ctx)
    assert check["ok"], check["differences"]
    outcomes = [r["outcome"] for r in ctx.store.all("SELECT outcome FROM notifications ORDER BY id")]
    assert outcomes == ["credited"]
