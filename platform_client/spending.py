"""Consumption (spending the balance) and refunds to the user's bound card.

Consumption is platform income: it leaves the user's available cash at once (journal
``consume``) and reaches the platform's settlement account through the T+1 withholding
batch. Only cash can be spent: a top-up still in transit is not yet in the user's bank
account, so spending it would make the next day's withholding fail.

A refund is a signed bank call with the platform's serial. The amount is frozen first
(``refund_hold``), then paid (``refund_paid``) or released (``refund_release``) by the
bank's answer; when no answer comes, it stays frozen and ``refund`` with the same serial
finishes it later (the bank answers a serial once).

Example::

    consume(ctx, "u1", "C-0001", 1250, "行程消费")
    refund(ctx, "u1", "RF-0001", 5000)         # {'state': 'PAID', ...}
"""

from __future__ import annotations

from typing import Any

from contracts.money import format_fen
from platform_client import wallet
from platform_client.context import Context
from platform_client.errors import BankApiError, BankUnavailable, StepRefused


def consume(ctx: Context, user_id: str, consumption_id: str, amount: int, memo: str = "") -> bool:
    """Record a consumption once (by id); False when it was already recorded."""
    with ctx.store.transaction():
        existing = ctx.store.one("SELECT user_id, amount FROM consumptions WHERE consumption_id = ?",
                                 (consumption_id,))
        if existing is not None:
            if (existing["user_id"], existing["amount"]) != (user_id, amount):
                raise StepRefused(f"consumption {consumption_id} exists with other figures")
            return False
        ctx.store.execute("INSERT INTO consumptions(consumption_id, user_id, amount, at, day, memo) "
                          "VALUES (?, ?, ?, ?, ?, ?)", (consumption_id, user_id, amount, ctx.now_iso(),
                                                        ctx.now().date().isoformat(), memo))
        wallet.post(ctx.store, user_id=user_id, kind="consume", ref=consumption_id, amount=amount,
                    at=ctx.now_iso(), memo=memo)
    return True


def refund(ctx: Context, user_id: str, serial: str, amount: int, memo: str = "") -> dict[str, Any]:
    """Refund ``amount`` fen from the user's Class III account to the bound card."""
    with ctx.store.transaction():
        row = ctx.store.one("SELECT * FROM refunds WHERE serial = ?", (serial,))
        if row is None:
            user = ctx.store.one("SELECT account_no FROM users WHERE user_id = ?", (user_id,))
            if user is None or not user["account_no"]:
                raise StepRefused(f"user {user_id} has no account")
            ctx.store.execute("INSERT INTO refunds(serial, user_id, account_no, amount, state, created_at) "
                              "VALUES (?, ?, ?, ?, 'PENDING', ?)",
                              (serial, user_id, user["account_no"], amount, ctx.now_iso()))
            wallet.post(ctx.store, user_id=user_id, kind="refund_hold", ref=serial, amount=amount,
                        at=ctx.now_iso(), memo=memo)
            row = ctx.store.one("SELECT * FROM refunds WHERE serial = ?", (serial,))
        elif (row["user_id"], row["amount"]) != (user_id, amount):
            raise StepRefused(f"refund {serial} exists with other figures")
    assert row is not None
    if row["state"] != "PENDING":
        return dict(row)
    try:
        ctx.bank.refund(serial, row["account_no"], format_fen(amount), memo)
        state, code, message, kind = "PAID", "0000", None, "refund_paid"
    except BankApiError as exc:
        state, code, message, kind = "FAILED", exc.bank_code, str(exc), "refund_release"
    except BankUnavailable as exc:
        with ctx.store.transaction():
            ctx.store.execute("UPDATE refunds SET message = ? WHERE serial = ?", (str(exc), serial))
        raise
    with ctx.store.transaction():
        ctx.store.execute("UPDATE refunds SET state = ?, code = ?, message = ?, finished_at = ? "
                          "WHERE serial = ?", (state, code, message, ctx.now_iso(), serial))
        wallet.post(ctx.store, user_id=user_id, kind=kind, ref=serial, amount=amount, at=ctx.now_iso())
    out = ctx.store.one("SELECT * FROM refunds WHERE serial = ?", (serial,))
    assert out is not None
    return dict(out)
