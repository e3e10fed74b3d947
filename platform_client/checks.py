"""Balance checks: the platform's own books, and the platform against the bank.

* Journal: per user, every bucket's journal sum equals the wallet, and
  ``opening + credits - debits = balance`` (:func:`platform_client.wallet.opening_identity`).
* Bank, per user: the Class III balance the bank reports equals the platform's cash plus
  consumption not yet withheld (money still in the user's account at the bank).
* The 98 account: what the platform expects it to have received and paid out (WeChat
  settlements from the reconciled bills, minus successful disbursements), beside the
  bank's figure when the bank shows it.

Example::

    result = check_balances(ctx)      # {'ok': True, 'differences': [], 'users': [...], ...}
"""

from __future__ import annotations

from typing import Any

from contracts.money import format_fen, parse_yuan
from platform_client import wallet
from platform_client.context import Context
from platform_client.errors import BankApiError, BankUnavailable


def journal_differences(ctx: Context) -> list[str]:
    problems = []
    for user in ctx.store.all("SELECT user_id FROM users ORDER BY user_id"):
        uid = user["user_id"]
        sums = {r["bucket"]: r["s"] for r in ctx.store.all(
            "SELECT bucket, sum(amount) AS s FROM journal WHERE user_id = ? GROUP BY bucket", (uid,))}
        current = wallet.balances(ctx.store, uid)
        for bucket in wallet.BUCKETS:
            if sums.get(bucket, 0) != getattr(current, bucket):
                problems.append(f"user {uid}: {bucket} journal {sums.get(bucket, 0)} != wallet "
                                f"{getattr(current, bucket)}")
        kinds = {r["kind"]: r["s"] for r in ctx.store.all(
            "SELECT kind, sum(amount) AS s FROM journal WHERE user_id = ? GROUP BY kind", (uid,))}
        problems += [f"user {uid}: {p}" for p in wallet.opening_identity(kinds, current.total)]
    return problems


def unwithheld(ctx: Context, user_id: str) -> int:
    """Consumption whose withholding has not succeeded yet (still in the user's bank account)."""
    value = ctx.store.scalar(
        "SELECT coalesce(sum(c.amount), 0) FROM consumptions c WHERE c.user_id = ? AND NOT EXISTS ("
        "SELECT 1 FROM batch_records r WHERE r.kind = 'DK' AND r.source_ref = c.consumption_id "
        "AND r.state = 'SUCCESS')", (user_id,))
    return int(value)


def check_balances(ctx: Context, *, with_bank: bool = True) -> dict[str, Any]:
    differences = journal_differences(ctx)
    users = []
    for user in ctx.store.all("SELECT user_id, account_no FROM users ORDER BY user_id"):
        b = wallet.balances(ctx.store, user["user_id"])
        entry: dict[str, Any] = {"user_id": user["user_id"], "account_no": user["account_no"],
                                 "in_transit": b.in_transit, "cash_available": b.cash_available,
                                 "cash_frozen": b.cash_frozen, "bank_balance": None}
        if with_bank and user["account_no"]:
            expected = b.cash + unwithheld(ctx, user["user_id"])
            entry["bank_expected"] = expected
            try:
                bank = parse_yuan(ctx.bank.query_account(user["account_no"])["balance"])
            except (BankApiError, BankUnavailable) as exc:
                differences.append(f"user {user['user_id']}: bank balance unavailable: {exc}")
            else:
                entry["bank_balance"] = bank
                if bank != expected:
                    differences.append(
                        f"user {user['user_id']} account {user['account_no']}: bank {format_fen(bank)} "
                        f"!= platform cash + unwithheld {format_fen(expected)}")
        users.append(entry)
    settled = int(ctx.store.scalar("SELECT coalesce(sum(bill_gross - bill_fees - bill_refunds), 0) "
                                   "FROM recon_runs WHERE state = 'DONE'"))
    paid = int(ctx.store.scalar("SELECT coalesce(sum(amount), 0) FROM batch_records "
                                "WHERE kind = 'DF' AND state = 'SUCCESS'"))
    supervision: dict[str, Any] = {"account_no": ctx.config.supervision_account,
                                   "settlements_expected": settled, "disbursed": paid,
                                   "net_expected": settled - paid, "bank_balance": None}
    if with_bank:
        try:
            supervision["bank_balance"] = parse_yuan(
                ctx.bank.query_account(ctx.config.supervision_account)["balance"])
        except (BankApiError, BankUnavailable) as exc:
            supervision["note"] = f"the bank does not show this account through the API: {exc}"
    return {"ok": not differences, "differences": differences, "users": users, "supervision": supervision}
