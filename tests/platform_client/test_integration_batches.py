"""Disbursement batches against a real bank: failures fixed and re-sent, rejections, returns."""

from __future__ import annotations

import pytest

from platform_client import wallet
from platform_client.checks import check_balances
from platform_client.context import Context
from platform_client.errors import StepRefused
from platform_client.onboarding import open_account, register_user, upload_images
from platform_client.payouts import disburse, original_progress, poll_returns, resubmit, withhold
from platform_client.report import render_report
from platform_client.spending import consume, refund
from tests.platform_client.bank import Bank, identity
from tests.platform_client.conftest import ContextFactory
from tests.platform_client.scenario import paid_and_reconciled, records

pytestmark = pytest.mark.network

DAY = "2026-01-04"  # the top-ups' day; the bank's clock starts on 2026-01-05 09:00
SUPERVISION = "98010078801000001"


def onboard(ctx: Context, bank: Bank, users: dict[str, int], *, images: set[str]) -> None:
    for user_id, n in users.items():
        register_user(ctx, user_id, identity(n))
        open_account(ctx, user_id)
        if user_id in images:
            upload_images(ctx, user_id)
    bank.advance("30m")  # the bank reviews the images


def test_a_failed_record_is_fixed_and_resent_until_the_original_fully_succeeded(
        bank: Bank, make_ctx: ContextFactory) -> None:
    ctx = make_ctx()
    onboard(ctx, bank, {"ann": 11, "bo": 12}, images={"ann"})  # bo's images never sent: 3061
    bank.deposit(SUPERVISION, "500.00")
    paid_and_reconciled(ctx, DAY, [("ann", "T-ANN-1", 10000), ("bo", "T-BO-1", 5000)])

    first = disburse(ctx, DAY)
    assert first is not None
    assert disburse(ctx, DAY) is None  # every reconciled top-up already has its record
    with pytest.raises(StepRefused, match="top-ups first"):
        withhold(ctx, DAY)  # the DF batch of the day is not answered yet
    bank.advance("25m")  # processed after 10 minutes, return file 15 minutes later
    polled = poll_returns(ctx)
    assert polled.files_applied == [f"DF_DEMO01_20260105_{first}_RET.txt"]
    by_user = {r["user_id"]: r for r in records(ctx, first)}
    assert (by_user["ann"]["state"], by_user["ann"]["code"]) == ("SUCCESS", "0000")
    assert (by_user["bo"]["state"], by_user["bo"]["code"]) == ("FAILED", "3061")
    assert wallet.balances(ctx.store, "ann") == wallet.Balances(cash_available=10000)
    assert wallet.balances(ctx.store, "bo") == wallet.Balances(in_transit=5000)

    held = resubmit(ctx)  # the cause is still there: nothing goes out
    assert held.batches == [] and "images" in held.held[by_user["bo"]["serial"]]

    upload_images(ctx, "bo")
    bank.advance("30m")
    again = resubmit(ctx)
    assert len(again.batches) == 1 and again.held == {}
    second = again.batches[0]
    [resent] = records(ctx, second)
    assert resent["original_id"] == by_user["bo"]["record_id"]
    assert resent["memo"] == f"重发{by_user['bo']['serial']}"
    bank.advance("25m")
    poll_returns(ctx)
    assert records(ctx, second)[0]["state"] == "SUCCESS"
    assert original_progress(ctx, first) == {"records": 2, "succeeded": 2, "outstanding": 0}
    assert resubmit(ctx).batches == []  # nothing left to send
    assert wallet.balances(ctx.store, "bo") == wallet.Balances(cash_available=5000)

    consume(ctx, "ann", "C-1", 1250, "行程消费")
    check = check_balances(ctx)
    assert check["ok"], check["differences"]
    assert {u["user_id"]: u["bank_balance"] for u in check["users"]} == {"ann": 10000, "bo": 5000}
    text = render_report(ctx, DAY, with_bank=True)
    assert "3061" in text and "originals: 2/2 succeeded" in text


def test_a_rejected_batch_is_resent_in_a_new_batch(bank: Bank, make_ctx: ContextFactory) -> None:
    earlier = make_ctx("earlier")
    onboard(earlier, bank, {"cy": 21}, images={"cy"})
    bank.deposit(SUPERVISION, "500.00")
    paid_and_reconciled(earlier, DAY, [("cy", "T-CY-1", 2000)])
    assert disburse(earlier, DAY) == 1
    bank.next_business_day("09:00")  # 2026-01-06

    # A platform whose batch numbering starts over reuses number 1: the bank refuses (4005).
    ctx = make_ctx("restarted")
    onboard(ctx, bank, {"dee": 22}, images={"dee"})
    paid_and_reconciled(ctx, "2026-01-05", [("dee", "T-DEE-1", 3000)])
    assert disburse(ctx, "2026-01-05") == 1
    bank.advance("1m")
    polled = poll_returns(ctx)
    assert polled.files_applied == ["DF_DEMO01_20260106_1_REJ.txt"]
    batch = ctx.store.one("SELECT state, reject_code FROM batches WHERE batch_no = 1")
    assert batch is not None and (batch["state"], batch["reject_code"]) == ("REJECTED", "4005")
    assert records(ctx, 1)[0]["state"] == "REJECTED"

    out = resubmit(ctx)
    assert out.batches == [2]
    bank.advance("25m")
    poll_returns(ctx)
    assert records(ctx, 2)[0]["state"] == "SUCCESS"
    assert original_progress(ctx, 1)["outstanding"] == 0
    assert "4005" in render_report(ctx, "2026-01-05")


def test_withholding_follows_the_days_disbursement_and_refunds_pay_out(
        bank: Bank, make_ctx: ContextFactory) -> None:
    ctx = make_ctx()
    onboard(ctx, bank, {"fay": 23, "gus": 24}, images={"fay", "gus"})
    bank.deposit(SUPERVISION, "500.00")
    paid_and_reconciled(ctx, DAY, [("fay", "T-FAY-1", 20000), ("gus", "T-GUS-1", 10000)])
    first = disburse(ctx, DAY)
    bank.advance("25m")
    poll_returns(ctx)
    assert first is not None and {r["state"] for r in records(ctx, first)} == {"SUCCESS"}

    # Consumption of the same day: withheld only after the day's top-ups are done.
    consume(ctx, "fay", "C-FAY-1", 3000, "行程消费")
    consume(ctx, "gus", "C-GUS-1", 1000, "行程消费")
    with ctx.store.transaction():  # book the consumption on the top-ups' day
        ctx.store.execute("UPDATE consumptions SET day = ?", (DAY,))
    gus_account = ctx.store.scalar("SELECT account_no FROM users WHERE user_id = 'gus'")
    bank.call("POST", f"/accounts/{gus_account}/agreement", {"active": False})  # revoked: 3043
    dk = withhold(ctx, DAY)
    bank.advance("25m")
    poll_returns(ctx)
    assert dk is not None
    assert {r["user_id"]: (r["state"], r["code"]) for r in records(ctx, dk)} == {
        "fay": ("SUCCESS", "0000"), "gus": ("FAILED", "3043")}
    assert check_balances(ctx)["ok"]  # gus's consumption is still in his bank account

    paid = refund(ctx, "fay", "RF-FAY-1", 5000, "用户退款")
    assert paid["state"] == "PAID"
    assert refund(ctx, "fay", "RF-FAY-1", 5000)["state"] == "PAID"  # same serial: same refund
    assert wallet.balances(ctx.store, "fay") == wallet.Balances(cash_available=12000)
    check = check_balances(ctx)
    assert check["ok"], check["differences"]
    assert {u["user_id"]: u["bank_balance"] for u in check["users"]} == {"fay": 12000, "gus": 10000}
